//! Integration tests of `lapterop-server`: the real binary on 127.0.0.1 with a temporary data
//! directory; Debian's chromium (through chromedriver) for the pages; poppler for the PDF.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod api;
mod browser;
mod crash;
mod ct_merkle;
mod donor;
mod fixtures;
mod hardware;
mod helpers;
mod hostile;
mod image_keys;
mod login;
mod privacy;
mod sessions;
mod slow_clients;
mod transparency;
mod verifier;
