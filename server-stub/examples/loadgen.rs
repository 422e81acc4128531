//! Load generator for `scripts/bench-server.sh`: N concurrent clients on 127.0.0.1 post distinct
//! signed certificates of realistic size (two disks, full audit summary, about 6 KB), and, in the same
//! run, the same number of clients hit the trivial health endpoint. Prints rate and p50/p99 latency.
//!
//! `loadgen pubkey PATH` writes the station public key to enrol;
//! `loadgen run URL CLIENTS SECONDS` runs the benchmark.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/server/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapterop_certificate::keys;

fn station_key() -> lapterop_certificate::SigningKey {
    keys::fixture_key("lapterop benchmark station")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("pubkey") => {
            let key = station_key();
            std::fs::write(&args[2], format!("{}\n", hex::encode(key.verifying_key().as_bytes()))).unwrap();
        }
        Some("run") => {
            let url = args[2].trim_end_matches('/').to_owned();
            let clients: usize = args[3].parse().unwrap();
            let seconds: usize = args[4].parse().unwrap();
            run(&url, clients, seconds);
        }
        _ => eprintln!("usage: loadgen pubkey PATH | loadgen run URL CLIENTS SECONDS"),
    }
}

struct Phase {
    count: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    bytes: usize,
}

fn report(name: &str, p: &mut Phase) {
    p.latencies.sort();
    let pct = |q: usize| {
        if p.latencies.is_empty() {
            return 0.0;
        }
        // Nearest-rank percentile: the index is at most len - 1.
        let i = (p.latencies.len() - 1) * q / 100;
        p.latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<8} {:>8} requests in {:>5.1} s = {:>8.0}/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   errors {}   mean body {} B",
        p.count,
        p.elapsed.as_secs_f64(),
        p.count as f64 / p.elapsed.as_secs_f64(),
        pct(50),
        pct(99),
        p.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        p.errors,
        p.bytes.checked_div(p.count).unwrap_or(0),
    );
}

/// Runs `clients` threads for `seconds`, each calling `op(client, i)` in a loop.
fn phase(
    clients: usize,
    seconds: usize,
    op: impl Fn(&ureq::Agent, usize, usize) -> (bool, usize) + Send + Sync + 'static,
) -> Phase {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                let mut lat = Vec::new();
                let (mut errors, mut bytes, mut i) = (0, 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (ok, n) = op(&agent, c, i);
                    lat.push(t.elapsed());
                    bytes += n;
                    if !ok {
                        errors += 1;
                    }
                    i += 1;
                }
                (lat, errors, bytes)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds as u64));
    stop.store(true, Ordering::Relaxed);
    let mut p = Phase {
        count: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        bytes: 0,
    };
    for t in threads {
        let (lat, errors, bytes) = t.join().unwrap();
        p.count += lat.len();
        p.latencies.extend(lat);
        p.errors += errors;
        p.bytes += bytes;
    }
    p.elapsed = start.elapsed();
    p
}

fn run(url: &str, clients: usize, seconds: usize) {
    // Sign every certificate before the clock starts, so client CPU does not count against the server.
    let per_client = 1500 * seconds / clients + 100;
    eprintln!("signing {} certificates ...", per_client * clients);
    let key = station_key();
    let bodies: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let key = key.clone();
                s.spawn(move || {
                    (0..per_client)
                        .map(|i| fixtures::signed(fixtures::laptop((c * per_client + i) as u64, "bench"), &key))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bodies = Arc::new(bodies);

    let health = format!("{url}/healthz");
    let mut h = phase(clients, seconds.min(10), move |agent, _, _| {
        match agent.get(&health).call() {
            Ok(r) => (r.status() == 200, 0),
            Err(_) => (false, 0),
        }
    });
    let post = format!("{url}/api/v1/certificates");
    let b = bodies.clone();
    let mut p = phase(clients, seconds, move |agent, c, i| {
        let Some(body) = b[c].get(i) else {
            std::thread::sleep(Duration::from_millis(10));
            return (false, 0);
        };
        match agent
            .post(&post)
            .set("Content-Type", "application/json")
            .send_bytes(body)
        {
            Ok(r) => (r.status() == 201, body.len()),
            Err(_) => (false, body.len()),
        }
    });
    println!("{clients} concurrent clients on {url}");
    report("healthz", &mut h);
    report("ingest", &mut p);
}
