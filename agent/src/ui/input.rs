//! Keyboard input for the prompts: whole lines, and single keys with a timeout (the unattended
//! countdown). [`Keys`] reads bytes from any reader on a thread, so a test drives it from a pipe or a
//! buffer exactly as a volunteer drives it from the console; [`Cbreak`] makes a key count without Enter
//! on a terminal while the countdown runs.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// What a wait for one key gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWait {
    /// A key was pressed.
    Key(u8),
    /// Nothing within the time.
    Timeout,
    /// The input is closed (end of file): no key will ever come.
    Closed,
}

/// What a wait for a line gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineWait {
    /// A whole line, without its line end.
    Line(String),
    /// No whole line within the time (what was typed so far is kept for the next call).
    Timeout,
    /// The input is closed.
    Closed,
}

/// A source of typed input.
pub trait Input {
    /// The next line without its line end; `None` when the input is closed.
    fn line(&mut self) -> io::Result<Option<String>>;
    /// Waits up to `timeout` for one key.
    fn key_within(&mut self, timeout: Duration) -> io::Result<KeyWait>;
    /// Waits up to `timeout` for a whole line (a screen that redraws itself while it waits). Sources
    /// that cannot time out wait for the line.
    fn line_within(&mut self, _timeout: Duration) -> io::Result<LineWait> {
        Ok(match self.line()? {
            Some(l) => LineWait::Line(l),
            None => LineWait::Closed,
        })
    }
}

/// Bytes from a reader, forwarded by a thread so waits can time out.
#[derive(Debug)]
pub struct Keys {
    rx: Receiver<io::Result<u8>>,
    closed: bool,
    /// What was typed of a line when [`Input::line_within`] timed out.
    partial: Vec<u8>,
}

impl Keys {
    /// Reads `reader` on a thread until it ends.
    pub fn new<R: Read + Send + 'static>(mut reader: R) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if buf[..n].iter().any(|b| tx.send(Ok(*b)).is_err()) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        Self {
            rx,
            closed: false,
            partial: Vec::new(),
        }
    }

    /// Standard input.
    pub fn stdin() -> Self {
        Self::new(io::stdin())
    }

    fn next(&mut self, timeout: Option<Duration>) -> io::Result<KeyWait> {
        if self.closed {
            return Ok(KeyWait::Closed);
        }
        let got = match timeout {
            Some(t) => self.rx.recv_timeout(t),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(Ok(b)) => Ok(KeyWait::Key(b)),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(KeyWait::Timeout),
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Ok(KeyWait::Closed)
            }
        }
    }
}

