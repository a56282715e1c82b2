//! The write path: operations are validated and serialised outside the
//! writer lock ([`prepare`]), then applied one transaction at a time to the
//! working state ([`apply`]; received versions in [`super::remote`]): the
//! new version of a document, and every index and counter it touches
//! ([`write_version`]).

use std::sync::Arc;

use serde_json::Value;

use crate::btree;
use crate::codec::{Put, get_u64};
use crate::cv::DbId;
use crate::doc::{self, DocFlags, DocumentMeta, RawVersion};
use crate::error::{Error, InputError, clip};
use crate::platform;
use crate::policy::{CollectionSet, ConflictPolicy, DeletionGuards, GUARDS_KEY, HUB_OUTPUTS_KEY};
use crate::store::{Durability, PageNo, PageStore};

use super::Database;
use super::alloc::WCtx;
use super::meta::Tree;
use super::remote::{Received, apply_remote};
use super::types::{
    Batch, CommitInfo, Expected, MAX_LOCAL_BYTES, Op, PushGuard, PutOptions, Refusal, WriteOutcome,
    WriteResult,
};

/// The key of a collection in the `colls` and `stats` trees.
pub(super) fn coll_key(name: &str) -> Vec<u8> {
    name.to_lowercase().into_bytes()
}

/// The key of a document's entry in the `colls` tree.
pub(super) fn coll_index_key(coll: &str, id_key: &[u8]) -> Vec<u8> {
    let mut k = coll_key(coll);
    k.push(0);
    k.extend_from_slice(id_key);
    k
}

impl<S: PageStore> Database<S> {
    /// Writes a document (creating or replacing it) and waits until it is durable.
    pub async fn put(&self, id: &str, body: Value) -> Result<WriteResult, Error> {
        self.put_with(id, body, PutOptions::default()).await
    }

    /// [`put`](Self::put) with a collection and an optimistic-concurrency check.
    pub async fn put_with(
        &self,
        id: &str,
        body: Value,
        opts: PutOptions,
    ) -> Result<WriteResult, Error> {
        let mut b = Batch::new();
        b.put_with(id, body, opts);
        self.commit_put(b).await
    }

    /// [`put_with`](Self::put_with) of a body given as JSON text, stored as
    /// given ([`Batch::put_json`]).
    pub async fn put_json(
        &self,
        id: &str,
        json: impl Into<Vec<u8>>,
        opts: PutOptions,
    ) -> Result<WriteResult, Error> {
        let mut b = Batch::new();
        b.put_json(id, json, opts);
        self.commit_put(b).await
    }

    /// Commits a batch of one put and returns its result.
    async fn commit_put(&self, b: Batch) -> Result<WriteResult, Error> {
        let mut info = self.commit(b).await?;
        info.results
            .pop()
            .flatten()
            .ok_or_else(|| Error::Poisoned("put produced no result".into()))
    }

    /// Deletes a document (writes a tombstone that keeps its change vector).
    /// Returns `None` if it did not exist.
    pub async fn delete(&self, id: &str) -> Result<Option<WriteResult>, Error> {
        self.delete_with(id, Expected::Any).await
    }

    /// [`delete`](Self::delete) with an optimistic-concurrency check.
    pub async fn delete_with(
        &self,
        id: &str,
        expected: Expected,
    ) -> Result<Option<WriteResult>, Error> {
        let mut b = Batch::new();
        b.delete_with(id, expected);
        Ok(self.commit(b).await?.results.pop().flatten())
    }

    /// Commits a batch atomically and waits until it is durable. If any operation
    /// is refused (bad input, failed concurrency check) nothing is written.
    pub async fn commit(&self, batch: Batch) -> Result<CommitInfo, Error> {
        let Batch {
            mut ops,
            durability,
        } = batch;
        // Validate and serialise outside the writer lock. A large batch is
        // prepared by a thread of its own a chunk ahead of its apply, after
        // the first chunk here (native builds: `prepare_ahead`).
        let ahead = if platform::THREADS && ops.len() >= PREPARE_AHEAD_MIN {
            let rest = ops.split_off(PREPARE_CHUNK);
            let count = rest.len();
            match prepare_ahead(rest) {
                Ok(chunks) => Some(Ahead { chunks, count }),
                Err(rest) => {
                    ops.extend(rest);
                    None
                }
            }
        } else {
            None
        };
        let mut prepared = Vec::with_capacity(ops.len());
        for op in ops {
            prepared.push(prepare(op)?);
        }
        self.commit_asking(prepared, ahead, durability).await
    }

