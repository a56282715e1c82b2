//! Replication: access rules, the wire protocol and its state machines.
//!
//! See `docs/protocol.md` for the protocol and its security properties.

mod rules;

pub use rules::{ConflictPolicy, Prefixes, check_canonical};
