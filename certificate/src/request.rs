//! Signed API requests: how a station proves who it is when it reads back what it sent.
//!
//! The collection server answers `GET /api/v1/certificates/{id}` only to a logged-in reviewer or to
//! the station that signed that certificate. A station signs the request with its station key and sends
//! the header [`HEADER`]: `KEY_ID UNIX_TIME SIGNATURE`, where `SIGNATURE` is the Ed25519 signature (128
//! hex digits) over [`message`] of the method, the path (with the query, if any) and the time. The
//! server accepts a time within [`MAX_SKEW_SECS`] of its own clock, from an enrolled station that was
//! not revoked.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::keys::key_id;

/// The request header that carries the station's signature.
pub const HEADER: &str = "lapterop-station";

/// How far the request's time may be from the server's clock, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// The bytes a station signs for one request.
pub fn message(method: &str, path: &str, unix_time: i64) -> Vec<u8> {
    format!("lapterop.api/v1\n{method}\n{path}\n{unix_time}\n").into_bytes()
}

/// The [`HEADER`] value for `method` on `path` at `unix_time`, signed with `key`.
pub fn header_value(key: &SigningKey, method: &str, path: &str, unix_time: i64) -> String {
    let signature = key.sign(&message(method, path, unix_time));
    format!(
        "{} {unix_time} {}",
        key_id(&key.verifying_key()),
        hex::encode(signature.to_bytes())
    )
}

/// A parsed [`HEADER`] value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The station key's id.
    pub key_id: String,
    /// When the station signed it (seconds since 1970).
    pub unix_time: i64,
    signature: [u8; 64],
}

impl SignedRequest {
    /// Parses `KEY_ID UNIX_TIME SIGNATURE`; `None` when malformed.
    pub fn parse(value: &str) -> Option<SignedRequest> {
        let mut parts = value.split_ascii_whitespace();
        let key_id = parts.next()?;
        let unix_time = parts.next()?.parse().ok()?;
        let sig = parts.next()?;
        if parts.next().is_some() || key_id.len() != 32 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut signature = [0u8; 64];
        hex::decode_to_slice(sig, &mut signature).ok()?;
        Some(SignedRequest {
            key_id: key_id.to_ascii_lowercase(),
            unix_time,
            signature,
        })
    }

    /// Whether `key` (whose id must be [`SignedRequest::key_id`]) signed `method` on `path`, within
    /// [`MAX_SKEW_SECS`] of `now`.
    pub fn verify(&self, key: &VerifyingKey, method: &str, path: &str, now: i64) -> bool {
        key_id(key) == self.key_id
            && (now - self.unix_time).abs() <= MAX_SKEW_SECS
            && key
                .verify_strict(
                    &message(method, path, self.unix_time),
                    &Signature::from_bytes(&self.signature),
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_only_as_signed_and_in_time() {
        let key = crate::keys::fixture_key("request station");
        let other = crate::keys::fixture_key("another station");
        let path = "/api/v1/certificates/0190b5c0-0000-7000-8000-000000000001";
        let value = header_value(&key, "GET", path, 1_790_000_000);
        let r = SignedRequest::parse(&value).unwrap();
        let vk = key.verifying_key();
        assert!(r.verify(&vk, "GET", path, 1_790_000_000 + MAX_SKEW_SECS));
        assert!(
            !r.verify(&vk, "GET", path, 1_790_000_000 + MAX_SKEW_SECS + 1),
            "too late"
        );
        assert!(
            !r.verify(&vk, "GET", "/api/v1/certificates/other", 1_790_000_000),
            "another path"
        );
        assert!(!r.verify(&vk, "POST", path, 1_790_000_000), "another method");
        assert!(
            !r.verify(&other.verifying_key(), "GET", path, 1_790_000_000),
            "another key"
        );
        assert!(SignedRequest::parse("abc 1 ff").is_none());
        assert!(SignedRequest::parse(&format!("{value} x")).is_none());
    }
}
