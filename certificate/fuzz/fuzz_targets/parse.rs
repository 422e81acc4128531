//! Fuzzes the certificate parser and verifier: any input must give `Ok` or a clear error, never a
//! panic, and whatever parses must re-serialise to a document that parses to the same certificate.
#![no_main]

use lapterop_certificate as cert;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = cert::keys::fixture_key("station").verifying_key();
    let _ = cert::verify(data, &key);
    let _ = cert::chain::verify_receipt(data, &key);
    if let Ok((c, value)) = cert::parse(data) {
        let _ = cert::canonical::signing_input(&value);
        let again = c.to_pretty_json().expect("a parsed certificate serialises");
        let (back, _) = cert::parse(again.as_bytes()).expect("a re-serialised certificate parses");
        assert_eq!(back, c);
    }
});
