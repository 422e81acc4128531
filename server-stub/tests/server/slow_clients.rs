//! Slow and greedy clients (issue 15, point 7): a client that trickles its request head or body is cut
//! off within the documented limit (`docs/server.md`, "Limits") while others are still served; an idle
//! connection is closed; connections over the limit get `503`; SIGTERM stops the server within its
//! grace period although a slow client is still connected.
//!
//! The limits are the defaults of `lapterop-server serve`: request head 10 s, body 30 s, 256
//! connections, 10 s to finish on SIGTERM. The assertions are "still open at X" and "closed before Y",
//! with a margin of seconds; the measured times are printed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::helpers::*;

const HEAD_LIMIT: Duration = Duration::from_secs(10);
const BODY_LIMIT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: usize = 256;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How much later than its limit a connection may be closed (a loaded 2-core machine).
const MARGIN: Duration = Duration::from_secs(5);

/// A connection that sends `fast` at once, then `slow` one byte a second; its reader notes when the
/// server closed the connection and what it answered.
struct Trickler {
    what: &'static str,
    opened: Instant,
    closed: mpsc::Receiver<(Duration, String)>,
    result: Option<(Duration, String)>,
}

impl Trickler {
    fn start(what: &'static str, port: u16, fast: &[u8], slow: &[u8]) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let opened = Instant::now();
        stream.write_all(fast).expect("send the fast part");
        let mut reader = stream.try_clone().expect("clone the stream");
        reader
            .set_read_timeout(Some(Duration::from_secs(90)))
            .expect("read timeout");
        let done = Arc::new(AtomicBool::new(false));
        let (tx, closed) = mpsc::channel();
        let done2 = done.clone();
        std::thread::spawn(move || {
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
            done2.store(true, Ordering::SeqCst);
            let _ = tx.send((opened.elapsed(), String::from_utf8_lossy(&answer).into_owned()));
        });
        let slow = slow.to_vec();
        std::thread::spawn(move || {
            for b in slow {
                std::thread::sleep(Duration::from_secs(1));
                if done.load(Ordering::SeqCst) || stream.write_all(&[b]).is_err() {
                    break;
                }
            }
        });
        Self {
            what,
            opened,
            closed,
            result: None,
        }
    }

    /// Whether the server has closed the connection by now.
    fn is_closed(&mut self) -> bool {
        if self.result.is_none() {
            self.result = self.closed.try_recv().ok();
        }
        self.result.is_some()
    }

    /// Waits until the server closes the connection, at most until `limit` after it was opened;
    /// panics if it is still open then. Returns when it was closed and what the server answered.
    fn wait_closed(&mut self, limit: Duration) -> (Duration, String) {
        if self.result.is_none() {
            let left = limit.saturating_sub(self.opened.elapsed());
            self.result = self.closed.recv_timeout(left).ok();
        }
        let Some(r) = self.result.clone() else {
            panic!("{}: still open {limit:?} after it was opened", self.what);
        };
        eprintln!(
            "slow client: {} closed by the server after {:.1} s",
            self.what,
            r.0.as_secs_f64()
        );
        r
    }
}

/// A request head that never ends within a minute at one byte a second.
fn endless_head() -> Vec<u8> {
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 120));
    head
}

/// The head of a POST declaring a body of 5000 bytes, and 120 bytes of that body.
fn slow_post(path: &str, content_type: &str) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: 5000\r\n\r\n"
    );
    (head.into_bytes(), vec![b' '; 120])
}

/// GET /healthz answers 200 within `limit`; returns how long it took.
fn healthz_within(url: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    let answer = get(&format!("{url}/healthz"));
    let took = t.elapsed();
    assert_eq!(
        answer,
        Ok((200, "ok\n".to_owned())),
        "/healthz while slow clients are connected"
    );
    assert!(took < limit, "/healthz took {took:?} while slow clients are connected");
    took
}

