//! A one-purpose HTTP/1.1 upload server for the capture tests, on 127.0.0.1 with an OS-chosen port:
//! it takes PUT requests, stores each body in memory with the request's headers, and answers a fixed
//! status (201, or a refusal such as 403 sent before the body is read).

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One upload as received.
#[derive(Debug, Clone)]
pub struct Upload {
    pub request_line: String,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was as long as its Content-Length said.
    pub complete: bool,
}

impl Upload {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The running server (its thread ends with the test process).
pub struct PutServer {
    pub port: u16,
    pub uploads: Arc<Mutex<Vec<Upload>>>,
}

impl PutServer {
    /// Answers every PUT with `status`; bodies are read only when `status` is 2xx.
    pub fn start(status: u16) -> PutServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&uploads);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                let Some((request_line, headers)) = super::httpd::read_head(&mut reader) else {
                    continue;
                };
                let len: Option<u64> = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok());
                let mut body = Vec::new();
                let mut complete = false;
                let expect = headers
                    .iter()
                    .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"));
                if (200..300).contains(&status) {
                    if expect {
                        let _ = out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    if let Some(len) = len {
                        let _ = (&mut reader).take(len).read_to_end(&mut body);
                        complete = body.len() as u64 == len;
                    }
                }
                let text = if complete || !(200..300).contains(&status) {
                    "done"
                } else {
                    "short body"
                };
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                store.lock().unwrap().push(Upload {
                    request_line: request_line.trim_end().to_owned(),
                    headers,
                    body,
                    complete,
                });
            }
        });
        PutServer { port, uploads }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/images/reference.osimg", self.port)
    }
}
