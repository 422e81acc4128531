//! Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and the signing input.
//!
//! The signing input of a document is the JCS form of the document with its top-level `signature`
//! member removed. It is computed from the document as received, not from our re-serialisation of it,
//! so a verifier in another language that follows RFC 8785 gets the same bytes.

use serde_json::Value;

/// Why canonical bytes could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The value is not a JSON object.
    #[error("the document is not a JSON object")]
    NotAnObject,
    /// The JCS serializer failed (a number outside what JSON can carry).
    #[error("canonicalising failed: {0}")]
    Jcs(String),
}

/// RFC 8785 canonical bytes of any JSON value.
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| CanonicalError::Jcs(e.to_string()))
}

/// The bytes a signature covers: the canonical form of `document` without its `signature` member.
pub fn signing_input(document: &Value) -> Result<Vec<u8>, CanonicalError> {
    let Value::Object(map) = document else {
        return Err(CanonicalError::NotAnObject);
    };
    let mut unsigned = map.clone();
    unsigned.remove("signature");
    canonical_bytes(&Value::Object(unsigned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 8785 §3.2.3: members sorted by UTF-16 code units, no whitespace.
    #[test]
    fn sorts_members_by_utf16_code_units() {
        let v = json!({"\u{20ac}": 1, "\r": 2, "1": 3, "\u{1f600}": 4, "\u{80}": 5, "\u{fb33}": 6});
        let out = String::from_utf8(canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            "{\"\\r\":2,\"1\":3,\"\u{80}\":5,\"\u{20ac}\":1,\"\u{1f600}\":4,\"\u{fb33}\":6}"
        );
    }

    /// RFC 8785 §3.2.2.2: only the mandatory escapes, lower-case `\u00xx` for other controls.
    #[test]
    fn escapes_strings_minimally() {
        let v = json!({"s": "a\"b\\c\n\u{1}/é"});
        let out = String::from_utf8(canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(out, "{\"s\":\"a\\\"b\\\\c\\n\\u0001/é\"}");
    }

    #[test]
    fn signing_input_drops_only_the_top_level_signature() {
        let v = json!({"b": {"signature": 1}, "signature": {"x": 1}, "a": [true, null]});
        let out = String::from_utf8(signing_input(&v).unwrap()).unwrap();
        assert_eq!(out, "{\"a\":[true,null],\"b\":{\"signature\":1}}");
    }
}
