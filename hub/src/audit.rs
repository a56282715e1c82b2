//! `outpost-hub audit`: verify, export and question the audit trail of the
//! hub's databases (`docs/audit.md`). A stopped hub's databases are opened
//! read-only; a running hub answers the same questions with the same
//! functions (`crate::audit_live`).
//!
//! `verify` checks the hash chain of the entries, then every signed
//! accepted batch: its signature (P-256 over the batch's canonical bytes,
//! recomputed from the entry's manifest) and its place in its identity's
//! chain of batches (numbers consecutive from 1, each naming the hash of the
//! identity's previous accepted batch).

use std::collections::BTreeMap;
use std::io::Write;

use outpost::keys::Verifier;
use outpost::sync::driver::served_records;
use outpost::sync::hub_write::{AuditHubWrite, AuditWriteOp, HubWriteManifest};
use outpost::sync::purge::Served;
use outpost::sync::signed::{BatchManifest, GENESIS, PurgeReceipt};

use outpost::db::{AuditBad, AuditImport, AuditPurgeReceipt, AuditPush};
use outpost::sync::received::AuditUpstream;
use outpost::{AuditEntry, AuditKind, ChangeVector};
use serde_json::{Value, json};

use crate::config::Config;
use crate::error::{HubError, Result};
use crate::state::DbHandle;

/// Entries read per step (memory stays bounded whatever the trail's length).
const CHUNK: usize = 1000;

/// What `audit verify` found in one database.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Verified {
    /// The database.
    pub database: String,
    /// Entries verified (before the first bad one).
    pub entries: u64,
    /// The chain hash of the last good entry (hex).
    pub head: String,
    /// The first bad entry.
    pub first_bad: Option<AuditBad>,
    /// Signed batches whose signature and chain link verified.
    pub signed: u64,
}

/// Opens database `name` of `config` read-only, with a clear error when it
/// has no data yet or a running hub holds it.
pub async fn open(config: &Config, name: &str) -> Result<DbHandle> {
    open_unless_held(config, name).await?.ok_or_else(|| {
        HubError::Other(format!(
            "database {name} is in use by a running hub: this command reads a stopped hub's \
             databases; stop the hub first"
        ))
    })
}