    /// Applies prepared operations as one transaction and waits until it is
    /// durable (the second half of [`commit`](Self::commit); indexes
    /// prepare their own operations).
    pub(super) async fn commit_prepared(
        &self,
        prepared: Vec<Prepared>,
    ) -> Result<CommitInfo, Error> {
        self.commit_asking(prepared, None, None).await
    }

    /// [`commit_prepared`](Self::commit_prepared) of `first` and then of
    /// what `ahead` prepares, asking for `durability` (`None`: the
    /// database's).
    async fn commit_asking(
        &self,
        first: Vec<Prepared>,
        mut ahead: Option<Ahead>,
        durability: Option<Durability>,
    ) -> Result<CommitInfo, Error> {
        let total = first.len() + ahead.as_ref().map_or(0, |a| a.count);
        let mut results = Vec::with_capacity(total);
        let _counted = super::commit::TxnCount::enter(&self.inner);
        // Restores the working state if the transaction fails or its future is
        // dropped half-way: a transaction is applied whole or not at all.
        let mut txn = self.begin().await?;
        {
            let now = (self.inner.clock)();
            let mut ctx = WCtx {
                inner: &self.inner,
                w: &mut txn.w,
            };
            // A large transaction hands the store the pages it has finished
            // every `stage_every` operations, so their WAL write overlaps the
            // rest of the apply (pipelined commit, `PageStore::stage`).
            let stage_every = self.inner.store.stage_after_ops();
            let mut chunk = first;
            loop {
                for p in chunk {
                    let applied = match &p {
                        Prepared::AuditWrites { kind, base, fill } => {
                            super::audit::append_writes(&mut ctx, *kind, base, *fill, &results, now)
                                .await
                                .map(|_| None)
                        }
                        _ => apply(&mut ctx, &p, self.inner.db_id, now).await,
                    };
                    match applied {
                        Ok(r) => results.push(r),
                        // A refusal found while preparing goes first, as
                        // when every operation was prepared before any applied.
                        Err(e) => {
                            let refused = match ahead {
                                Some(a) => a.first_refusal().await,
                                None => None,
                            };
                            return Err(refused.unwrap_or(e));
                        }
                    }
                    let i = results.len();
                    if stage_every > 0 && i % stage_every == 0 && i < total {
                        let pages = ctx.w.take_stageable();
                        self.inner.store.stage(pages);
                    }
                }
                let Some(a) = ahead.as_mut() else { break };
                match a.chunks.next().await {
                    Some(next) => chunk = next?,
                    None if results.len() == total => break,
                    // Its thread ended early: never commit part of a batch.
                    None => {
                        return Err(Error::Poisoned(
                            "the thread preparing a batch stopped before its end".into(),
                        ));
                    }
                }
            }
        }
        match durability {
            Some(Durability::Durable) => txn.w.asked_durable = true,
            Some(Durability::Relaxed) => txn.w.asked_relaxed += 1,
            None => {}
        }
        self.finish(txn).await?;
        Ok(CommitInfo { results })
    }
}

/// A batch of at least this many operations is prepared by a thread of its
/// own while it applies (native builds). Below it the thread's start (tens
/// of microseconds) would cost more than the overlap saves.
const PREPARE_AHEAD_MIN: usize = 256;

/// Operations per chunk that [`prepare_ahead`] hands over; the first chunk is
/// prepared by the caller while the thread starts.
const PREPARE_CHUNK: usize = 64;

/// A chunk of prepared operations, or the refusal that ended the
/// preparing.
type Chunk = Result<Vec<Prepared>, Error>;

/// The operations of a batch being prepared by [`prepare_ahead`]: `count` of
/// them, in order, a chunk at a time.
struct Ahead {
    chunks: platform::Ahead<Chunk>,
    count: usize,
}

impl Ahead {
    /// The refusal among the operations yet to be handed over, if any
    /// (found by preparing all of them, as a batch prepared whole would
    /// have been).
    async fn first_refusal(mut self) -> Option<Error> {
        while let Some(chunk) = self.chunks.next().await {
            if let Err(e) = chunk {
                return Some(e);
            }
        }
        None
    }
}

