//! Helpers for tests of the pure replication state machines
//! (`outpost::sync`), which several test files had each written for
//! themselves: a grant, a token `Hello`, the frames a hub session sent, and
//! whether it closed with a code.

use std::collections::HashMap;

use outpost::DbId;
use outpost::sync::frame::{AuthMode, MAX_FRAME_BYTES};
use outpost::sync::{ConflictPolicy, Frame, Grant, HubAction, Prefixes};

/// The grant of identity `laptop`: reads under the prefixes `read`, writes
/// under `write`; no relay, policies, guards or hub outputs.
pub fn grant(read: &[&str], write: &[&str]) -> Grant {
    let prefixes = |p: &[&str]| {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        Prefixes::parse(&p).expect("test prefixes parse")
    };
    Grant {
        identity: "laptop".into(),
        read: prefixes(read),
        write: prefixes(write),
        relay: false,
        policies: HashMap::new(),
        default_policy: ConflictPolicy::Latest,
        never_delete: Vec::new(),
        hub_outputs: Vec::new(),
    }
}

/// The `Hello` of identity `laptop` (token `t`, database `main`, database
/// id `db_id`, never synced), offering protocol versions `versions`
/// (lowest, highest).
pub fn token_hello(db_id: DbId, versions: (u16, u16)) -> Vec<u8> {
    Frame::Hello {
        min_version: versions.0,
        max_version: versions.1,
        db_id,
        database: "main".into(),
        identity: "laptop".into(),
        credential: "t".into(),
        pull_checkpoint: 0,
        checkpoint_hub: DbId([0; 16]),
        auth: AuthMode::Token,
        key: Vec::new(),
    }
    .encode()
}

/// The frames among a hub session's actions, decoded.
pub fn sent(acts: &[HubAction]) -> Vec<Frame> {
    acts.iter()
        .filter_map(|a| match a {
            HubAction::Send(b) => {
                Some(Frame::decode(b, MAX_FRAME_BYTES).expect("the hub's frame decodes"))
            }
            _ => None,
        })
        .collect()
}

/// Whether a hub session's actions close the connection with `code`.
pub fn closed_with(acts: &[HubAction], code: &str) -> bool {
    acts.iter()
        .any(|a| matches!(a, HubAction::Close { code: c, .. } if c == code))
}
