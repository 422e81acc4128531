//! `lapterop-agent capture`: the reference laptop's internal disk, opened read-only, packed straight
//! into a signed OS image: a file on a second USB disk, or an HTTP PUT to a workshop server that is
//! streamed (the stick keeps no copy of the image; see [`lapterop_osimage::pack_stream`]). The image
//! signing key comes from a file the lead gives at that moment and is only held in memory.
//! This module decides and moves bytes; [`crate::cli::capture`] prints.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};

use crate::disk::{refusals, Discovery, Disk, Refusal, SafetyConfig};
use crate::job::is_internal;

/// Why the capture cannot start (each one line with what to do).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No disk to capture.
    #[error("no internal disk found to capture; give --device /dev/X")]
    NoDisk,
    /// More than one candidate.
    #[error("{0} internal disks ({1}); give --device /dev/X to say which one is the reference disk")]
    Ambiguous(usize, String),
    /// The disk may not be read as a reference (mounted, the stick).
    #[error("{device}: {reason}")]
    Refused {
        /// The disk.
        device: String,
        /// Why.
        reason: String,
    },
    /// The output is unusable.
    #[error("{0}")]
    Target(String),
    /// Discovery failed.
    #[error("{0}")]
    Other(String),
}

/// The reference disk: `device` when given, else the one internal disk (never the stick, never a
/// USB disk). Refused when it or a partition is mounted (a mounted filesystem changes while it is
/// read) or when it is the stick. Read-only disks are fine: nothing is written to it.
pub fn choose_disk(discovery: &Discovery, device: Option<&str>, cfg: &SafetyConfig) -> Result<Disk, CaptureError> {
    let disk = match device {
        Some(d) => discovery.find(d).map_err(|e| CaptureError::Other(format!("{e:#}")))?,
        None => {
            let all = discovery.scan().map_err(|e| CaptureError::Other(format!("{e:#}")))?;
            let mut internal: Vec<Disk> = all
                .into_iter()
                .filter(|d| is_internal(d, None))
                .filter(|d| !refusals(d, cfg).iter().any(|r| matches!(r, Refusal::BootStick { .. })))
                .collect();
            match internal.len() {
                0 => return Err(CaptureError::NoDisk),
                1 => internal.remove(0),
                n => {
                    let names: Vec<String> = internal.iter().map(|d| d.path.display().to_string()).collect();
                    return Err(CaptureError::Ambiguous(n, names.join(", ")));
                }
            }
        }
    };
    let why: Vec<String> = refusals(&disk, cfg)
        .into_iter()
        .filter(|r| !matches!(r, Refusal::ReadOnly))
        .map(|r| r.to_string())
        .collect();
    if !why.is_empty() {
        return Err(CaptureError::Refused {
            device: disk.path.display().to_string(),
            reason: format!("{}; nothing was read", why.join("; ")),
        });
    }
    Ok(disk)
}

/// The block device (`/sys/dev/block/MAJ:MIN` resolved) a file system path lives on.
fn sysfs_block_of(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()
}

/// Checks the output file `to`: it must not exist, its directory must exist, and it must not lie on
/// `disk` (which would change the disk being read). Returns the path to write.
pub fn check_output_file(to: &Path, disk: &Disk) -> Result<PathBuf, CaptureError> {
    let t = |m: String| Err(CaptureError::Target(m));
    if to.exists() {
        if to.is_dir() {
            return t(format!(
                "--to {} is a directory; give a file name in it, e.g. {}/reference.osimg",
                to.display(),
                to.display()
            ));
        }
        return t(format!(
            "--to {} exists already; give a new file name (nothing is overwritten)",
            to.display()
        ));
    }
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return t(format!(
            "--to {}: the directory {} does not exist; mount the USB disk and give a file on it",
            to.display(),
            dir.display()
        ));
    }
    if let Some(block) = sysfs_block_of(&dir) {
        let on_disk = block
            .components()
            .any(|c| c.as_os_str() == std::ffi::OsStr::new(&disk.name));
        if on_disk {
            return t(format!(
                "--to {} is on {}, the disk being captured; write to a second USB disk or use --put",
                to.display(),
                disk.path.display()
            ));
        }
    }
    Ok(to.to_owned())
}