/// Prepares `ops` in order on a thread of its own, sending them a chunk of
/// [`PREPARE_CHUNK`] at a time, and at the first refusal the operations
/// before it and then the refusal, and stops; it also stops when the
/// receiver is dropped (the transaction failed or was dropped). Gives
/// `ops` back if no thread could be started. The body check of a bulk
/// write is about a fifth of its thread's CPU (docs/benchmarks.md, "Bulk:
/// where a document's CPU goes"): here it runs on the other core.
fn prepare_ahead(ops: Vec<Op>) -> Result<platform::Ahead<Chunk>, Vec<Op>> {
    platform::make_ahead("outpost-prepare", ops, |ops, send| {
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let mut chunk = Vec::with_capacity(PREPARE_CHUNK);
            let mut refused = None;
            for op in ops.by_ref().take(PREPARE_CHUNK) {
                match prepare(op) {
                    Ok(p) => chunk.push(p),
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            let sent = send(Ok(chunk));
            if let Some(e) = refused {
                send(Err(e));
                return;
            }
            if !sent {
                return;
            }
        }
    })
}

pub(super) enum Prepared {
    Put {
        id: String,
        key: Vec<u8>,
        body: Vec<u8>,
        collection: Option<String>,
        expected: Expected,
        resolve: bool,
        /// Written by an index (its output collection): flagged
        /// [`DocFlags::FROM_INDEX`].
        from_index: bool,
    },
    Delete {
        id: String,
        key: Vec<u8>,
        expected: Expected,
        resolve: bool,
        from_index: bool,
    },
    /// An index's transaction (definition, step, clean-up): `super::index`.
    Index(Box<super::index::IndexOp>),
    Remote {
        id: String,
        key: Vec<u8>,
        collection: Option<String>,
        versions: Vec<RawVersion>,
        source: Option<String>,
        policy: ConflictPolicy,
        guard: Option<(Arc<PushGuard>, bool)>,
    },
    Local {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    ExpectLocal {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        refusal: Refusal,
    },
    Audit {
        kind: super::audit::AuditKind,
        payload: Vec<u8>,
    },
    AuditWrites {
        kind: super::audit::AuditKind,
        base: Vec<u8>,
        fill: super::audit::AuditFill,
    },
    #[cfg(feature = "testing")]
    AuditOverwrite { seq: u64, value: Vec<u8> },
}

/// Checks one received version: a non-empty change vector, and a body that
/// is a JSON object within the size limit (empty for a deletion).
fn check_remote_version(id: &str, v: &RawVersion) -> Result<(), Error> {
    if v.change_vector.is_empty() {
        return Err(InputError::InvalidChangeVector(format!(
            "a received version of {:?} has an empty change vector",
            clip(id)
        ))
        .into());
    }
    if v.deleted {
        if !v.body.is_empty() {
            return Err(InputError::InvalidJson(format!(
                "a deletion of {:?} carries a body",
                clip(id)
            ))
            .into());
        }
        return Ok(());
    }
    if v.body.len() > doc::MAX_BODY_BYTES {
        return Err(InputError::TooLarge {
            id: clip(id),
            size: v.body.len(),
            max: doc::MAX_BODY_BYTES,
        }
        .into());
    }
    if let Err(e) = crate::body::check_body(&v.body) {
        return Err(InputError::InvalidJson(format!(
            "the body of a received version of {:?} breaks rule {}: {e}",
            clip(id),
            e.rule()
        ))
        .into());
    }
    Ok(())
}

/// A put of the JSON text `json` (any put: from a [`Value`] or as text):
/// the size and body rules, then the collection (`opts.collection`, else
/// the `@metadata.@collection` the body check found in the text).
fn prepare_put(id: String, json: Vec<u8>, opts: PutOptions) -> Result<Prepared, Error> {
    if json.len() > doc::MAX_BODY_BYTES {
        return Err(InputError::TooLarge {
            id: clip(&id),
            size: json.len(),
            max: doc::MAX_BODY_BYTES,
        }
        .into());
    }
    let named = crate::body::check_body_collection(&json).map_err(|e| {
        InputError::InvalidJson(format!(
            "the body of {:?} breaks rule {}: {e}",
            clip(&id),
            e.rule()
        ))
    })?;
    let collection = match opts.collection {
        Some(c) => Some(c),
        None => named,
    };
    if let Some(c) = &collection {
        doc::validate_collection(c)?;
    }
    let key = doc::id_key(&id);
    check_key_len(&id, &key, collection.as_deref())?;
    Ok(Prepared::Put {
        id,
        key,
        body: json,
        collection,
        expected: opts.expected,
        resolve: false,
        from_index: false,
    })
}

pub(super) fn prepare(op: Op) -> Result<Prepared, Error> {
    match op {
        Op::Put { id, body, opts } => {
            doc::validate_id(&id)?;
            if !body.is_object() {
                return Err(InputError::InvalidJson(format!(
                    "the body of {:?} must be a JSON object",
                    clip(&id)
                ))
                .into());
            }
            let json =
                serde_json::to_vec(&body).map_err(|e| InputError::InvalidJson(e.to_string()))?;
            // A `Value` built in memory can nest without limit; what is
            // stored must read back everywhere: `prepare_put` checks it (and
            // reads the collection from the text, as `doc::collection_of`
            // would from the value).
            prepare_put(id, json, opts)
        }
        Op::PutJson { id, json, opts } => {
            doc::validate_id(&id)?;
            prepare_put(id, json, opts)
        }
        Op::Delete { id, expected } => prepare_delete(id, expected, false),
        Op::Resolve {
            id,
            body: Some(body),
            collection,
        } => {
            let opts = PutOptions {
                collection,
                expected: Expected::Any,
            };
            match prepare(Op::Put { id, body, opts })? {
                Prepared::Put {
                    id,
                    key,
                    body,
                    collection,
                    expected,
                    ..
                } => Ok(Prepared::Put {
                    id,
                    key,
                    body,
                    collection,
                    expected,
                    resolve: true,
                    from_index: false,
                }),
                other => Ok(other),
            }
        }
        Op::Resolve { id, body: None, .. } => prepare_delete(id, Expected::Any, true),
        Op::Remote {
            doc: d,
            policy,
            guard,
        } => {
            doc::validate_id(&d.id)?;
            if let Some(c) = &d.collection {
                doc::validate_collection(c)?;
            }
            if d.versions.is_empty() || d.versions.len() > doc::MAX_VERSIONS {
                return Err(InputError::InvalidArgument(format!(
                    "a received document {:?} has {} versions (1 to {} allowed)",
                    clip(&d.id),
                    d.versions.len(),
                    doc::MAX_VERSIONS
                ))
                .into());
            }
            for v in &d.versions {
                check_remote_version(&d.id, v)?;
            }
            if let Some(s) = &d.source
                && s.len() > doc::MAX_SOURCE_BYTES
            {
                return Err(InputError::InvalidArgument("source name too long".into()).into());
            }
            let key = doc::id_key(&d.id);
            check_key_len(&d.id, &key, d.collection.as_deref())?;
            Ok(Prepared::Remote {
                id: d.id,
                key,
                collection: d.collection,
                versions: d.versions,
                source: d.source,
                policy,
                guard,
            })
        }
        Op::SetLocal { key, value } => {
            if key.is_empty() || key.len() > btree::MAX_KEY {
                return Err(InputError::InvalidArgument(format!(
                    "local record keys are 1 to {} bytes",
                    btree::MAX_KEY
                ))
                .into());
            }
            if value.as_ref().is_some_and(|v| v.len() > MAX_LOCAL_BYTES) {
                return Err(InputError::InvalidArgument(format!(
                    "local record values are at most {MAX_LOCAL_BYTES} bytes"
                ))
                .into());
            }
            Ok(Prepared::Local { key, value })
        }
        Op::ExpectLocal {
            key,
            value,
            refusal,
        } => Ok(Prepared::ExpectLocal {
            key,
            value,
            refusal,
        }),
        Op::Audit { kind, payload } => {
            super::audit::check_payload(&payload)?;
            Ok(Prepared::Audit { kind, payload })
        }
        Op::AuditWrites { kind, base, fill } => Ok(Prepared::AuditWrites { kind, base, fill }),
        #[cfg(feature = "testing")]
        Op::AuditOverwrite { seq, value } => Ok(Prepared::AuditOverwrite { seq, value }),
    }
}

/// A delete (`resolve`: the resolution of a conflict by a deletion).
fn prepare_delete(id: String, expected: Expected, resolve: bool) -> Result<Prepared, Error> {
    doc::validate_id(&id)?;
    let key = doc::id_key(&id);
    check_key_len(&id, &key, None)?;
    Ok(Prepared::Delete {
        id,
        key,
        expected,
        resolve,
        from_index: false,
    })
}

fn check_key_len(id: &str, key: &[u8], coll: Option<&str>) -> Result<(), Error> {
    let len = key.len() + coll.map_or(0, |c| c.len() * 3 + 1);
    if len > btree::MAX_KEY {
        return Err(InputError::InvalidId {
            id: clip(id),
            reason: "too long once normalised",
        }
        .into());
    }
    Ok(())
}

fn check_expected(
    id: &str,
    expected: &Expected,
    current: Option<&DocumentMeta>,
) -> Result<(), Error> {
    let live = current.filter(|m| !m.flags.is_tombstone());
    let ok = match expected {
        Expected::Any => true,
        Expected::Missing => live.is_none(),
        Expected::Cv(cv) => live.is_some_and(|m| &m.change_vector == cv),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::ConcurrencyConflict {
            id: clip(id),
            expected: match expected {
                Expected::Cv(cv) => cv.to_text(),
                _ => String::new(),
            },
            actual: live.map(|m| m.change_vector.to_text()).unwrap_or_default(),
        })
    }
}

/// The versions held for `key` (winner first), its metadata, and its id as stored.
async fn held_versions<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    key: &[u8],
) -> Result<Option<(DocumentMeta, Vec<RawVersion>)>, Error> {
    let Some(rec) = btree::get(ctx, ctx.w.meta.root(Tree::Docs), key).await? else {
        return Ok(None);
    };
    let (_, meta, body, sibs) = doc::decode_raw(&rec).map_err(|e| Error::corrupt_record(key, e))?;
    let mut all = Vec::with_capacity(1 + sibs.len());
    all.push(RawVersion {
        change_vector: meta.change_vector.clone(),
        last_modified_ms: meta.last_modified_ms,
        deleted: meta.flags.is_tombstone(),
        body: body.to_vec(),
    });
    all.extend(sibs);
    Ok(Some((meta, all)))
}

