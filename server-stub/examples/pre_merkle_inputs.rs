//! The inputs of the pre-merkle fixture (`server-stub/tests/fixtures/pre-merkle/make.sh`): the station
//! key pair and five signed certificates, from today's test helpers (the certificate format did not
//! change since the log became a Merkle tree).
//!
//! `cargo run -p lapterop-server --example pre_merkle_inputs -- DIR` writes `DIR/station.key`,
//! `DIR/station.pub` and `DIR/cert-1.json` .. `DIR/cert-5.json`. The key is the fixture key of the
//! label `pre-merkle station`, so the output is the same on every run but for the certificates' ids
//! and times.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/server/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::path::PathBuf;

use lapterop_certificate::keys;

/// The station label the fixture's key is made from (the migration test signs with it too).
const PRE_MERKLE_STATION: &str = "pre-merkle station";

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: pre_merkle_inputs DIR (the directory to write the key pair and certificates into)");
        std::process::exit(2);
    };
    let key = keys::fixture_key(PRE_MERKLE_STATION);
    keys::write_keypair(&out.join("station"), &key).expect("writing the station key pair");
    for i in 1..=5u64 {
        std::fs::write(
            out.join(format!("cert-{i}.json")),
            fixtures::signed(fixtures::laptop(500 + i, "Anna Peeters"), &key),
        )
        .expect("writing a certificate");
    }
}
