//! Shared helpers: the real server binary on a free port, the admin CLI, HTTP, the database, and a
//! small W3C WebDriver client for Debian's chromedriver.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapterop_certificate::{keys, SigningKey, VerifyingKey};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_lapterop-server");

/// A free TCP port on 127.0.0.1 (released just before use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs the admin CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lapterop-server");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real server on 127.0.0.1 with a data directory.
pub struct Server {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
    pub url: String,
}

impl Server {
    /// Starts a server on a new temporary data directory.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port())
    }

    /// Starts a server on a new temporary data directory with more `serve` arguments.
    pub fn start_with(dir: &Path, args: &[&str]) -> Self {
        Self::start_on_with(dir, free_port(), args)
    }

    /// Starts a server on `dir` and `port` and waits until it answers.
    pub fn start_on(dir: &Path, port: u16) -> Self {
        Self::start_on_with(dir, port, &[])
    }

    fn start_on_with(dir: &Path, port: u16, args: &[&str]) -> Self {
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["serve", "--data"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lapterop-server");
        let s = Self {
            child: Some(child),
            dir: dir.to_owned(),
            port,
            url,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, body)) = get(&format!("{}/healthz", s.url)) {
                assert_eq!(body, "ok\n");
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not answer on {}", s.url);
    }

    /// SIGKILL, no shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The server's peak resident memory (`VmHWM` in /proc/PID/status), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Sends SIGTERM and waits up to `limit` for the server to exit; its exit status, or `None` if it
    /// still runs (then it is killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's public key from the documented URL.
    pub fn server_key(&self) -> VerifyingKey {
        let (status, text) = get(&format!("{}/api/v1/server-key", self.url)).expect("server key");
        assert_eq!(status, 200);
        keys::public_key_from_hex(&text).expect("server key is a public key")
    }

    pub fn post(&self, body: &[u8]) -> (u16, String) {
        post(&format!("{}/api/v1/certificates", self.url), body).expect("post")
    }

    pub fn count(&self, table: &str) -> u64 {
        count(&self.dir, table)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Rows in a table, read straight from the database file.
pub fn count(dir: &Path, table: &str) -> u64 {
    let conn = rusqlite::Connection::open(dir.join("lapterop.sqlite")).expect("open db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// A station key pair written under `dir` and enrolled under `name`.
pub fn enrol(dir: &Path, name: &str, label: &str) -> SigningKey {
    let key = keys::fixture_key(label);
    let prefix = dir.join(format!("{name}-key"));
    let (_, public) = keys::write_keypair(&prefix, &key).expect("write key pair");
    let (code, out, err) = cli(
        &[
            "stations",
            "add",
            "--data",
            dir.to_str().expect("utf-8 path"),
            "--name",
            name,
            "--key",
            public.to_str().expect("utf-8 path"),
        ],
        "",
    );
    assert_eq!(code, 0, "stations add: {out}{err}");
    key
}

/// Adds a reviewer with a password.
pub fn add_user(dir: &Path, name: &str, password: &str) {
    let (code, out, err) = cli(
        &["users", "add", "--data", dir.to_str().expect("utf-8"), name],
        &format!("{password}\n"),
    );
    assert_eq!(code, 0, "users add: {out}{err}");
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .build()
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), String> {
    match r {
        Ok(resp) => Ok((resp.status(), resp.into_string().map_err(|e| e.to_string())?)),
        Err(ureq::Error::Status(code, resp)) => Ok((code, resp.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

pub fn get(url: &str) -> Result<(u16, String), String> {
    answer(agent().get(url).call())
}

pub fn get_with(url: &str, header: &str, value: &str) -> Result<(u16, String), String> {
    answer(agent().get(url).set(header, value).call())
}

/// GET `path` of `server` signed with a station key (header `lapterop-station`).
pub fn get_as_station(server: &str, path: &str, key: &SigningKey) -> Result<(u16, String), String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let value = lapterop_certificate::request::header_value(key, "GET", path, now);
    get_with(
        &format!("{server}{path}"),
        lapterop_certificate::request::HEADER,
        &value,
    )
}

pub fn get_bytes(url: &str) -> Vec<u8> {
    let resp = agent().get(url).call().expect("GET");
    let mut out = Vec::new();
    resp.into_reader().read_to_end(&mut out).expect("read body");
    out
}

pub fn post(url: &str, body: &[u8]) -> Result<(u16, String), String> {
    answer(
        agent()
            .post(url)
            .set("Content-Type", "application/json")
            .send_bytes(body),
    )
}

/// PUT `body` (JSON) to `url`.
pub fn put(url: &str, body: &[u8]) -> Result<(u16, String), String> {
    answer(
        agent()
            .put(url)
            .set("Content-Type", "application/json")
            .send_bytes(body),
    )
}

/// An answer with its status, headers (`name: value` lines, names in lower case) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn full_answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let mut headers = Vec::new();
    for name in resp.headers_names() {
        for value in resp.all(&name) {
            headers.push((name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    let body = resp.into_string().unwrap_or_default();
    Answer { status, headers, body }
}

/// A reviewer's browser, reduced to what logging in needs: the login form's token (from its cookie).
pub struct Login {
    pub url: String,
    pub token: String,
}

impl Login {
    /// Opens the login page of `server` and keeps its form token.
    pub fn open(server: &str) -> Self {
        let page = agent().get(&format!("{server}/login")).call().expect("login page");
        let cookie = page.header("Set-Cookie").expect("login cookie").to_owned();
        let token = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .expect("cookie value")
            .1
            .to_owned();
        Self {
            url: server.to_owned(),
            token,
        }
    }

    /// Posts the login form.
    pub fn attempt(&self, user: &str, password: &str) -> Answer {
        full_answer(
            agent()
                .post(&format!("{}/login", self.url))
                .set("Cookie", &format!("lapterop_login={}", self.token))
                .set("Accept-Language", "en")
                .send_form(&[("user", user), ("password", password), ("csrf", &self.token)]),
        )
    }

    /// Logs in and returns the session cookie (`lapterop_session=...`).
    pub fn session(&self, user: &str, password: &str) -> String {
        let a = self.attempt(user, password);
        assert_eq!(a.status, 303, "login as {user}: {}", a.body);
        a.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix("lapterop_session="))
            .and_then(|v| v.split(';').next())
            .map(|v| format!("lapterop_session={v}"))
            .expect("session cookie")
    }
}

/// GET `url` with a cookie; the full answer (redirects not followed).
pub fn get_with_cookie(url: &str, cookie: &str) -> Answer {
    full_answer(agent().get(url).set("Cookie", cookie).call())
}

/// Sends only the head of a POST declaring `length` body bytes, and reads the answer (a server that
/// refuses by size answers without reading the body).
pub fn post_headers_only(port: u16, length: usize) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        stream,
        "POST /api/v1/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("send head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Fails when a required outside tool is missing and CI asks for every test; otherwise says loudly
/// that the test is skipped. Returns false when the test must not run.
pub fn require_tool(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        return true;
    }
    lapterop_testkit::skip(
        "a server test",
        &format!("{tool} is not installed (Debian package {package}, scripts/apt-packages.txt)"),
    );
    false
}

/// [`require_tool`] for headless Chromium and its WebDriver.
pub fn require_browser() -> bool {
    require_tool("chromedriver", "chromium-driver") && require_tool("chromium", "chromium")
}

/// Checks the log from the API: positions 1..n, each entry chaining to the previous.
pub fn check_chain(server: &Server) -> Vec<Value> {
    let (status, text) = get(&format!("{}/api/v1/log?limit=10000", server.url)).expect("log");
    assert_eq!(status, 200);
    let log: Value = serde_json::from_str(&text).expect("log json");
    let entries = log["entries"].as_array().expect("entries").clone();
    let mut previous = lapterop_certificate::chain::GENESIS.to_owned();
    for (i, e) in entries.iter().enumerate() {
        let position = e["position"].as_u64().expect("position");
        assert_eq!(position, i as u64 + 1, "positions have no gap");
        assert_eq!(e["previous_hash"], json!(previous), "entry {position} chains");
        let hash = lapterop_certificate::chain::entry_hash(
            &previous,
            position,
            e["certificate_blake3"].as_str().expect("blake3"),
            e["received_at"].as_str().expect("received_at"),
        );
        assert_eq!(e["entry_hash"], json!(hash), "entry {position} hash");
        previous = hash;
    }
    assert_eq!(log["head"]["entry_hash"], json!(previous));
    entries
}

/// A chromedriver process and one browser session, driven over the W3C WebDriver HTTP API.
pub struct Browser {
    driver: Child,
    base: String,
    pub session: String,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver and a headless Chromium whose Accept-Language is `accept_language`.
    pub fn start(accept_language: &str) -> Self {
        Self::start_with(accept_language, &[])
    }

    /// Chromium with no network at all: every host name fails to resolve and every connection,
    /// loopback included, goes to a proxy on a port where nothing listens.
    pub fn offline() -> Self {
        let proxy = format!("--proxy-server=127.0.0.1:{}", free_port());
        Self::start_with(
            "en",
            &[
                "--host-resolver-rules=MAP * ~NOTFOUND",
                &proxy,
                "--proxy-bypass-list=<-loopback>",
            ],
        )
    }

    /// Like [`Browser::start`], with more Chromium arguments.
    pub fn start_with(accept_language: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) = get(&format!("{base}/status")) {
                if body.contains("\"ready\":true") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1200,1600",
        ]
        .iter()
        .chain(extra)
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {"intl.accept_languages": accept_language},
            }
        }}});
        let mut b = Self {
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("session id").to_owned();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = agent().request(method, &url);
        let r = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let (status, text) = answer(r).expect("webdriver call");
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "webdriver {method} {path}: {text}");
        v["value"].clone()
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Polls `done` until it holds (a click's navigation may still be loading when it returns).
    pub fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The text of the first element matching `css`, read by a page script ("" if none); safe to
    /// poll while a page loads, unlike element references.
    pub fn js_text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent.trim() : ''",
            serde_json::to_string(css).expect("json string")
        );
        self.try_script(&script)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn try_script(&self, script: &str) -> Option<Value> {
        let url = format!("{}{}", self.base, self.s("/execute/sync"));
        let (status, text) = answer(agent().post(&url).send_json(json!({"script": script, "args": []}))).ok()?;
        (status == 200)
            .then(|| serde_json::from_str::<Value>(&text).ok())??
            .get("value")
            .cloned()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        match v[ELEMENT].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("no element {css:?} on {}: {v}", self.url()),
        }
    }

    pub fn count(&self, css: &str) -> usize {
        let v = self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array().map_or(0, Vec::len)
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &self.s(&format!("/element/{id}/text")), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn attr(&self, css: &str, name: &str) -> String {
        let id = self.find(css);
        self.call("GET", &self.s(&format!("/element/{id}/attribute/{name}")), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &self.s(&format!("/element/{id}/click")), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// A cookie's value as the browser holds it (HttpOnly included).
    pub fn cookie(&self, name: &str) -> String {
        let v = self.call("GET", &self.s(&format!("/cookie/{name}")), None);
        v["value"].as_str().expect("cookie value").to_owned()
    }

    pub fn body_text(&self) -> String {
        self.text("body")
    }

    /// Runs a script in the page and returns its result.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("decode screenshot");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = answer(
                agent()
                    .delete(&format!("{}/session/{}", self.base, self.session))
                    .call(),
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