pub(super) async fn apply<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    p: &Prepared,
    db: DbId,
    now: i64,
) -> Result<Option<WriteResult>, Error> {
    match p {
        Prepared::Put { .. } | Prepared::Delete { .. } => apply_local_write(ctx, p, db, now).await,
        Prepared::Index(op) => super::index::apply(ctx, op, db, now).await,
        Prepared::Remote {
            id,
            key,
            collection,
            versions,
            source,
            policy,
            guard,
        } => {
            let r = Received {
                id,
                key,
                collection: collection.as_deref(),
                versions,
                source: source.as_deref(),
                policy: *policy,
                guard: guard.as_ref().map(|(g, readable)| (&**g, *readable)),
            };
            apply_remote(ctx, r, (db, now)).await
        }
        Prepared::Local { key, value } => {
            let root = ctx.w.meta.root(Tree::Locals);
            let root = match value {
                Some(v) => btree::insert(ctx, root, key, v).await?.0,
                None => btree::remove(ctx, root, key).await?.0,
            };
            ctx.w.meta.set_root(Tree::Locals, root);
            Ok(None)
        }
        Prepared::ExpectLocal {
            key,
            value,
            refusal,
        } => {
            let root = ctx.w.meta.root(Tree::Locals);
            let held = btree::get(ctx, root, key).await?;
            if held.as_deref() != value.as_deref() {
                return Err(Error::Refused(refusal.clone()));
            }
            Ok(None)
        }
        Prepared::Audit { kind, payload } => {
            super::audit::append(ctx, *kind, payload, now).await?;
            Ok(None)
        }
        // Outside a batch's own loop (`commit_asking`), no writes before it.
        Prepared::AuditWrites { kind, base, fill } => {
            super::audit::append_writes(ctx, *kind, base, *fill, &[], now).await?;
            Ok(None)
        }
        #[cfg(feature = "testing")]
        Prepared::AuditOverwrite { seq, value } => {
            super::audit::overwrite(ctx, *seq, value).await?;
            Ok(None)
        }
    }
}