/// Opens database `name` of `config` read-only; `None` when a running hub
/// holds it (the audit commands then ask that hub: `crate::audit_live`).
pub async fn open_unless_held(config: &Config, name: &str) -> Result<Option<DbHandle>> {
    let dir = config.database_dir(name);
    if !dir.join(outpost::store::file::DATA_FILE).exists() {
        return Err(HubError::Other(format!(
            "database {name} has no data yet ({} does not exist)",
            dir.display()
        )));
    }
    match DbHandle::open_read_only(name, &dir).await {
        Ok(db) => Ok(Some(db)),
        Err(HubError::InUse { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Verifies the chain of `db` (see `Snapshot::verify_audit_chain`), then
/// the signature and chain link of every signed accepted batch in it
/// ([`Signatures`]); the first bad entry of either is reported.
pub async fn verify(db: &DbHandle) -> Result<Verified> {
    let r = db
        .db
        .verify_audit_chain()
        .await
        .map_err(|source| HubError::Database {
            database: db.name.clone(),
            source,
        })?;
    let mut v = Verified {
        database: db.name.clone(),
        entries: r.entries,
        head: outpost::db::hex_of(&r.head),
        first_bad: r.first_bad,
        signed: 0,
    };
    // Only the entries the hash chain vouches for.
    let upto = v.first_bad.as_ref().map_or(u64::MAX, |b| b.seq);
    let mut sigs = Signatures::new(outpost::keys::P256Verifier);
    let mut bad: Option<AuditBad> = None;
    let walked = each_entry(db, |e| {
        if bad.is_none() && e.seq < upto {
            bad = sigs.check(e);
        }
        Ok(())
    })
    .await;
    // A damaged page the chain check already named stops the walk there.
    if let Err(e) = walked
        && v.first_bad.is_none()
    {
        return Err(e);
    }
    v.signed = sigs.verified;
    if let Some(b) = bad {
        // Entries before it verified.
        v.entries = b.seq - 1;
        v.first_bad = Some(b);
    }
    Ok(v)
}

/// Checks signed accepted batches entry by entry: each signature under its
/// recorded key, and each identity's chain of batches.
#[derive(Debug)]
pub struct Signatures<V: Verifier> {
    verifier: V,
    /// Per identity: the last signed batch's number and hash.
    heads: BTreeMap<String, (u64, [u8; 32])>,
    /// Signed batches verified so far.
    pub verified: u64,
}

impl<V: Verifier> Signatures<V> {
    /// A checker with this verifier.
    pub fn new(verifier: V) -> Self {
        Signatures {
            verifier,
            heads: BTreeMap::new(),
            verified: 0,
        }
    }

    /// Checks entry `e` (signed `push_accepted` and `purge_receipt`
    /// entries are looked at); `Some` names what is wrong with it.
    pub fn check(&mut self, e: &AuditEntry) -> Option<AuditBad> {
        if e.kind == AuditKind::PurgeReceipt {
            return self.check_receipt(e);
        }
        if e.kind == AuditKind::HubWrite {
            return self.check_hub_write(e);
        }
        if e.kind != AuditKind::PushAccepted {
            return None;
        }
        let bad = |reason: String| {
            Some(AuditBad {
                seq: e.seq,
                reason,
                page_damaged: false,
            })
        };
        let p = match serde_json::from_slice::<AuditPush>(&e.payload) {
            Ok(p) => p,
            Err(err) => return bad(format!("the accepted batch's record does not parse: {err}")),
        };
        let (m, key, signature) = match BatchManifest::from_audit(&p) {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(why) => return bad(format!("signed batch of {}: {why}", p.identity)),
        };
        if p.key_id != key.fingerprint() {
            return bad(format!(
                "signed batch {} of {}: key_id {} is not the fingerprint of its public key ({})",
                m.seq,
                p.identity,
                p.key_id,
                key.fingerprint()
            ));
        }
        if !self.verifier.verify(&key, &m.message(), &signature) {
            return bad(format!(
                "signed batch {} of {}: the signature does not verify under key {} (the record was changed after signing, or signed by another key)",
                m.seq,
                p.identity,
                key.fingerprint()
            ));
        }
        let (last_seq, last_hash) = self.heads.get(&p.identity).copied().unwrap_or((0, GENESIS));
        if m.seq != last_seq + 1 {
            return bad(format!(
                "signed batch {} of {}: out of sequence (the identity's previous accepted batch in the trail is number {last_seq})",
                m.seq, p.identity
            ));
        }
        if m.prev != last_hash {
            return bad(format!(
                "signed batch {} of {}: its prev {} is not the hash of the identity's previous accepted batch ({})",
                m.seq,
                p.identity,
                outpost::db::hex_of(&m.prev),
                outpost::db::hex_of(&last_hash)
            ));
        }
        self.heads.insert(p.identity.clone(), (m.seq, m.hash()));
        self.verified += 1;
        None
    }

    /// Checks a signed purge receipt: its record parses, its key is the one
    /// named, and the signature verifies over the receipt's bytes.
    fn check_receipt(&mut self, e: &AuditEntry) -> Option<AuditBad> {
        let bad = |reason: String| {
            Some(AuditBad {
                seq: e.seq,
                reason,
                page_damaged: false,
            })
        };
        let p = match serde_json::from_slice::<AuditPurgeReceipt>(&e.payload) {
            Ok(p) => p,
            Err(err) => return bad(format!("the purge receipt's record does not parse: {err}")),
        };
        let (r, key, signature) = match PurgeReceipt::from_audit(&p) {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(why) => return bad(format!("purge receipt of {}: {why}", p.identity)),
        };
        if p.key_id != key.fingerprint() || !self.verifier.verify(&key, &r.message(), &signature) {
            return bad(format!(
                "purge receipt {} of {}: the signature does not verify under key {} (the record was changed after signing, or signed by another key)",
                r.order,
                p.identity,
                key.fingerprint()
            ));
        }
        self.verified += 1;
        None
    }

    /// A write with safety `hub`: its signature under its recorded key.
    fn check_hub_write(&mut self, e: &AuditEntry) -> Option<AuditBad> {
        let bad = |reason: String| {
            Some(AuditBad {
                seq: e.seq,
                reason,
                page_damaged: false,
            })
        };
        let p = match serde_json::from_slice::<AuditHubWrite>(&e.payload) {
            Ok(p) => p,
            Err(err) => return bad(format!("the hub write's record does not parse: {err}")),
        };
        let (m, key, signature) = match HubWriteManifest::from_audit(&p) {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(why) => return bad(format!("hub write of {}: {why}", p.identity)),
        };
        if p.key_id != key.fingerprint() || !self.verifier.verify(&key, &m.message(), &signature) {
            return bad(format!(
                "hub write {} of {}: the signature does not verify under key {} (the record was changed after signing, or signed by another key)",
                m.request,
                p.identity,
                key.fingerprint()
            ));
        }
        self.verified += 1;
        None
    }
}

/// One line of `audit verify` for `v`.
pub fn render_verified(v: &Verified) -> String {
    match &v.first_bad {
        None => format!(
            "database {}: {} audit entries verified ({} signatures of batches, purge receipts and hub writes, and the batch chains); chain head {}",
            v.database, v.entries, v.signed, v.head
        ),
        Some(b) => format!(
            "database {}: audit entry {} is BAD: {} ({} entries before it verified)",
            v.database, b.seq, b.reason, v.entries
        ),
    }
}

/// Filters of `audit export`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    /// Only entries about this edge identity.
    pub edge: Option<String>,
    /// Only entries about this document id (case-insensitive, as ids are).
    pub id: Option<String>,
    /// Only entries written at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
}

impl Filter {
    fn matches(&self, e: &AuditEntry, record: &Value) -> bool {
        if self.since_ms.is_some_and(|s| e.time_ms < s) {
            return false;
        }
        if let Some(edge) = &self.edge {
            let who = record
                .get("identity")
                .or_else(|| record.get("edge"))
                .and_then(Value::as_str);
            if who != Some(edge.as_str()) {
                return false;
            }
        }
        if let Some(id) = &self.id {
            let id = id.to_lowercase();
            let same = |v: &Value| v.as_str().is_some_and(|s| s.to_lowercase() == id);
            // `docs` of pushes and imports, `ops` of writes with safety hub.
            let in_docs = ["docs", "ops"].iter().any(|list| {
                record
                    .get(*list)
                    .and_then(Value::as_array)
                    .is_some_and(|docs| docs.iter().any(|d| d.get("id").is_some_and(same)))
            });
            if !in_docs && !record.get("id").is_some_and(same) {
                return false;
            }
        }
        true
    }
}

/// The JSON line of an entry of database `database`.
pub fn entry_json(database: &str, e: &AuditEntry) -> Value {
    let mut v = json!({
        "database": database,
        "seq": e.seq,
        "time": outpost::doc::iso_time_ms(e.time_ms),
        "time_ms": e.time_ms,
        "kind": e.kind.name(),
        "prev_hash": outpost::db::hex_of(&e.prev_hash),
        "hash": outpost::db::hex_of(&e.hash),
    });
    match serde_json::from_slice::<Value>(&e.payload) {
        Ok(r) => v["record"] = r,
        Err(_) => v["payload_hex"] = Value::String(outpost::db::hex_of(&e.payload)),
    }
    v
}

/// The audit entries of a database, oldest first, read [`CHUNK`] at a time
/// through one snapshot (a running hub's later entries are not seen).
pub struct Entries<'a> {
    db: &'a DbHandle,
    snap: outpost::db::Snapshot<outpost::store::file::FileStore>,
    next: u64,
    done: bool,
}

impl<'a> Entries<'a> {
    /// The entries of `db` as of now.
    pub fn new(db: &'a DbHandle) -> Self {
        Entries {
            db,
            snap: db.db.snapshot(),
            next: 1,
            done: false,
        }
    }

    /// The next chunk of entries; empty at the end.
    pub async fn next_chunk(&mut self) -> Result<Vec<AuditEntry>> {
        if self.done {
            return Ok(Vec::new());
        }
        let chunk = self
            .snap
            .audit_entries(self.next, CHUNK)
            .await
            .map_err(|source| HubError::Database {
                database: self.db.name.clone(),
                source,
            })?;
        if let Some(last) = chunk.last() {
            self.next = last.seq + 1;
        }
        self.done = chunk.len() < CHUNK;
        Ok(chunk)
    }
}

/// Calls `f` on every audit entry of `db`, oldest first ([`Entries`]).
pub(crate) async fn each_entry(
    db: &DbHandle,
    mut f: impl FnMut(&AuditEntry) -> Result<()>,
) -> Result<()> {
    let mut entries = Entries::new(db);
    loop {
        let chunk = entries.next_chunk().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        for e in &chunk {
            f(e)?;
        }
    }
}

/// Appends to `out` the JSON lines of those of `entries` (of database
/// `database`) that pass `filter`; returns how many.
pub fn export_lines(
    database: &str,
    filter: &Filter,
    entries: &[AuditEntry],
    out: &mut Vec<u8>,
) -> u64 {
    let mut n = 0;
    for e in entries {
        let line = entry_json(database, e);
        if filter.matches(e, line.get("record").unwrap_or(&Value::Null)) {
            // A `Value` always serializes.
            let _ = serde_json::to_writer(&mut *out, &line);
            out.push(b'\n');
            n += 1;
        }
    }
    n
}

/// Writes the entries of `db` that pass `filter` as JSON lines; returns
/// how many.
pub async fn export<W: Write>(db: &DbHandle, filter: &Filter, mut w: W) -> Result<u64> {
    let mut n = 0u64;
    let mut entries = Entries::new(db);
    let mut lines = Vec::new();
    loop {
        let chunk = entries.next_chunk().await?;
        if chunk.is_empty() {
            break;
        }
        lines.clear();
        n += export_lines(&db.name, filter, &chunk, &mut lines);
        w.write_all(&lines)
            .map_err(|e| HubError::io("write the export", e))?;
    }
    w.flush().map_err(|e| HubError::io("write the export", e))?;
    Ok(n)
}

/// One answer of `audit who`: an accepted push that carried the version,
/// an edge's write with safety `hub` that wrote it (`hub_request`), or an
/// operator's import that did (`import`; the edge's fields are then
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Author {
    /// The audit entry.
    pub seq: u64,
    /// When the push was accepted (ms since the epoch).
    pub time_ms: i64,
    /// The edge identity.
    pub identity: String,
    /// Its device's database id.
    pub device: String,
    /// The push's `upto`.
    pub upto: u64,
    /// The key that signed it (empty: no key; token identity).
    pub key_id: String,
    /// That key whole (`p256:` + hex; empty: unsigned).
    pub public_key: String,
    /// The batch's number in the identity's chain (0: unsigned).
    pub batch_seq: u64,
    /// The version's change vector as pushed.
    pub change_vector: String,
    /// Whether the version was a deletion.
    pub deleted: bool,
    /// Set when an operator's import wrote the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<Imported>,
    /// Set when a write with safety `hub` wrote it: the request's number in
    /// its session (`upto` and `batch_seq` are then 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_request: Option<u64>,
    /// Set when the version came from this hub's upstream (the edge's
    /// fields are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<FromUpstream>,
}

/// How a version came from an upstream hub
/// ([`outpost::sync::received::AuditUpstream`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FromUpstream {
    /// The link: the upstream's URL, database and this hub's identity there.
    pub link: String,
    /// The upstream database's id.
    pub upstream_db: String,
    /// The upstream etag the batch covered.
    pub upto: u64,
    /// What storing it did (`applied`, `conflict`, `resolved`, `held`).
    pub outcome: String,
    /// SHA-256 of the version's body as received (hex).
    pub body_sha256: String,
}

/// How an operator's import wrote a version ([`outpost::db::AuditImport`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Imported {
    /// Who ran it, as the operator said.
    pub by: String,
    /// How it came in, as the hub saw it.
    pub via: String,
    /// The input's name.
    pub source: String,
    /// The document's line in it.
    pub line: u64,
    /// SHA-256 of that line (hex).
    pub line_sha256: String,
}

