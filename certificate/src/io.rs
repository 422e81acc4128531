//! The one error every step has: an I/O operation on a path failed.
//!
//! Each error enum of the workspace (keys, the OS image packer, the image builder, the test VMs)
//! carries it as a transparent `Io` variant, so the message is the same everywhere: what was being
//! done, the path, the cause (`creating /tmp/x: Permission denied`).

use std::io;
use std::path::{Path, PathBuf};

/// An I/O operation on a path failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}", path = path.display())]
pub struct IoError {
    /// What was being done ("reading", "writing the MBR of", ...); it reads on into the path.
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

/// A `map_err` function that turns an `io::Error` into an [`IoError`] doing `what` on `path`
/// (`fs::read(p).map_err(io_err("reading", p))?`). It is `Copy`, so one can serve several steps.
pub fn io_err<'a>(what: &'static str, path: &'a Path) -> impl Fn(io::Error) -> IoError + Copy + 'a {
    move |source| IoError {
        what,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_what_path_and_cause() {
        let err = io_err("writing the MBR of", Path::new("/tmp/stick.img"))(io::Error::other("disk full"));
        assert_eq!(err.to_string(), "writing the MBR of /tmp/stick.img: disk full");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
    }
}
