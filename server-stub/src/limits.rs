//! Every limit the server puts on its clients, in one place. `docs/server.md` ("Limits") says what a
//! client gets when it hits each one; change both together.

use std::time::Duration;

/// Time a client has to send a request's head (request line and headers): from the moment it
/// connects, and on a kept-alive connection from the end of the previous answer, so this is also how
/// long an idle connection stays open. Then the connection is closed without an answer (hyper's
/// `header_read_timeout`).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client has to send a request's whole body, counted from the end of its head: `408`, and the
/// connection is closed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Time the server takes at most for one request, from its head to the answer: `503` with
/// `Retry-After`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection is closed after this long (after the request in progress, which gets at most
/// [`SHUTDOWN_GRACE`] more).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Connections served at once (default of `serve --max-connections`). A connection over the limit is
/// answered `503` with `Retry-After` and closed, without reading its request.
pub const MAX_CONNECTIONS: usize = 256;

/// Connections over the limit that are being answered `503` at the same time; beyond these a new
/// connection is closed at once without an answer. Each has at most [`REFUSAL_TIME`].
pub const MAX_REFUSALS: usize = 32;

/// Time to write the `503` to a connection over the limit and see it closed.
pub const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// On SIGTERM or SIGINT the server stops accepting at once; requests in progress get this long to
/// finish, then the remaining connections are closed and the server exits 0.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `Retry-After` (seconds) on a `503` for a full server or a slow request.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Failed logins for one name within [`LOGIN_WINDOW`] (counted from the first of them) after which
/// that name is refused with `429` and `Retry-After`, without checking the password, until the
/// window ends. A successful login clears the name's count.
pub const LOGIN_FAILURES_PER_NAME: u32 = 5;

/// Failed logins from one client address (IPv4, or an IPv6 /64) within [`LOGIN_WINDOW`] after which
/// every login from it is refused with `429`. Generous: behind a reverse proxy every client has the
/// proxy's address.
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 100;

/// The window of the failure counts.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Names and addresses whose failures are remembered (each); when full, the oldest is forgotten.
pub const LOGIN_TRACKED: usize = 10_000;

/// Argon2 verifications running at once (each takes about 19 MiB).
pub const HASHING_AT_ONCE: usize = 2;

/// Logins waiting for an Argon2 slot; one more is answered `503` with `Retry-After`.
pub const HASHING_QUEUE: usize = 16;

/// Characters of a typed login name kept in the audit log.
pub const AUDIT_NAME_CHARS: usize = 64;

/// How long a review session lasts at most, used or not.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// A review session unused for this long ends.
pub const SESSION_IDLE_SECONDS: i64 = 30 * 60;

/// A session's last use is written at most this often (not on every page), so it ends between
/// [`SESSION_IDLE_SECONDS`] and one minute less after its last use.
pub const SESSION_TOUCH_SECONDS: i64 = 60;

/// The limits of the HTTP server; [`Limits::default`] is the constants above.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`HEADER_TIMEOUT`].
    pub header: Duration,
    /// See [`BODY_TIMEOUT`].
    pub body: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request: Duration,
    /// See [`CONNECTION_LIFETIME`].
    pub connection_lifetime: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header: HEADER_TIMEOUT,
            body: BODY_TIMEOUT,
            request: REQUEST_TIMEOUT,
            connection_lifetime: CONNECTION_LIFETIME,
            max_connections: MAX_CONNECTIONS,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}