impl Input for Keys {
    fn line(&mut self) -> io::Result<Option<String>> {
        let mut bytes = std::mem::take(&mut self.partial);
        loop {
            match self.next(None)? {
                KeyWait::Key(b'\n') => break,
                KeyWait::Key(b'\r') => {}
                KeyWait::Key(b) => bytes.push(b),
                KeyWait::Closed if bytes.is_empty() => return Ok(None),
                KeyWait::Closed | KeyWait::Timeout => break,
            }
        }
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn key_within(&mut self, timeout: Duration) -> io::Result<KeyWait> {
        let first = self.next(Some(timeout))?;
        if let KeyWait::Key(_) = first {
            // Swallow the rest of what was typed with it (a line typed on a terminal in line mode), so it
            // does not answer the next prompt.
            while let KeyWait::Key(b) = self.next(Some(Duration::from_millis(50)))? {
                if b == b'\n' {
                    break;
                }
            }
        }
        Ok(first)
    }

    fn line_within(&mut self, timeout: Duration) -> io::Result<LineWait> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(LineWait::Timeout);
            }
            match self.next(Some(left))? {
                KeyWait::Key(b'\n') => {
                    let bytes = std::mem::take(&mut self.partial);
                    return Ok(LineWait::Line(String::from_utf8_lossy(&bytes).into_owned()));
                }
                KeyWait::Key(b'\r') => {}
                KeyWait::Key(b) => self.partial.push(b),
                KeyWait::Timeout => return Ok(LineWait::Timeout),
                KeyWait::Closed if self.partial.is_empty() => return Ok(LineWait::Closed),
                KeyWait::Closed => {
                    let bytes = std::mem::take(&mut self.partial);
                    return Ok(LineWait::Line(String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        }
    }
}

/// While alive, standard input (when a terminal) has some local modes switched off; restored on drop.
/// On a pipe or a file it does nothing.
#[derive(Debug)]
pub struct TermModes {
    saved: Option<nix::sys::termios::Termios>,
}

impl TermModes {
    /// Switches `flags` off on standard input when it is a terminal.
    fn without(flags: nix::sys::termios::LocalFlags) -> Self {
        use nix::sys::termios::{tcgetattr, tcsetattr, SetArg};
        let stdin = io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return Self { saved: None };
        };
        let mut changed = saved.clone();
        changed.local_flags.remove(flags);
        if tcsetattr(&stdin, SetArg::TCSANOW, &changed).is_err() {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }
}

impl Drop for TermModes {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

/// While alive, standard input delivers each key at once, without Enter.
#[derive(Debug)]
pub struct Cbreak(#[allow(dead_code)] TermModes);

impl Cbreak {
    /// Switches standard input to character-at-a-time mode when it is a terminal.
    pub fn on() -> Self {
        Self(TermModes::without(nix::sys::termios::LocalFlags::ICANON))
    }
}

/// While alive, standard input does not echo what is typed (a password).
#[derive(Debug)]
pub struct NoEcho(#[allow(dead_code)] TermModes);

impl NoEcho {
    /// Switches echo off when standard input is a terminal.
    pub fn on() -> Self {
        Self(TermModes::without(nix::sys::termios::LocalFlags::ECHO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_keys_come_from_any_reader() {
        let mut keys = Keys::new(io::Cursor::new(b"abc\r\nx rest\nlast".to_vec()));
        assert_eq!(keys.line().unwrap().as_deref(), Some("abc"));
        assert_eq!(keys.key_within(Duration::from_secs(5)).unwrap(), KeyWait::Key(b'x'));
        // " rest\n" was swallowed with the key.
        assert_eq!(keys.line().unwrap().as_deref(), Some("last"));
        assert_eq!(keys.line().unwrap(), None);
        assert_eq!(keys.key_within(Duration::from_millis(1)).unwrap(), KeyWait::Closed);
    }

    #[test]
    fn a_line_typed_across_timeouts_is_kept_whole() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let mut keys = Keys::new(std::fs::File::from(reader));
        let mut w = std::fs::File::from(writer);
        std::io::Write::write_all(&mut w, b"ne").unwrap();
        assert_eq!(keys.line_within(Duration::from_millis(200)).unwrap(), LineWait::Timeout);
        std::io::Write::write_all(&mut w, b"xt\nP\n").unwrap();
        assert_eq!(
            keys.line_within(Duration::from_secs(5)).unwrap(),
            LineWait::Line("next".into())
        );
        // A blocking line() after a timeout gets the rest too.
        std::io::Write::write_all(&mut w, b"ab").unwrap();
        assert_eq!(
            keys.line_within(Duration::from_secs(5)).unwrap(),
            LineWait::Line("P".into())
        );
        assert_eq!(keys.line_within(Duration::from_millis(200)).unwrap(), LineWait::Timeout);
        std::io::Write::write_all(&mut w, b"c\n").unwrap();
        assert_eq!(keys.line().unwrap().as_deref(), Some("abc"));
        drop(w);
        assert_eq!(keys.line_within(Duration::from_secs(5)).unwrap(), LineWait::Closed);
    }

    #[test]
    fn a_silent_pipe_times_out() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let mut keys = Keys::new(std::fs::File::from(reader));
        assert_eq!(keys.key_within(Duration::from_millis(20)).unwrap(), KeyWait::Timeout);
        drop(writer);
        assert_eq!(keys.key_within(Duration::from_secs(5)).unwrap(), KeyWait::Closed);
    }
}
