//! SIGKILL while 8 clients post: every answered certificate survives, the chain verifies, retries
//! complete.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapterop_certificate::chain;
use serde_json::Value;

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

const CLIENTS: u64 = 8;
const PER_CLIENT: u64 = 25;

#[test]
fn sigkill_during_ingest_loses_nothing_that_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "crash station");
    let mut s = Server::start(dir.path());
    let url = format!("{}/api/v1/certificates", s.url);
    let answered = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let key = key.clone();
            let url = url.clone();
            let answered = answered.clone();
            let failures = failures.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..PER_CLIENT {
                    let body = signed(laptop(1000 + c * 100 + i, &format!("client {c}")), &key);
                    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        match post(&url, &body) {
                            Ok((status @ (200 | 201), receipt)) => {
                                answered.fetch_add(1, Ordering::SeqCst);
                                got.push((id, status, receipt));
                                break;
                            }
                            Ok((503, _)) | Err(_) => {
                                failures.fetch_add(1, Ordering::SeqCst);
                                assert!(Instant::now() < deadline, "retries did not complete");
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            Ok((status, text)) => panic!("unexpected {status}: {text}"),
                        }
                    }
                }
                got
            })
        })
        .collect();

    // Kill the server mid-stream, then start it again on the same port and data.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < 40 {
        assert!(Instant::now() < deadline, "clients made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill();
    let at_kill = answered.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let s = Server::start_on(dir.path(), s.port);

    let results: Vec<(String, u16, String)> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(results.len() as u64, CLIENTS * PER_CLIENT, "every client finished");
    assert!(at_kill < results.len(), "the kill happened while clients were posting");
    eprintln!(
        "crash test: {at_kill} answered before SIGKILL, {} connection failures retried",
        failures.load(Ordering::SeqCst)
    );

    let server_key = s.server_key();
    for (id, _, receipt) in &results {
        let (status, text) = get_as_station(&s.url, &format!("/api/v1/certificates/{id}"), &key).unwrap();
        assert_eq!(status, 200, "certificate {id} that was answered is stored");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["receipt"],
            serde_json::from_str::<Value>(receipt).unwrap(),
            "same receipt as answered"
        );
        chain::verify_receipt(receipt.as_bytes(), &server_key).unwrap();
    }
    assert_eq!(count(dir.path(), "certificates"), CLIENTS * PER_CLIENT);
    assert_eq!(check_chain(&s).len() as u64, CLIENTS * PER_CLIENT);
    let (code, out, _) = cli(&["verify-log", "--data", dir.path().to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}");
    // Every donor link carries its own 160 random bits (40 hex digits), none repeated.
    let conn = rusqlite::Connection::open(dir.path().join("lapterop.sqlite")).unwrap();
    let tokens: Vec<String> = conn
        .prepare("SELECT donor_token FROM certificates")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tokens
        .iter()
        .all(|t| t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
    let distinct: std::collections::BTreeSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len(), "a donor token repeated");
}