#[test]
fn a_trickled_head_or_an_idle_connection_is_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());

    let mut head = Trickler::start("a head sent one byte a second", s.port, b"", &endless_head());
    let mut silent = Trickler::start("a connection that sends nothing", s.port, b"", b"");
    let mut kept_alive = Trickler::start(
        "a kept-alive connection after its first answer",
        s.port,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"",
    );

    // Others are served quickly all the while, and the slow ones are not cut off early.
    let mut slowest = Duration::ZERO;
    let checked_open = head.opened + HEAD_LIMIT / 2;
    let mut open_checked = false;
    while head.opened.elapsed() < HEAD_LIMIT + Duration::from_secs(1) {
        slowest = slowest.max(healthz_within(&s.url, Duration::from_secs(2)));
        if !open_checked && Instant::now() >= checked_open {
            for t in [&mut head, &mut silent, &mut kept_alive] {
                assert!(!t.is_closed(), "{} was closed before half its limit", t.what);
            }
            open_checked = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(open_checked);
    eprintln!(
        "slow client: /healthz answered within {:.0} ms at most meanwhile",
        slowest.as_secs_f64() * 1e3
    );

    let (_, answer) = head.wait_closed(HEAD_LIMIT + MARGIN);
    assert!(
        !answer.contains("200 OK"),
        "the trickled request was not served: {answer}"
    );
    silent.wait_closed(HEAD_LIMIT + MARGIN);
    let (_, answer) = kept_alive.wait_closed(HEAD_LIMIT + MARGIN);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK"),
        "the first request was answered: {answer}"
    );
    healthz_within(&s.url, Duration::from_secs(2));
}

#[test]
fn a_trickled_body_is_cut_off_with_408() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (head, body) = slow_post("/api/v1/certificates", "application/json");
    let mut certificate = Trickler::start("a certificate sent one byte a second", s.port, &head, &body);
    let (head, body) = slow_post("/login", "application/x-www-form-urlencoded");
    let mut form = Trickler::start("a login form sent one byte a second", s.port, &head, &body);

    std::thread::sleep(BODY_LIMIT * 2 / 3);
    healthz_within(&s.url, Duration::from_secs(2));
    for t in [&mut certificate, &mut form] {
        assert!(!t.is_closed(), "{} was closed before two thirds of its limit", t.what);
    }
    for t in [&mut certificate, &mut form] {
        let (_, answer) = t.wait_closed(BODY_LIMIT + MARGIN);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{}: {answer}", t.what);
    }
}

#[test]
fn connections_over_the_limit_get_503_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    connections_over(&s, MAX_CONNECTIONS);
    drop(s);
    let s = Server::start_with(dir.path(), &["--max-connections", "8"]);
    connections_over(&s, 8);
}

/// Holds `limit` idle connections to `s`: the next client is answered 503 at once; once they close,
/// clients are served again.
fn connections_over(s: &Server, limit: usize) {
    let idle: Vec<TcpStream> = (0..limit)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).expect("connect"))
        .collect();

    // Once the server has taken them all, the next client is answered 503 with Retry-After at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let t = Instant::now();
        let answer = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build()
            .get(&format!("{}/healthz", s.url))
            .call();
        match answer {
            Err(ureq::Error::Status(503, r)) => break (t.elapsed(), r),
            Ok(_) => assert!(
                Instant::now() < deadline,
                "still served with {} idle connections",
                idle.len()
            ),
            Err(e) => panic!("a client over the limit got no answer: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "slow client: over {limit} connections, 503 within {:.0} ms",
        refused.0.as_secs_f64() * 1e3
    );
    assert!(refused.0 < Duration::from_secs(2), "the 503 came at once");
    assert!(refused.1.header("Retry-After").is_some(), "503 with Retry-After");

    // Freed connections are served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&format!("{}/healthz", s.url)) != Ok((200, "ok\n".to_owned())) {
        assert!(
            Instant::now() < deadline,
            "not served again after the idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_the_server_within_its_grace_while_slow_clients_are_connected() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path());
    let mut head = Trickler::start("a head sent one byte a second", s.port, b"", &endless_head());
    let (h, body) = slow_post("/api/v1/certificates", "application/json");
    let mut certificate = Trickler::start("a certificate sent one byte a second", s.port, &h, &body);
    std::thread::sleep(Duration::from_secs(2));

    let t = Instant::now();
    let status = s.terminate(SHUTDOWN_GRACE + MARGIN);
    let took = t.elapsed();
    let Some(status) = status else {
        panic!("the server still ran {:?} after SIGTERM", SHUTDOWN_GRACE + MARGIN);
    };
    eprintln!(
        "slow client: the server stopped {:.1} s after SIGTERM",
        took.as_secs_f64()
    );
    assert!(status.success(), "exit status after SIGTERM: {status}");
    head.wait_closed(Duration::from_secs(2) + SHUTDOWN_GRACE + MARGIN);
    certificate.wait_closed(Duration::from_secs(2) + SHUTDOWN_GRACE + MARGIN);
}
