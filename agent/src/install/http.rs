//! Image bytes over HTTP(S): the [`ChunkSource`] behind `lapterop-agent install --image URL`.
//!
//! The reader asks for byte ranges in order (header, manifest, then one frame after the other), so
//! one `Range: bytes=N-` request normally streams the whole image; a dropped connection, a timeout or
//! a 408/429/5xx answer is retried from the byte where it stopped, with exponential backoff and a
//! bounded number of attempts per read. A frame that fails its blake3 is fetched again by a
//! [`HttpSource::refetcher`] that asks for exactly that frame. A server that ignores `Range` (answers
//! `200` with the whole file) still works, by reading forward and discarding; a retry then costs a
//! download from the start. Nothing here is trusted: the manifest signature and the per-chunk blake3
//! in `lapterop-osimage` decide what reaches the disk, so plain HTTP on a workshop LAN is safe.

use std::io::{self, Read};
use std::time::Duration;

use lapterop_osimage::ChunkSource;

/// How hard to try: timeouts and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Failed requests or broken connections tolerated within one read before giving up.
    pub attempts: u32,
    /// Wait before the first retry; doubled on each further retry.
    pub first_backoff: Duration,
    /// Longest wait between two retries.
    pub max_backoff: Duration,
    /// Time allowed to connect (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// Time allowed for the answer's headers, and for each read of the body to bring something.
    pub read_timeout: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            attempts: 8,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpPolicy {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Whether the server honours `Range`, as far as seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranges {
    /// No ranged answer seen yet.
    Unknown,
    /// Answered `206 Partial Content`.
    Honoured,
    /// Answered `200` with the whole file to a range that did not start at 0.
    Ignored,
}

/// An open response body and where it stands in the image file.
struct Stream {
    body: ureq::BodyReader<'static>,
    /// Image offset of the next byte the body gives.
    pos: u64,
    /// Image offset just past the body's last byte, when known.
    end: Option<u64>,
}

/// A failed request or read: worth trying again, or not.
enum Fault {
    Retry(String),
    Fatal(io::Error),
}

fn fatal(kind: io::ErrorKind, msg: String) -> Fault {
    Fault::Fatal(io::Error::new(kind, msg))
}

/// Forward gaps up to this size are read and discarded rather than asked for in a new request.
const SKIP_LIMIT: u64 = 1 << 20;

/// An image file on an HTTP(S) server, read by range requests.
pub struct HttpSource {
    agent: ureq::Agent,
    url: String,
    policy: HttpPolicy,
    len: Option<u64>,
    ranges: Ranges,
    /// The ETag or Last-Modified of the first answer: a later answer with another one means the file
    /// changed on the server in the middle of the install.
    validator: Option<String>,
    /// Ask for exactly the bytes wanted (refetchers) instead of streaming to the end of the file.
    exact: bool,
    stream: Option<Stream>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.url)
            .field("len", &self.len)
            .field("ranges", &self.ranges)
            .finish_non_exhaustive()
    }
}

/// Whether `location` names an HTTP(S) URL rather than a file.
pub fn is_url(location: &str) -> bool {
    let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

impl HttpSource {
    /// A source for `url`; nothing is requested until the first read.
    pub fn new(url: &str, policy: HttpPolicy) -> HttpSource {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_recv_response(Some(policy.read_timeout))
            .timeout_per_read(Some(policy.read_timeout))
            // Offsets are into the file as stored: no transfer compression.
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .user_agent(concat!("lapterop-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpSource {
            agent,
            url: url.to_owned(),
            policy,
            len: None,
            ranges: Ranges::Unknown,
            validator: None,
            exact: false,
            stream: None,
        }
    }

    /// Sends one GET for `[offset, offset + want)` (or from `offset` to the end) and positions a
    /// stream at `offset`.
    fn open_stream(&mut self, offset: u64, want: u64) -> Result<(), Fault> {
        self.stream = None;
        let mut request = self.agent.get(&self.url).header("accept-encoding", "identity");
        if self.ranges != Ranges::Ignored {
            let range = match (self.exact, want) {
                (true, 1..) => format!("bytes={offset}-{}", offset + want - 1),
                _ => format!("bytes={offset}-"),
            };
            request = request.header("range", range);
        }
        let response = request.call().map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match status {
            200 | 206 => {}
            416 => {
                return Err(fatal(
                    io::ErrorKind::UnexpectedEof,
                    format!("the server's copy ends before byte {offset}: the image file on the server is truncated; copy it again"),
                ))
            }
            408 | 429 | 500..=599 => return Err(Fault::Retry(format!("the server answered {status}"))),
            _ => {
                return Err(fatal(
                    io::ErrorKind::NotFound,
                    format!("the server answered {status}; check the image URL and that the file is on the server"),
                ))
            }
        }
        if let Some(enc) = header("content-encoding").filter(|e| !e.eq_ignore_ascii_case("identity")) {
            return Err(fatal(
                io::ErrorKind::InvalidData,
                format!("the server compresses the image on the fly (Content-Encoding: {enc}); turn that off for image files"),
            ));
        }
        let validator = header("etag").or_else(|| header("last-modified"));
        match (&self.validator, validator) {
            (Some(old), Some(new)) if *old != new => {
                return Err(fatal(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the image file on the server changed during the install ({old} became {new}); install again"
                    ),
                ))
            }
            (None, Some(new)) => self.validator = Some(new),
            _ => {}
        }
        let (start, end, total) = if status == 206 {
            let value = header("content-range").unwrap_or_default();
            let (start, end, total) = parse_content_range(&value).ok_or_else(|| {
                fatal(
                    io::ErrorKind::InvalidData,
                    format!("the server sent a partial answer with an unreadable Content-Range {value:?}"),
                )
            })?;
            if start != offset {
                return Err(fatal(
                    io::ErrorKind::InvalidData,
                    format!("the server sent bytes from {start} when asked for {offset}"),
                ));
            }
            self.ranges = Ranges::Honoured;
            (start, Some(end + 1), total)
        } else {
            // The whole file. Some servers answer `bytes=0-` so even when they honour ranges.
            if offset > 0 {
                self.ranges = Ranges::Ignored;
            }
            let total = header("content-length").and_then(|v| v.parse::<u64>().ok());
            (0, total, total)
        };
        match (self.len, total) {
            (Some(old), Some(new)) if old != new => {
                return Err(fatal(
                    io::ErrorKind::InvalidData,
                    format!(
                    "the image file on the server changed during the install ({old} bytes, now {new}); install again"
                ),
                ))
            }
            (None, Some(new)) => self.len = Some(new),
            _ => {}
        }
        let mut stream = Stream {
            body: response.into_body().into_reader(),
            pos: start,
            end,
        };
        skip_to(&mut stream, offset)?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Makes sure an open stream stands at `at`, reusing the current one when it can get there.
    fn seek_stream(&mut self, at: u64, want: u64) -> Result<(), Fault> {
        let usable = self.stream.as_ref().is_some_and(|s| {
            s.pos <= at && s.end.is_none_or(|e| at < e) && (at - s.pos <= SKIP_LIMIT || self.ranges == Ranges::Ignored)
        });
        match self.stream.as_mut() {
            Some(s) if usable => skip_to(s, at),
            _ => self.open_stream(at, want),
        }
    }

    /// Reads some bytes from the open stream into `buf`.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let Some(s) = self.stream.as_mut() else {
            return Err(Fault::Retry("no open connection".into()));
        };
        let room = s.end.map_or(buf.len() as u64, |e| (e - s.pos).min(buf.len() as u64));
        let room = usize::try_from(room).unwrap_or(buf.len());
        let pos = s.pos;
        match s.body.read(&mut buf[..room]) {
            Ok(0) => Err(Fault::Retry(format!("the connection closed at byte {pos}"))),
            Ok(n) => {
                s.pos += n as u64;
                if s.end == Some(s.pos) {
                    self.stream = None;
                }
                Ok(n)
            }
            Err(e) => Err(Fault::Retry(format!("reading at byte {pos}: {e}"))),
        }
    }
}