/// Every entry of `db` that brought a version of document `id` (with
/// change vector `cv`, when given), oldest first: accepted pushes, writes
/// with safety `hub`, imports and upstream batches.
pub async fn who(db: &DbHandle, id: &str, cv: Option<&ChangeVector>) -> Result<Vec<Author>> {
    let asked = Asked {
        id: id.to_lowercase(),
        cv,
    };
    let mut out = Vec::new();
    each_entry(db, |e| {
        match e.kind {
            AuditKind::PushAccepted => pushed(e, &asked, &mut out),
            AuditKind::HubWrite => hub_written(e, &asked, &mut out),
            AuditKind::Import => imported(e, &asked, &mut out),
            AuditKind::Upstream => received(e, &asked, &mut out),
            _ => {}
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// What `who` looks for.
struct Asked<'a> {
    /// The document id, lowercase.
    id: String,
    /// The version, if one is asked for.
    cv: Option<&'a ChangeVector>,
}

impl Asked<'_> {
    /// Whether `id` is the document asked about.
    fn names(&self, id: &str) -> bool {
        id.to_lowercase() == self.id
    }

    /// Whether a recorded change vector (text) is the version asked for.
    fn version(&self, text: &str) -> bool {
        self.cv
            .is_none_or(|cv| ChangeVector::parse_text(text).is_ok_and(|c| &c == cv))
    }
}

/// The versions of an accepted push (`push_accepted`).
fn pushed(e: &AuditEntry, asked: &Asked<'_>, out: &mut Vec<Author>) {
    let Ok(p) = serde_json::from_slice::<AuditPush>(&e.payload) else {
        return;
    };
    for d in p.docs.iter().filter(|d| asked.names(&d.id)) {
        for v in d
            .versions
            .iter()
            .filter(|v| asked.version(&v.change_vector))
        {
            out.push(Author {
                seq: e.seq,
                time_ms: e.time_ms,
                identity: p.identity.clone(),
                device: p.device.clone(),
                upto: p.upto,
                key_id: p.key_id.clone(),
                public_key: p.public_key.clone(),
                batch_seq: p.seq,
                change_vector: v.change_vector.clone(),
                deleted: v.deleted,
                ..Author::default()
            });
        }
    }
}

/// The versions a write with safety `hub` produced (`hub_write`). Entries
/// written before the change vectors were recorded name none: listed only
/// when no version is asked for.
fn hub_written(e: &AuditEntry, asked: &Asked<'_>, out: &mut Vec<Author>) {
    let Ok(w) = serde_json::from_slice::<AuditHubWrite>(&e.payload) else {
        return;
    };
    let recorded = |op: &&AuditWriteOp| {
        asked.version(&op.change_vector) && (asked.cv.is_none() || !op.change_vector.is_empty())
    };
    for op in w.ops.iter().filter(|o| asked.names(&o.id)).filter(recorded) {
        out.push(Author {
            seq: e.seq,
            time_ms: e.time_ms,
            identity: w.identity.clone(),
            device: w.device.clone(),
            key_id: w.key_id.clone(),
            public_key: w.public_key.clone(),
            change_vector: op.change_vector.clone(),
            deleted: op.deleted,
            hub_request: Some(w.request),
            ..Author::default()
        });
    }
}

/// The versions an operator's import wrote (`import`).
fn imported(e: &AuditEntry, asked: &Asked<'_>, out: &mut Vec<Author>) {
    let Ok(r) = serde_json::from_slice::<AuditImport>(&e.payload) else {
        return;
    };
    for d in r.docs.iter().filter(|d| asked.names(&d.id)) {
        if asked.version(&d.change_vector) {
            out.push(Author {
                seq: e.seq,
                time_ms: e.time_ms,
                change_vector: d.change_vector.clone(),
                import: Some(Imported {
                    by: r.by.clone(),
                    via: r.via.clone(),
                    source: r.source.clone(),
                    line: d.line,
                    line_sha256: d.line_sha256.clone(),
                }),
                ..Author::default()
            });
        }
    }
}

/// The versions an upstream batch brought (`upstream`).
fn received(e: &AuditEntry, asked: &Asked<'_>, out: &mut Vec<Author>) {
    let Ok(r) = serde_json::from_slice::<AuditUpstream>(&e.payload) else {
        return;
    };
    for d in r.docs.iter().filter(|d| asked.names(&d.id)) {
        for v in d
            .versions
            .iter()
            .filter(|v| asked.version(&v.change_vector))
        {
            out.push(Author {
                seq: e.seq,
                time_ms: e.time_ms,
                change_vector: v.change_vector.clone(),
                deleted: v.deleted,
                upstream: Some(FromUpstream {
                    link: r.link.clone(),
                    upstream_db: r.upstream_db.clone(),
                    upto: r.upto,
                    outcome: d.outcome.clone(),
                    body_sha256: v.body_sha256.clone(),
                }),
                ..Author::default()
            });
        }
    }
}

/// The text of one [`Author`].
pub fn render_author(a: &Author) -> String {
    if let Some(i) = &a.import {
        let by = if i.by == crate::import_live::NOT_GIVEN {
            "no one named (no --by, no USER)".to_string()
        } else {
            format!("{} (as given)", i.by)
        };
        return format!(
            "  version {}\n    written by an import, by {by}, via {}\n    from {}, line {} (its SHA-256: {}), committed {} (audit entry {})\n    key: none (an operator's import is not signed)\n",
            a.change_vector,
            i.via,
            i.source,
            i.line,
            i.line_sha256,
            outpost::doc::iso_time_ms(a.time_ms),
            a.seq
        );
    }
    if let Some(u) = &a.upstream {
        let outcome = match u.outcome.as_str() {
            "applied" => "stored as received",
            "conflict" => "kept beside a concurrent version (a conflict)",
            "resolved" => "a conflict, settled by the collection's policy",
            "held" => "already held, nothing written",
            other => other,
        };
        return format!(
            "  version {}{}\n    received from the upstream {}\n    upstream database {}, up to its etag {}: {outcome}, committed {} (audit entry {})\n    body SHA-256: {}\n    key: none here (the upstream hub's own audit trail names who wrote it there)\n",
            a.change_vector,
            if a.deleted { " (a deletion)" } else { "" },
            u.link,
            u.upstream_db,
            u.upto,
            outpost::doc::iso_time_ms(a.time_ms),
            a.seq,
            u.body_sha256,
        );
    }
    let key = if a.key_id.is_empty() {
        "none (unsigned: a token session, development mode)".to_string()
    } else if a.hub_request.is_some() {
        format!("{} (signed write; public key {})", a.key_id, a.public_key)
    } else {
        format!(
            "{} (signed batch {}; public key {})",
            a.key_id, a.batch_seq, a.public_key
        )
    };
    let how = match a.hub_request {
        Some(r) => format!("in its write with safety hub, request {r} of its session, applied"),
        None => format!("in the push up to edge etag {}, accepted", a.upto),
    };
    let version = if a.change_vector.is_empty() {
        "(its change vector was not recorded)"
    } else {
        &a.change_vector
    };
    format!(
        "  version {}{}\n    written by identity {}, device {}\n    {how} {} (audit entry {})\n    key: {}\n",
        version,
        if a.deleted { " (a deletion)" } else { "" },
        a.identity,
        a.device,
        outpost::doc::iso_time_ms(a.time_ms),
        a.seq,
        key
    )
}

/// What `edge status` shows of one identity in one database: the purge
/// order it still owes a receipt for (from the served record) and the
/// receipts in the audit trail.
#[derive(Debug)]
pub struct PurgeStatus {
    /// The served records (`outpost::sync::purge`), one per device (`None`:
    /// a protocol 4 record of the whole identity).
    pub served: Vec<(Option<outpost::DbId>, Served)>,
    /// The identity's receipts, oldest first, with their entry's number
    /// and time.
    pub receipts: Vec<(u64, i64, AuditPurgeReceipt)>,
}

/// Reads [`PurgeStatus`] of `identity` in `db`.
pub async fn purge_status(db: &DbHandle, identity: &str) -> Result<PurgeStatus> {
    let served = served_records(&db.db)
        .await
        .map_err(|source| HubError::Database {
            database: db.name.clone(),
            source,
        })?
        .into_iter()
        .filter(|(who, _, _)| who == identity)
        .map(|(_, device, s)| (device, s))
        .collect();
    let mut receipts = Vec::new();
    each_entry(db, |e| {
        if e.kind == AuditKind::PurgeReceipt
            && let Ok(r) = serde_json::from_slice::<AuditPurgeReceipt>(&e.payload)
            && r.identity == identity
        {
            receipts.push((e.seq, e.time_ms, r));
        }
        Ok(())
    })
    .await?;
    Ok(PurgeStatus { served, receipts })
}

/// The text of a [`PurgeStatus`].
pub fn render_purge_status(s: &PurgeStatus) -> String {
    let list = |l: &[String]| -> String {
        if l.is_empty() {
            "nothing".into()
        } else {
            l.iter()
                .map(|p| {
                    if p.is_empty() {
                        "*".to_string()
                    } else {
                        p.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut out = String::new();
    if s.served.is_empty() {
        out.push_str("  no device was ever served: no receipt pending\n");
    }
    for (device, served) in &s.served {
        match device {
            Some(d) => out.push_str(&format!("  device {d}\n")),
            None => {
                out.push_str("  devices not seen since protocol 4 (the identity's old record)\n")
            }
        }
        out.push_str(&format!(
            "  may hold documents under: {}\n",
            list(&served.prefixes)
        ));
        match &served.pending {
            Some(o) => out.push_str(&format!(
                "  receipt PENDING: purge order {} ({}): erase {}, keep {}{} (sent at each session until the edge answers)\n",
                o.order,
                o.reason,
                list(&o.prefixes),
                list(&o.keep),
                if o.markers.is_empty() {
                    String::new()
                } else {
                    format!(", subject purges {:?}", o.markers)
                }
            )),
            None if !served.owed.is_empty() => out.push_str(&format!(
                "  receipt PENDING: subject purges {:?} (ordered at its next session)\n",
                served.owed
            )),
            None => out.push_str("  no receipt pending\n"),
        }
    }
    if s.receipts.is_empty() {
        out.push_str("  receipts received: none\n");
    } else {
        out.push_str("  receipts received:\n");
        for (seq, time, r) in &s.receipts {
            let key = if r.key_id.is_empty() {
                "unsigned (token session)".to_string()
            } else {
                format!("signed by key {}", r.key_id)
            };
            out.push_str(&format!(
                "    order {} ({}), {}: {} documents erased on device {}, ids sha256 {}, {key} (audit entry {seq})\n",
                r.order,
                r.reason,
                outpost::doc::iso_time_ms(*time),
                r.removed,
                r.device,
                r.ids_sha256
            ));
        }
    }
    out
}

/// Parses `--since`: milliseconds since the epoch, or an RFC 3339 time
/// (`2026-12-01T10:00:00Z`, `2026-12-01T10:00:00.250+02:00`) or date
/// (`2026-12-01`, midnight UTC).
pub fn parse_since(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "--since {s:?}: give milliseconds since the Unix epoch or an RFC 3339 time such as 2026-12-01T10:00:00Z"
        )
    };
    let num = |t: &str| -> std::result::Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y.to_string().len() > 4 {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if let Some(t) = time {
        let (clock, offset_ms) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, o) = t.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
            (c, sign * (num(oh)? * 60 + num(om)?) * 60_000)
        } else {
            return Err(bad());
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (clock, None),
        };
        let mut f = hms.split(':');
        let (Some(h), Some(mi), Some(sec), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(bad());
        };
        let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let millis = match frac {
            Some(f) => {
                let digits: String = f.chars().chain("000".chars()).take(3).collect();
                num(&f[..f.len().min(9)])?;
                num(&digits)?
            }
            None => 0,
        };
        ms += ((h * 60 + mi) * 60 + sec) * 1000 + millis - offset_ms;
    }
    Ok(ms)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_ms_and_rfc3339() {
        assert_eq!(parse_since("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_since("1970-01-01"), Ok(0));
        assert_eq!(parse_since("1970-01-02T00:00:01Z"), Ok(86_401_000));
        assert_eq!(
            parse_since("2026-12-01T10:00:00.250+02:00"),
            parse_since("2026-12-01T08:00:00.25Z")
        );
        assert_eq!(
            outpost::doc::iso_time_ms(parse_since("2026-12-01T08:00:00.250Z").unwrap()),
            "2026-12-01T08:00:00.250Z"
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-01T10:00",
            "2026-12-01T10:00:00",
            "1e3",
        ] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