/// What travels from the packer to the upload.
enum Piece {
    Bytes(Vec<u8>),
    Done,
}

/// The packer's side of the upload pipe: 1 MiB pieces, at most [`PIPE_PIECES`] in flight, so the
/// stick holds a few MiB of the image at a time, never the image.
struct PipeWriter {
    tx: SyncSender<Piece>,
    buf: Vec<u8>,
}

/// What the packer sees when the upload went away (the server's answer or error is what is shown).
const UPLOAD_STOPPED: &str = "the upload stopped";

/// Pieces in flight between packer and upload.
const PIPE_PIECES: usize = 4;
const PIECE: usize = 1 << 20;

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .send(Piece::Bytes(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, UPLOAD_STOPPED))
    }
}

/// The upload's side: ends cleanly only after the packer said [`Piece::Done`]; a packer that stops
/// early makes the body fail, so the server never sees a short image as complete.
struct PipeReader {
    rx: Receiver<Piece>,
    piece: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Bytes(b)) => {
                    self.piece = b;
                    self.at = 0;
                }
                Ok(Piece::Done) => self.done = true,
                Err(_) => return Err(io::Error::other("the capture stopped before the image was complete")),
            }
        }
        let n = out.len().min(self.piece.len() - self.at);
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Packs `input` and PUTs the image to `url` as it is made (`Content-Length` set from the first
/// pass). Returns the summary and the server's status line.
pub fn pack_and_put(
    input: &Path,
    url: &str,
    key: &lapterop_certificate::SigningKey,
    opts: &lapterop_osimage::PackOptions,
    progress: &(dyn Fn(lapterop_osimage::PackProgress) + Sync),
) -> Result<(lapterop_osimage::PackSummary, u16), String> {
    let (tx, rx) = mpsc::sync_channel::<Piece>(PIPE_PIECES);
    let (len_tx, len_rx) = mpsc::channel::<u64>();
    std::thread::scope(|s| {
        let packer = s.spawn(move || {
            let done = tx.clone();
            let r = lapterop_osimage::pack_stream(input, key, opts, progress, |len| {
                let _ = len_tx.send(len);
                Ok(PipeWriter {
                    tx,
                    buf: Vec::with_capacity(PIECE),
                })
            });
            match r {
                Ok((summary, mut w)) => {
                    w.flush().map_err(|e| e.to_string())?;
                    drop(w);
                    // The upload may have dropped its reader already, having sent Content-Length
                    // bytes; whether the server took them is its answer's to say.
                    let _ = done.send(Piece::Done);
                    Ok(summary)
                }
                Err(e) => Err(e.to_string()),
            }
        });
        // The first pass runs before the server is contacted: no connection idles for its duration.
        let Ok(len) = len_rx.recv() else {
            return Err(join(packer));
        };
        let body = PipeReader {
            rx,
            piece: Vec::new(),
            at: 0,
            done: false,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(15)))
            .http_status_as_error(false)
            .build()
            .into();
        let sent = agent
            .put(url)
            .header("Content-Length", len.to_string())
            // A server that refuses says so before the body: its answer, not a broken pipe, is shown.
            .header("Expect", "100-continue")
            .content_type("application/octet-stream")
            .send(ureq::SendBody::from_owned_reader(body));
        let packed = packer.join().unwrap_or_else(|_| Err("the packer panicked".to_owned()));
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(match packed {
                    Err(p) if !p.contains(UPLOAD_STOPPED) => p,
                    _ => format!("uploading to {url}: {e}; check the URL and that the server is reachable"),
                })
            }
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let mut text = resp.into_body().read_to_string().unwrap_or_default();
            text.truncate(200);
            return Err(format!(
                "the server refused the image: {status} {}; check the URL and the server's upload settings",
                text.trim()
            ));
        }
        packed.map(|s| (s, status))
    })
}

fn join(h: std::thread::ScopedJoinHandle<'_, Result<lapterop_osimage::PackSummary, String>>) -> String {
    match h.join() {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => "the packer ended without an image".to_owned(),
        Err(_) => "the packer panicked".to_owned(),
    }
}
