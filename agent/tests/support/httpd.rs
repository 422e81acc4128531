//! A small HTTP/1.1 file server for the install tests, on 127.0.0.1 with an OS-chosen port: it serves
//! one image file with `Range` support (or without it) and injects faults on request: a connection
//! dropped in the middle of a body, a 503 answer, a flipped byte. Every request is logged so a test can
//! assert that the faults really happened.

// Offsets into an in-memory test image of a few MiB.
#![allow(clippy::cast_possible_truncation)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the server does to one request (numbered from 0 in arrival order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends the headers and this many body bytes, then closes the connection.
    DropAfter(u64),
    /// Answers with this status and no body.
    Status(u16),
}

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Answer `Range` requests with 206 (otherwise always 200 with the whole file).
    pub ranges: bool,
    /// Faults by request number.
    pub faults: HashMap<usize, Fault>,
    /// Flip the byte at this file offset in the first answer that carries it.
    pub corrupt_once: Option<u64>,
    /// Flip the byte at this file offset in every answer that carries it.
    pub corrupt_always: Option<u64>,
}

/// One request as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Status sent.
    pub status: u16,
    /// First file offset of the body.
    pub start: u64,
    /// Body bytes announced.
    pub len: u64,
    /// Whether the connection was dropped before the end of the body.
    pub dropped: bool,
    /// Whether a byte was flipped in this answer.
    pub corrupted: bool,
}

struct State {
    data: Vec<u8>,
    script: Script,
    next: AtomicUsize,
    corrupted_once: AtomicBool,
    log: Mutex<Vec<Served>>,
}

/// The running server; stops on drop.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `data` as `/image.osimg` following `script`.
    pub fn start(data: Vec<u8>, script: Script) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            data,
            script,
            next: AtomicUsize::new(0),
            corrupted_once: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let (stop2, state2) = (Arc::clone(&stop), Arc::clone(&state));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let state = Arc::clone(&state2);
                std::thread::spawn(move || serve_connection(&state, conn));
            }
        });
        Server {
            port,
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// The image's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/image.osimg", self.port)
    }

    /// The requests served so far.
    pub fn log(&self) -> Vec<Served> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers requests on one keep-alive connection until the client closes it or a fault drops it.
fn serve_connection(state: &State, conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let Some((request_line, headers)) = read_head(&mut reader) else {
            return;
        };
        let range = headers.into_iter().find(|(n, _)| n == "range").map(|(_, v)| v);
        let n = state.next.fetch_add(1, Ordering::SeqCst);
        if !request_line.starts_with("GET /image.osimg ") {
            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        if !answer(state, n, range, &mut out) {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Sends one answer; false when the connection must be closed.
fn answer(state: &State, n: usize, range: Option<String>, out: &mut TcpStream) -> bool {
    let total = state.data.len() as u64;
    let mut served = Served {
        range: range.clone(),
        status: 200,
        start: 0,
        len: total,
        dropped: false,
        corrupted: false,
    };
    let fault = state.script.faults.get(&n).copied();
    if let Some(Fault::Status(code)) = fault {
        served.status = code;
        served.len = 0;
        state.log.lock().unwrap().push(served);
        let head = format!("HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nRetry-After: 0\r\n\r\n");
        return out.write_all(head.as_bytes()).is_ok();
    }
    let parsed = range
        .as_deref()
        .filter(|_| state.script.ranges)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().ok()));
    let head = match parsed {
        Some((start, _)) if start >= total => {
            served.status = 416;
            served.len = 0;
            state.log.lock().unwrap().push(served);
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\n\r\n"
            );
            return out.write_all(head.as_bytes()).is_ok();
        }
        Some((start, end)) => {
            let end = end.unwrap_or(total - 1).min(total - 1);
            served.status = 206;
            served.start = start;
            served.len = end + 1 - start;
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{total}\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                served.len
            )
        }
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nETag: \"v1\"\r\n\r\n"),
    };
    let mut body = state.data[served.start as usize..(served.start + served.len) as usize].to_vec();
    let send = match fault {
        Some(Fault::DropAfter(k)) if k < served.len => {
            served.dropped = true;
            k
        }
        _ => served.len,
    };
    // Only bytes that really go out can be flipped.
    let covers = |at: u64| at >= served.start && at < served.start + send;
    if let Some(at) = state.script.corrupt_always.filter(|a| covers(*a)) {
        body[(at - served.start) as usize] ^= 0x40;
        served.corrupted = true;
    }
    if let Some(at) = state.script.corrupt_once.filter(|a| covers(*a)) {
        if !state.corrupted_once.swap(true, Ordering::SeqCst) {
            body[(at - served.start) as usize] ^= 0x40;
            served.corrupted = true;
        }
    }
    let dropped = served.dropped;
    state.log.lock().unwrap().push(served);
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    for piece in body[..send as usize].chunks(64 << 10) {
        if out.write_all(piece).is_err() {
            return false;
        }
    }
    !dropped
}

/// Reads one request's line and headers (names lower-cased, values trimmed); `None` when the client
/// closed the connection before the blank line.
pub fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some((request_line, headers));
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}