/// Reads and discards the stream's bytes up to `at`.
fn skip_to(s: &mut Stream, at: u64) -> Result<(), Fault> {
    if s.pos < at {
        let gap = at - s.pos;
        let skipped = io::copy(&mut (&mut s.body).take(gap), &mut io::sink())
            .map_err(|e| Fault::Retry(format!("reading at byte {}: {e}", s.pos)))?;
        s.pos += skipped;
        if skipped < gap {
            return Err(Fault::Retry(format!("the connection closed at byte {}", s.pos)));
        }
    }
    Ok(())
}

/// Sorts ureq's errors into worth retrying (network, timeouts) or not (bad URL, TLS).
fn classify(e: &ureq::Error) -> Fault {
    match e {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled => Fault::Retry(e.to_string()),
        _ => fatal(io::ErrorKind::InvalidInput, e.to_string()),
    }
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some((start, end, total))
}

impl HttpSource {
    /// Runs `step` until it succeeds, retrying faults worth retrying with backoff, at most
    /// `policy.attempts` times.
    fn retrying<T>(&mut self, mut step: impl FnMut(&mut Self) -> Result<T, Fault>) -> io::Result<T> {
        let mut failures = 0;
        loop {
            match step(self) {
                Ok(v) => return Ok(v),
                Err(Fault::Fatal(e)) => {
                    self.stream = None;
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", self.url)));
                }
                Err(Fault::Retry(why)) => {
                    self.stream = None;
                    failures += 1;
                    if failures > self.policy.attempts {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{}: {why}; gave up after {failures} attempts; check the server and the network cable, then install again",
                                self.url
                            ),
                        ));
                    }
                    std::thread::sleep(self.policy.backoff(failures));
                }
            }
        }
    }
}

impl ChunkSource for HttpSource {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        self.retrying(|s| {
            while done < buf.len() {
                let at = offset + done as u64;
                s.seek_stream(at, (buf.len() - done) as u64)?;
                done += s.read_some(&mut buf[done..])?;
            }
            Ok(())
        })
    }

    fn total_len(&mut self) -> io::Result<Option<u64>> {
        if self.len.is_none() && self.stream.is_none() {
            // The first request starts the stream that the header and manifest reads continue on.
            self.retrying(|s| s.open_stream(0, 0))?;
        }
        Ok(self.len)
    }

    fn refetcher(&self) -> Option<Box<dyn ChunkSource>> {
        Some(Box::new(HttpSource {
            agent: self.agent.clone(),
            url: self.url.clone(),
            policy: self.policy,
            len: self.len,
            ranges: self.ranges,
            validator: self.validator.clone(),
            exact: true,
            stream: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed_and_checked() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, Some(1000))));
        assert_eq!(parse_content_range("bytes 500-999/*"), Some((500, 999, None)));
        assert_eq!(parse_content_range("bytes 10-5/1000"), None);
        assert_eq!(parse_content_range("bytes 0-1000/1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let p = HttpPolicy::default();
        let waits: Vec<u128> = (1..=7).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(p.backoff(40), p.max_backoff);
    }

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("http://10.0.0.2/pupil.osimg"));
        assert!(is_url("HTTPS://images.example/pupil.osimg"));
        assert!(!is_url("/mnt/stick/images/pupil.osimg"));
        assert!(!is_url("http.osimg"));
    }
}
