//! The named catalogue of attacks (issue 10 §7): each case is a hostile
//! client (`outpost_testkit::hostile`) speaking the real protocol
//! (docs/protocol.md) over a real WebSocket against a real `outpost-hub`
//! process of its own (own directory, own port), then checks what the hub
//! did. The list reads as the catalogue:
//!
//! ```sh
//! cargo test -p outpost-hub --test attacks -- --list          # every case
//! cargo test -p outpost-hub --test attacks class2_            # one class
//! cargo test -p outpost-hub --test attacks -- --ignored --list # skipped ones
//! ```
//!
//! Every case asserts, where it applies:
//! (a) the typed refusal: the `PushRejected` code and the document it names,
//!     or the `Error` code that ends the session;
//! (b) the hub's state afterwards as an honest edge receives it (the
//!     read-everything identity `reader` pulls the whole feed: a poisoned
//!     feed fails here) and, hub stopped, that `outpost-hub export` works;
//! (c) other edges are unaffected: real native clients (`outpost-client`)
//!     of `alice` and `bob` go live and a write alice makes after the
//!     attack reaches bob;
//! (d) the hub process is still alive (`/healthz` answers 200, no panic in
//!     its log).
//!
//! The identities, prefixes and conflict policies every hub gets are in
//! `common.rs`; hubs run with the default `[limits]`, so set-up sessions
//! back off and retry over the per-identity session cap like an honest
//! client would (`Hostile::connect_hello`). The waits for the Hello and
//! header deadlines use the default 10 s (bounded at 14 s); every other
//! receive is bounded at 5 s.
//!
//! The cases are written against SPEC10 (the behaviour the fixes give); on
//! the code before those fixes, every class 1–7 has cases that fail (the
//! attack succeeds), and the control cases (`…is_accepted`, `…informed_edit…`,
//! `…reconnecting_with_her_own_db_id…`) pass. Classes 1–7 are the seven attack classes of issue 10;
//! `ids`, `metadata`, `floods`, `protocol`, `signed` and `revocation` are
//! the further kinds the issue names; `keys` (the handshake, enrollment
//! codes) and `signed` (the chain and signatures of batches) are protocol
//! 3's; `revocation` also covers protocol 4's purge orders and signed
//! receipts, `guards` the deletion guards (`never_delete`), and `forget`
//! subject purges (protocol 5: a purged id is never taken back),
//! `hub_writes` writes with safety `hub` (protocol 6), and `compaction`
//! tombstone compaction (protocol 7: `Resync`, checkpoints below the
//! horizon, copies of compacted deletions' versions pushed back), and
//! `index_outputs` the output documents of the hub's indexes (an edge never
//! writes them: `index_output`; protocol 9: a shared one pushed back), and
//! `certs` certificate identities (protocol 8: `Replace`, and forged,
//! expired, missing, retired and dropped client certificates over mutual
//! TLS, `Hostile::connect_tls`). Every
//! identity of the attack hubs is a key (`common.rs`): the hostile client
//! proves it and signs its batches like an honest edge, unless a case
//! forges them. Cases for what is not built yet would be `#[ignore]`d with
//! the reason; none is today.

mod common;
#[path = "../certificates/pki.rs"]
mod pki;

mod certs;
#[path = "poison.rs"]
mod class1_poison;
#[path = "forged_cv.rs"]
mod class2_forged_cv;
#[path = "squatting.rs"]
mod class3_squatting;
#[path = "rules_from_wire.rs"]
mod class4_rules_from_wire;
#[path = "existence.rs"]
mod class5_existence;
#[path = "bodies.rs"]
mod class6_bodies;
#[path = "preauth.rs"]
mod class7_preauth;
mod compaction;
mod floods;
mod forget;
mod guards;
mod hub_writes;
mod ids;
mod index_outputs;
mod keys;
mod metadata;
mod protocol;
mod revocation;
mod signed;
