//! The `[limits]` table of the hub's configuration: its fields, defaults
//! and bounds (the limiter itself is `crate::ratelimit`, the connection caps
//! `crate::conn`).

use serde::Deserialize;

/// The `[limits]` table: bounds on what connections (authenticated or not)
/// may hold. Read live: a reloaded configuration applies to new connections
/// (and to the rate of sessions already open).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open TCP connections in total (HTTP, WebSocket, TLS handshakes).
    pub max_connections: u32,
    /// Connections not (yet) in an authenticated edge session: plain HTTP,
    /// TLS handshakes, WebSockets before `Welcome`.
    pub max_unauthenticated: u32,
    /// Open connections from one peer IP address.
    pub max_connections_per_address: u32,
    /// Authenticated sessions of one identity.
    pub max_sessions_per_identity: u32,
    /// Milliseconds a WebSocket gets to authenticate (`Hello` answered by
    /// `Welcome`); `Ping` does not extend it.
    pub hello_timeout_ms: u64,
    /// Milliseconds a client gets to send a whole HTTP request header (and,
    /// over TLS, to finish the handshake).
    pub header_read_timeout_ms: u64,
    /// `Push` frames per second one identity (all its sessions together)
    /// may send on average (token bucket, see [`crate::ratelimit`]); over
    /// it the hub holds the push (and reads no further push) until the
    /// bucket refills. 0: no limit.
    pub pushes_per_second: u32,
    /// The token bucket's size: pushes that may arrive in a burst.
    pub push_burst: u32,
    /// Pushed documents per second one identity (all its sessions together)
    /// may send on average: a `Push` of N documents costs N. Over it the
    /// push waits (and the socket is not read) until the budget refills:
    /// paced, never refused. 0: no limit.
    pub push_docs_per_second: u32,
    /// Documents that may arrive in a burst (the bucket's size).
    pub push_docs_burst: u32,
    /// Pushed bytes (`Push` frame sizes) per second one identity may send on
    /// average; as `push_docs_per_second`. 0: no limit.
    pub push_bytes_per_second: u64,
    /// Bytes that may arrive in a burst.
    pub push_bytes_burst: u64,
    /// New authenticated sessions per second of one identity: over it the
    /// `Welcome` waits; a session that would wait more than 5 s is refused
    /// with `Error(too_many_connections)` (retryable). 0: no limit.
    pub sessions_per_second: u32,
    /// New sessions of one identity that may come in a burst.
    pub session_burst: u32,
    /// Seconds an over-cap client is told to wait (`Retry-After`).
    pub retry_after_seconds: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_unauthenticated: 1_000,
            max_connections_per_address: 256,
            max_sessions_per_identity: 16,
            hello_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            pushes_per_second: 100,
            push_burst: 400,
            push_docs_per_second: 30,
            push_docs_burst: 10_000,
            push_bytes_per_second: 256 << 10,
            push_bytes_burst: 8 << 20,
            sessions_per_second: 20,
            session_burst: 64,
            retry_after_seconds: 5,
        }
    }
}

impl Limits {
    /// Checks the bounds (counts and bursts at least 1, timeouts at most an
    /// hour); the error names the key.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("max_connections", u64::from(self.max_connections)),
            ("max_unauthenticated", u64::from(self.max_unauthenticated)),
            (
                "max_connections_per_address",
                u64::from(self.max_connections_per_address),
            ),
            (
                "max_sessions_per_identity",
                u64::from(self.max_sessions_per_identity),
            ),
            ("hello_timeout_ms", self.hello_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("push_burst", u64::from(self.push_burst)),
            ("push_docs_burst", u64::from(self.push_docs_burst)),
            ("push_bytes_burst", self.push_bytes_burst),
            ("session_burst", u64::from(self.session_burst)),
        ] {
            if v == 0 {
                return Err(format!("limits.{key}: must be at least 1"));
            }
        }
        for (key, v) in [
            ("hello_timeout_ms", self.hello_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
        ] {
            if v > 3_600_000 {
                return Err(format!(
                    "limits.{key}: at most 3600000 (one hour), found {v}"
                ));
            }
        }

        Ok(())
    }
}