/// A local put or delete ([`Prepared::Put`], [`Prepared::Delete`]; anything
/// else does nothing): also how an index writes its output documents.
pub(super) async fn apply_local_write<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    p: &Prepared,
    db: DbId,
    now: i64,
) -> Result<Option<WriteResult>, Error> {
    let (id, key, expected, resolve, from_index) = match p {
        Prepared::Put {
            id,
            key,
            expected,
            resolve,
            from_index,
            ..
        }
        | Prepared::Delete {
            id,
            key,
            expected,
            resolve,
            from_index,
        } => (id, key, expected, *resolve, *from_index),
        _ => return Ok(None),
    };
    let held = held_versions(ctx, key).await?;
    let current = held.as_ref().map(|h| h.0.clone());
    check_expected(id, expected, current.as_ref())?;
    let siblings: &[RawVersion] = match &held {
        Some((_, all)) if all.len() > 1 => &all[1..],
        _ => &[],
    };
    let (collection, body, tombstone) = match p {
        // A put that names no collection keeps the document's current one.
        Prepared::Put {
            collection, body, ..
        } => (
            collection
                .clone()
                .or_else(|| current.as_ref().and_then(|m| m.collection.clone())),
            body.as_slice(),
            false,
        ),
        _ => match &current {
            Some(m) if !m.flags.is_tombstone() || (resolve && !siblings.is_empty()) => {
                (m.collection.clone(), &[][..], true)
            }
            _ => return Ok(None),
        },
    };
    // Deletion guards: no delete of a guarded document, no move out of its
    // collection (the transaction fails whole).
    if let Some(cur) = current.as_ref().filter(|c| !c.flags.is_tombstone()) {
        let moved = !same_collection(cur.collection.as_deref(), collection.as_deref());
        if (tombstone || moved)
            && deletion_guards(ctx)
                .await?
                .protects(cur.collection.as_deref())
        {
            return Err(Error::Refused(Refusal::DeleteForbidden {
                id: id.clone(),
                collection: cur.collection.clone().unwrap_or_default(),
            }));
        }
    }
    // An edge's read-only hub outputs: changed only by what the hub sends.
    if !from_index {
        let ro = collection_set(
            ctx,
            HUB_OUTPUTS_KEY,
            "hub outputs (local record policy/hub-outputs)",
        )
        .await?;
        let claimed = ro
            .claims(key, collection.as_deref())
            .or_else(|| ro.claims(key, current.as_ref().and_then(|c| c.collection.as_deref())));
        if let Some(c) = claimed {
            return Err(Error::Refused(Refusal::IndexOutput {
                id: id.clone(),
                collection: c.to_string(),
            }));
        }
    }
    let etag = ctx.w.meta.last_etag + 1;
    // A local write on a conflicted document supersedes every concurrent
    // version (its change vector merges theirs): the writer saw them all. This
    // keeps the versions of a document an antichain (a new local entry could
    // otherwise dominate some concurrent versions and not others).
    let mut cv = current
        .as_ref()
        .map(|m| m.change_vector.clone())
        .unwrap_or_default();
    for s in siblings {
        cv = cv.merge(&s.change_vector);
    }
    let cv = cv.with(db, etag);
    if cv.len() > crate::cv::MAX_CV_ENTRIES {
        return Err(Error::Refused(Refusal::ChangeVectorTooLarge {
            id: id.clone(),
            entries: cv.len(),
        }));
    }
    let kept: &[RawVersion] = &[];
    let meta = DocumentMeta {
        collection: collection.clone(),
        change_vector: cv.clone(),
        etag,
        last_modified_ms: now,
        flags: DocFlags::default()
            .with(DocFlags::TOMBSTONE, tombstone)
            .with(DocFlags::CONFLICTED, !kept.is_empty())
            .with(DocFlags::FROM_INDEX, from_index),
        source: None,
    };
    let rec = doc::encode_record_with(id, &meta, body, kept);
    write_version(ctx, key, &rec, current.as_ref(), &meta).await?;
    Ok(Some(WriteResult {
        id: id.clone(),
        etag,
        change_vector: cv,
        deleted: tombstone,
        outcome: WriteOutcome::Written,
    }))
}

