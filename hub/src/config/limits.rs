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
    /// New TCP connections per second one peer address (an IPv4 address,
    /// an IPv6 /64) may open on average (token bucket, checked right at
    /// accept, before any byte is read): over it the socket is closed at
    /// once (reset, no HTTP answer, no handshake). 0: no limit.
    pub new_connections_per_address_per_second: u32,
    /// New connections one peer address may open in a burst (the bucket's
    /// size).
    pub new_connections_per_address_burst: u32,
    /// Authenticated sessions of one identity.
    pub max_sessions_per_identity: u32,
    /// Devices (edge database ids) of one identity the hub keeps a served
    /// record for (`outpost::sync::purge`): a session of a new device beyond
    /// it is refused with `Error(too_many_devices)` (the records of an
    /// identity cycling through database ids stay bounded).
    pub max_devices_per_identity: u32,
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
            new_connections_per_address_per_second: 50,
            new_connections_per_address_burst: 500,
            max_sessions_per_identity: 16,
            max_devices_per_identity: 1024,
            hello_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            pushes_per_second: 100,
            push_burst: 400,
            push_docs_per_second: 30,
            push_docs_burst: 10_000,
            push_bytes_per_second: 256 << 10,
            push_bytes_burst: 32 << 20,
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
            (
                "max_devices_per_identity",
                u64::from(self.max_devices_per_identity),
            ),
            ("hello_timeout_ms", self.hello_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("push_burst", u64::from(self.push_burst)),
            ("push_docs_burst", u64::from(self.push_docs_burst)),
            ("push_bytes_burst", self.push_bytes_burst),
            ("session_burst", u64::from(self.session_burst)),
            (
                "new_connections_per_address_burst",
                u64::from(self.new_connections_per_address_burst),
            ),
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

/// An `[[edge]]`'s own budgets (`[edge.limits]`, e.g. a relaying hub or a
/// bulk importer that pushes more than an honest device): each key set here
/// replaces the `[limits]` value for that identity alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeLimits {
    /// See [`Limits::pushes_per_second`].
    pub pushes_per_second: Option<u32>,
    /// See [`Limits::push_burst`].
    pub push_burst: Option<u32>,
    /// See [`Limits::push_docs_per_second`].
    pub push_docs_per_second: Option<u32>,
    /// See [`Limits::push_docs_burst`].
    pub push_docs_burst: Option<u32>,
    /// See [`Limits::push_bytes_per_second`].
    pub push_bytes_per_second: Option<u64>,
    /// See [`Limits::push_bytes_burst`].
    pub push_bytes_burst: Option<u64>,
    /// See [`Limits::sessions_per_second`].
    pub sessions_per_second: Option<u32>,
    /// See [`Limits::session_burst`].
    pub session_burst: Option<u32>,
}

impl EdgeLimits {
    /// Bursts, when given, are at least 1 (a rate of 0 means no limit, as
    /// in `[limits]`).
    pub(super) fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("push_burst", self.push_burst.map(u64::from)),
            ("push_docs_burst", self.push_docs_burst.map(u64::from)),
            ("push_bytes_burst", self.push_bytes_burst),
            ("session_burst", self.session_burst.map(u64::from)),
        ] {
            if v == Some(0) {
                return Err(format!("limits.{key}: must be at least 1"));
            }
        }
        Ok(())
    }
}

impl Limits {
    /// These limits with an edge's own budgets in place of the defaults.
    pub fn with(&self, o: &EdgeLimits) -> Limits {
        Limits {
            pushes_per_second: o.pushes_per_second.unwrap_or(self.pushes_per_second),
            push_burst: o.push_burst.unwrap_or(self.push_burst),
            push_docs_per_second: o.push_docs_per_second.unwrap_or(self.push_docs_per_second),
            push_docs_burst: o.push_docs_burst.unwrap_or(self.push_docs_burst),
            push_bytes_per_second: o
                .push_bytes_per_second
                .unwrap_or(self.push_bytes_per_second),
            push_bytes_burst: o.push_bytes_burst.unwrap_or(self.push_bytes_burst),
            sessions_per_second: o.sessions_per_second.unwrap_or(self.sessions_per_second),
            session_burst: o.session_burst.unwrap_or(self.session_burst),
            ..self.clone()
        }
    }
}