/// Whether two collections are the same (case-insensitively, as collections
/// compare).
pub(super) fn same_collection(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        (None, None) => true,
        _ => false,
    }
}

/// The deletion guards in force, from their local record (none when
/// absent; an unreadable record guards every collection it could name, so
/// it is an error, not a silent "nothing guarded").
pub(super) async fn deletion_guards<S: PageStore>(
    ctx: &WCtx<'_, S>,
) -> Result<DeletionGuards, Error> {
    collection_set(
        ctx,
        GUARDS_KEY,
        "deletion guards (local record policy/guards)",
    )
    .await
}

/// The collection set stored in the local record `key` (empty when absent;
/// an unreadable record is an error, not an empty set).
pub(super) async fn collection_set<S: PageStore>(
    ctx: &WCtx<'_, S>,
    key: &[u8],
    what: &str,
) -> Result<CollectionSet, Error> {
    let root = ctx.w.meta.root(Tree::Locals);
    match btree::get(ctx, root, key).await? {
        None => Ok(CollectionSet::default()),
        Some(b) => CollectionSet::decode(&b).ok_or_else(|| Error::CorruptRecord {
            record: what.into(),
            reason: "does not decode".into(),
        }),
    }
}

/// Stores a new version of the document at `key`, maintaining every index.
pub(super) async fn write_version<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    key: &[u8],
    rec: &[u8],
    old: Option<&DocumentMeta>,
    new: &DocumentMeta,
) -> Result<(), Error> {
    let m = ctx.w.meta.clone();
    let (docs, _) = btree::insert(ctx, m.root(Tree::Docs), key, rec).await?;
    let mut etags = m.root(Tree::Etags);
    if let Some(o) = old {
        etags = btree::remove(ctx, etags, &o.etag.to_be_bytes()).await?.0;
    }
    etags = btree::insert(ctx, etags, &new.etag.to_be_bytes(), key)
        .await?
        .0;
    let mut colls = m.root(Tree::Colls);
    let old_live_coll = old
        .filter(|o| !o.flags.is_tombstone())
        .and_then(|o| o.collection.as_deref());
    let new_live_coll = if new.flags.is_tombstone() {
        None
    } else {
        new.collection.as_deref()
    };
    if old_live_coll.map(coll_key) != new_live_coll.map(coll_key) {
        if let Some(c) = old_live_coll {
            colls = btree::remove(ctx, colls, &coll_index_key(c, key)).await?.0;
            ctx.w.add_coll_delta(c, -1);
        }
        if let Some(c) = new_live_coll {
            colls = btree::insert(ctx, colls, &coll_index_key(c, key), &[])
                .await?
                .0;
            ctx.w.add_coll_delta(c, 1);
        }
    }
    let was_conflicted = old.is_some_and(|o| o.flags.is_conflicted());
    let is_conflicted = new.flags.is_conflicted();
    if was_conflicted != is_conflicted {
        let root = ctx.w.meta.root(Tree::Conflicts);
        let root = if is_conflicted {
            btree::insert(ctx, root, key, &[]).await?.0
        } else {
            btree::remove(ctx, root, key).await?.0
        };
        ctx.w.meta.set_root(Tree::Conflicts, root);
    }
    let mm = &mut ctx.w.meta;
    mm.set_root(Tree::Docs, docs);
    mm.set_root(Tree::Etags, etags);
    mm.set_root(Tree::Colls, colls);
    mm.last_etag = new.etag;
    let was_live = old.is_some_and(|o| !o.flags.is_tombstone());
    let was_tomb = old.is_some_and(|o| o.flags.is_tombstone());
    let is_tomb = new.flags.is_tombstone();
    // Saturating: a damaged meta record may count fewer documents than the
    // tree holds (found by the `meta` fuzz target); the write goes on, and the
    // integrity check reports the counts that disagree with the trees.
    mm.doc_count = mm.doc_count.saturating_sub(u64::from(was_live)) + u64::from(!is_tomb);
    mm.tombstone_count =
        mm.tombstone_count.saturating_sub(u64::from(was_tomb)) + u64::from(is_tomb);
    Ok(())
}

/// Applies one collection-count delta to the `stats` tree. All its awaits
/// (page reads) come before its first change, so a future dropped half-way
/// leaves the tree unchanged.
pub(super) async fn bump_stat<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    root: PageNo,
    k: &[u8],
    coll: &str,
    delta: i64,
) -> Result<PageNo, Error> {
    let cur = match btree::get(ctx, root, k).await? {
        Some(v) => get_u64(&v, 0).unwrap_or(0),
        None => 0,
    };
    let n = cur.saturating_add_signed(delta);
    if n == 0 {
        return Ok(btree::remove(ctx, root, k).await?.0);
    }
    let mut v = Vec::with_capacity(8 + coll.len());
    v.put_u64(n);
    v.extend_from_slice(coll.as_bytes());
    Ok(btree::insert(ctx, root, k, &v).await?.0)
}
