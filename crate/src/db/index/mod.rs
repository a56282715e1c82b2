//! Indexes in the engine: their stored definitions, the steps that keep
//! them up to date, their reduce trees and their queries (the public types
//! are in [`crate::index`]).
//!
//! - `mod.rs` (here): the definition records, [`Database::define_index`],
//!   [`Database::update_index`] (one step: map outside the writer lock,
//!   commit in one transaction), status, drop, and the clean-up of dropped
//!   versions;
//! - `step.rs`: a step's transaction (entries, the documents' entry lists,
//!   reductions, output documents, the checkpoint);
//! - `reduce.rs`: the reduce tree of one key;
//! - `query.rs`: [`super::Snapshot::query`];
//! - `purge.rs`: what a physical purge removes from the indexes.
//!
//! ## Stored layout (all keys big-endian where they order)
//! - `index_defs`: name → [`DefRecord`]: the version queries use (`active`)
//!   and the one being built beside it (`building`), each with its own
//!   index id and checkpoint. Key `00 "next"`: the next index id (u32);
//!   `00 "drop"`: ids whose entries are still to be removed.
//! - `index_entries`: id (u32) + key ([`crate::index::key`]) + (reducing
//!   indexes: the document's [`crate::index::doc_hash`], u64) + escaped id
//!   key + emit number (u16) → id as written (bytes16) + value (JSON).
//! - `index_docs`: id + id key → the entry keys (without the id) the
//!   document emitted.
//! - `index_reduce`: `id 00 key` → the root of the key's reduce tree;
//!   `id 01 key depth path` → an inner node (`reduce.rs`).

mod purge;
mod query;
mod reduce;
mod step;
mod tx;

use std::sync::Arc;

use crate::btree;
use crate::codec::{Put, Reader};
use crate::doc;
use crate::error::{Error, InputError, clip};
use crate::index::{
    Emit, Index, IndexDefinition, IndexFunctions, IndexProgress, MapDoc, key, validate_name,
};
use crate::store::PageStore;

use super::alloc::WCtx;
use super::meta::Tree;
use super::types::WriteResult;
use super::write::Prepared;
use super::{Database, Snapshot};

pub(crate) use purge::{remove_docs as purge_docs, scrub as scrub_purged};
pub(crate) use step::Mapped;

/// Most documents one step maps (and commits in one transaction). A step
/// writes about one page per index leaf it touches, and keys spread over
/// the index touch most leaves, so larger steps write fewer pages per
/// document: in Chromium, building an index over 100,000 documents took
/// 10.5 s in steps of 1,000, 3.6 s in steps of 5,000 and 2.4 s in steps
/// of 10,000 (docs/benchmarks.md, "Indexes").
pub const STEP_DOCS: usize = 10_000;
/// Most entries one step's documents may emit, all together: what the
/// step's commit applies (a map function that emits several entries per
/// document ends its steps sooner).
pub const STEP_ENTRIES: usize = 20_000;
/// Documents a step reads from the changes feed at a time (it maps them one
/// by one, looking at its task budget, [`crate::platform::TASK_BUDGET_MS`],
/// after each).
const STEP_CHUNK: usize = 100;
/// Most task budgets one step maps for: in the browser a step maps for one
/// budget per task, waits for the next task (the page paints and takes
/// input), and goes on, up to this many; then it commits what it mapped.
/// A slow map function thus still commits its progress every
/// `STEP_TASKS` × [`TASK_BUDGET_MS`](crate::platform::TASK_BUDGET_MS).
pub const STEP_TASKS: u32 = 12;
/// What an index step asks at each of its waits for the next task
/// ([`Database::update_index_unless`]): whether other operations wait for
/// it. Any `Fn() -> bool` is one.
pub trait OthersWait: crate::platform::MaybeSend + crate::platform::MaybeSync {
    /// Whether the step should end now, with what it has mapped.
    fn others_wait(&self) -> bool;
}

impl<F> OthersWait for F
where
    F: Fn() -> bool + crate::platform::MaybeSend + crate::platform::MaybeSync,
{
    fn others_wait(&self) -> bool {
        self()
    }
}

/// Most entries one document may emit into one index.
pub const MAX_EMITS: usize = 10_000;
/// Largest emitted value (JSON text), in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one clean-up transaction removes.
const DROP_PER_STEP: usize = 4_096;

const NEXT_ID_KEY: &[u8] = b"\0next";
const DROP_KEY: &[u8] = b"\0drop";
const DEF_FORMAT: u8 = 1;

/// One version of an index as stored: its id (the prefix of its entries),
/// what it maps, and how far it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) id: u32,
    pub(crate) version: String,
    pub(crate) collections: Vec<String>,
    pub(crate) reduce: bool,
    pub(crate) output: Option<String>,
    /// Every change up to this etag is reflected.
    pub(crate) checkpoint: u64,
    /// A purge left roots to rebuild (`purge.rs`).
    pub(crate) dirty: bool,
}

impl Slot {
    fn from_def(id: u32, def: &IndexDefinition) -> Slot {
        Slot {
            id,
            version: def.version.clone(),
            collections: def.collections.clone(),
            reduce: def.reduce,
            output: def.output.clone(),
            checkpoint: 0,
            dirty: false,
        }
    }

    /// Whether `def` describes this version (same version, same meaning).
    fn same_as(&self, def: &IndexDefinition) -> bool {
        self.version == def.version
            && self.collections == def.collections
            && self.reduce == def.reduce
            && self.output == def.output
    }

    /// Whether a document of `collection` is mapped.
    fn covers(&self, collection: Option<&str>) -> bool {
        self.collections.is_empty()
            || collection.is_some_and(|c| {
                self.collections
                    .iter()
                    .any(|s| super::write::same_collection(Some(s), Some(c)))
            })
    }

    fn put(&self, b: &mut Vec<u8>) {
        b.put_u32(self.id);
        b.put_bytes16(self.version.as_bytes());
        b.put_u16(self.collections.len() as u16);
        for c in &self.collections {
            b.put_bytes16(c.as_bytes());
        }
        b.put_u8(u8::from(self.reduce));
        match &self.output {
            Some(o) => {
                b.put_u8(1);
                b.put_bytes16(o.as_bytes());
            }
            None => b.put_u8(0),
        }
        b.put_u64(self.checkpoint);
        b.put_u8(u8::from(self.dirty));
    }

    fn take(r: &mut Reader<'_>) -> Result<Slot, String> {
        let text =
            |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "a name not UTF-8".to_string());
        let id = r.u32("index id").map_err(|e| e.to_string())?;
        let version = text(r.bytes16("version").map_err(|e| e.to_string())?)?;
        let n = r.u16("collection count").map_err(|e| e.to_string())?;
        let mut collections = Vec::with_capacity(n as usize);
        for _ in 0..n {
            collections.push(text(r.bytes16("collection").map_err(|e| e.to_string())?)?);
        }
        let reduce = r.u8("reduce").map_err(|e| e.to_string())? == 1;
        let output = match r.u8("output").map_err(|e| e.to_string())? {
            0 => None,
            _ => Some(text(r.bytes16("output").map_err(|e| e.to_string())?)?),
        };
        let checkpoint = r.u64("checkpoint").map_err(|e| e.to_string())?;
        let dirty = r.u8("dirty").map_err(|e| e.to_string())? == 1;
        Ok(Slot {
            id,
            version,
            collections,
            reduce,
            output,
            checkpoint,
            dirty,
        })
    }
}

/// The stored record of one index name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefRecord {
    /// The version queries use.
    pub(crate) active: Slot,
    /// A newer version being built beside it.
    pub(crate) building: Option<Slot>,
}

impl DefRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![DEF_FORMAT];
        self.active.put(&mut b);
        match &self.building {
            Some(s) => {
                b.put_u8(1);
                s.put(&mut b);
            }
            None => b.put_u8(0),
        }
        b
    }

    pub(crate) fn decode(name: &str, b: &[u8]) -> Result<DefRecord, Error> {
        let bad = |why: String| Error::CorruptRecord {
            record: format!("definition of index {:?}", clip(name)),
            reason: why,
        };
        let mut r = Reader::new(b);
        let format = r.u8("format").map_err(|e| bad(e.to_string()))?;
        if format != DEF_FORMAT {
            return Err(bad(format!("unknown format {format}")));
        }
        let active = Slot::take(&mut r).map_err(bad)?;
        let building = match r.u8("building").map_err(|e| bad(e.to_string()))? {
            0 => None,
            _ => Some(Slot::take(&mut r).map_err(bad)?),
        };
        Ok(DefRecord { active, building })
    }

    /// The slot of `version`, and whether it is the one being built.
    pub(crate) fn slot_of(&self, version: &str) -> Option<(&Slot, bool)> {
        match &self.building {
            Some(b) if b.version == version => Some((b, true)),
            _ if self.active.version == version => Some((&self.active, false)),
            _ => None,
        }
    }

    /// The definition of the version queries use.
    fn definition(&self, name: &str) -> IndexDefinition {
        let s = &self.active;
        IndexDefinition {
            name: name.to_string(),
            version: s.version.clone(),
            collections: s.collections.clone(),
            reduce: s.reduce,
            output: s.output.clone(),
        }
    }
}

/// Ids whose entries are still to be removed (the `00 "drop"` record).
fn decode_ids(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn encode_ids(ids: &[u32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 * ids.len());
    for &i in ids {
        b.put_u32(i);
    }
    b
}

/// An index's transaction.
pub(crate) enum IndexOp {
    /// Stores a definition: a new index, or a new version built beside the
    /// current one.
    Define(IndexDefinition),
    /// Applies mapped documents and moves the checkpoint (`step.rs`).
    Step(step::Step),
    /// Removes up to [`DROP_PER_STEP`] keys of a dropped version.
    Clean,
    /// Removes a definition (its entries follow through `Clean`).
    Drop(String),
}

/// Checks a definition before it is stored.
fn check_definition(def: &IndexDefinition) -> Result<(), Error> {
    let bad = |why: String| -> Error { InputError::InvalidArgument(why).into() };
    validate_name(&def.name).map_err(bad)?;
    if def.version.len() > 256 {
        return Err(bad(format!(
            "index {:?}: a version is at most 256 bytes",
            clip(&def.name)
        )));
    }
    if def.collections.len() > 256 {
        return Err(bad(format!(
            "index {:?}: at most 256 collections",
            clip(&def.name)
        )));
    }
    for c in &def.collections {
        doc::validate_collection(c)?;
    }
    if let Some(o) = &def.output {
        doc::validate_collection(o)?;
        if !def.reduce {
            return Err(bad(format!(
                "index {:?}: only a reducing index has an output collection",
                clip(&def.name)
            )));
        }
        if def.collections.is_empty()
            || def
                .collections
                .iter()
                .any(|c| super::write::same_collection(Some(c), Some(o)))
        {
            return Err(bad(format!(
                "index {:?}: it would read its own output collection {:?}",
                clip(&def.name),
                clip(o)
            )));
        }
    }
    Ok(())
}

async fn read_def<S: PageStore>(ctx: &WCtx<'_, S>, name: &str) -> Result<Option<DefRecord>, Error> {
    match tx::get(ctx, Tree::IndexDefs, name.as_bytes()).await? {
        Some(b) => Ok(Some(DefRecord::decode(name, &b)?)),
        None => Ok(None),
    }
}

async fn write_def<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    name: &str,
    rec: Option<&DefRecord>,
) -> Result<(), Error> {
    let v = rec.map(DefRecord::encode);
    tx::set(ctx, Tree::IndexDefs, name.as_bytes(), v.as_deref()).await
}

async fn dropped_ids<S: PageStore>(ctx: &WCtx<'_, S>) -> Result<Vec<u32>, Error> {
    Ok(tx::get(ctx, Tree::IndexDefs, DROP_KEY)
        .await?
        .map(|b| decode_ids(&b))
        .unwrap_or_default())
}

/// Schedules the entries of `id` for removal.
async fn drop_id<S: PageStore>(ctx: &mut WCtx<'_, S>, id: u32) -> Result<(), Error> {
    let mut ids = dropped_ids(ctx).await?;
    if !ids.contains(&id) {
        ids.push(id);
    }
    tx::set(ctx, Tree::IndexDefs, DROP_KEY, Some(&encode_ids(&ids))).await
}

async fn next_id<S: PageStore>(ctx: &mut WCtx<'_, S>) -> Result<u32, Error> {
    let id = match tx::get(ctx, Tree::IndexDefs, NEXT_ID_KEY).await? {
        Some(b) if b.len() == 4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Some(_) => {
            return Err(Error::CorruptRecord {
                record: "next index id".into(),
                reason: "not 4 bytes".into(),
            });
        }
        None => 1,
    };
    let next = id
        .checked_add(1)
        .ok_or_else(|| Error::from(InputError::InvalidArgument("no index ids left".into())))?;
    tx::set(ctx, Tree::IndexDefs, NEXT_ID_KEY, Some(&next.to_le_bytes())).await?;
    Ok(id)
}

/// Applies an index's transaction (called from `write::apply`).
pub(super) async fn apply<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    op: &IndexOp,
    db: crate::cv::DbId,
    now: i64,
) -> Result<Option<WriteResult>, Error> {
    match op {
        IndexOp::Define(def) => {
            let rec = match read_def(ctx, &def.name).await? {
                None => DefRecord {
                    active: Slot::from_def(next_id(ctx).await?, def),
                    building: None,
                },
                Some(rec) if rec.slot_of(&def.version).is_some() => {
                    let (slot, _) = rec.slot_of(&def.version).expect("just found");
                    if !slot.same_as(def) {
                        return Err(InputError::InvalidArgument(format!(
                            "index {:?} version {:?} was defined differently before \
                             (collections, reduce or output): give the new definition a new version",
                            clip(&def.name),
                            clip(&def.version)
                        ))
                        .into());
                    }
                    return Ok(None);
                }
                Some(mut rec) => {
                    if let Some(old) = rec.building.take() {
                        drop_id(ctx, old.id).await?;
                    }
                    rec.building = Some(Slot::from_def(next_id(ctx).await?, def));
                    rec
                }
            };
            write_def(ctx, &def.name, Some(&rec)).await?;
        }
        IndexOp::Step(s) => step::apply(ctx, s, db, now).await?,
        IndexOp::Clean => clean(ctx).await?,
        IndexOp::Drop(name) => {
            let Some(rec) = read_def(ctx, name).await? else {
                return Ok(None);
            };
            drop_id(ctx, rec.active.id).await?;
            if let Some(b) = rec.building {
                drop_id(ctx, b.id).await?;
            }
            write_def(ctx, name, None).await?;
        }
    }
    Ok(None)
}

/// Removes up to [`DROP_PER_STEP`] keys of the first dropped id, and the id
/// from the list once none is left.
async fn clean<S: PageStore>(ctx: &mut WCtx<'_, S>) -> Result<(), Error> {
    let mut ids = dropped_ids(ctx).await?;
    let Some(&id) = ids.first() else {
        return Ok(());
    };
    let prefix = id.to_be_bytes();
    let mut left = DROP_PER_STEP;
    for tree in [Tree::IndexEntries, Tree::IndexDocs, Tree::IndexReduce] {
        let keys = tx::keys_under(ctx, tree, &prefix, &prefix, left).await?;
        left -= keys.len();
        for k in keys {
            tx::set(ctx, tree, &k, None).await?;
        }
        if left == 0 {
            return Ok(());
        }
    }
    ids.remove(0);
    let v = (!ids.is_empty()).then(|| encode_ids(&ids));
    tx::set(ctx, Tree::IndexDefs, DROP_KEY, v.as_deref()).await
}

impl<S: PageStore> Snapshot<S> {
    /// The stored record of index `name`.
    pub(crate) async fn index_record(&self, name: &str) -> Result<Option<DefRecord>, Error> {
        match btree::get(
            &self.reader(),
            self.meta.root(Tree::IndexDefs),
            name.as_bytes(),
        )
        .await?
        {
            Some(b) => Ok(Some(DefRecord::decode(name, &b)?)),
            None => Ok(None),
        }
    }

    /// Every defined index: the definition queries use, and its progress
    /// (the version being built, if any, is reported by
    /// [`Database::index_status`]).
    pub async fn indexes(&self) -> Result<Vec<(IndexDefinition, IndexProgress)>, Error> {
        let mut raw = Vec::new();
        btree::scan(
            &self.reader(),
            self.meta.root(Tree::IndexDefs),
            b"",
            |k, v| {
                if k.first() != Some(&0) {
                    raw.push((String::from_utf8_lossy(k).into_owned(), v));
                }
                true
            },
        )
        .await?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, v) in raw {
            let rec = DefRecord::decode(&name, &v)?;
            let p = self.progress(&rec.active, false);
            out.push((rec.definition(&name), p));
        }
        Ok(out)
    }

    fn progress(&self, slot: &Slot, building: bool) -> IndexProgress {
        IndexProgress {
            indexed_etag: slot.checkpoint,
            db_etag: self.meta.last_etag,
            mapped: 0,
            building,
        }
    }
}

impl<S: PageStore> Database<S> {
    /// Stores an index's definition (nothing is mapped yet: see
    /// [`update_index`](Self::update_index)). Defining the same name and
    /// version again does nothing; a new version of a defined name is built
    /// beside the current one, which queries keep using until the new one
    /// has caught up (the old one is then removed).
    pub async fn define_index(&self, def: &IndexDefinition) -> Result<(), Error> {
        check_definition(def)?;
        self.commit_prepared(vec![Prepared::Index(Box::new(IndexOp::Define(
            def.clone(),
        )))])
        .await?;
        Ok(())
    }

    /// Removes an index (its entries are removed by later steps of other
    /// indexes, or [`clean_indexes`](Self::clean_indexes)). Output documents
    /// it wrote stay. Does nothing if it is not defined.
    pub async fn drop_index(&self, name: &str) -> Result<(), Error> {
        self.commit_prepared(vec![Prepared::Index(Box::new(IndexOp::Drop(name.into())))])
            .await?;
        Ok(())
    }

    /// Removes what dropped indexes and replaced versions left, a bounded
    /// number of keys per transaction, until nothing is left.
    pub async fn clean_indexes(&self) -> Result<(), Error> {
        for _ in 0..1_000_000 {
            let snap = self.snapshot();
            let pending =
                btree::get(&snap.reader(), snap.meta.root(Tree::IndexDefs), DROP_KEY).await?;
            if pending.is_none() {
                return Ok(());
            }
            self.commit_prepared(vec![Prepared::Index(Box::new(IndexOp::Clean))])
                .await?;
        }
        Ok(())
    }

    /// How far an index is: the version queries use, or (`building`) the
    /// newer one being built beside it.
    pub async fn index_status(&self, name: &str) -> Result<Vec<IndexProgress>, Error> {
        let snap = self.snapshot();
        let rec = snap
            .index_record(name)
            .await?
            .ok_or_else(|| Error::NoIndex(clip(name)))?;
        let mut out = vec![snap.progress(&rec.active, false)];
        if let Some(b) = &rec.building {
            out.push(snap.progress(b, true));
        }
        Ok(out)
    }

    /// One step of keeping `index` up to date: maps the documents changed
    /// since its checkpoint (at most [`STEP_DOCS`]) outside the writer lock,
    /// then commits their entries, the reductions they change, its output
    /// documents and the new checkpoint in one transaction. Defines the
    /// index first if its version is not stored. When a version being built
    /// catches up it replaces the one queries use. Returns the progress;
    /// `mapped == 0` and [`IndexProgress::caught_up`]: nothing to do.
    ///
    /// Two handles may step the same index at once: the step that commits
    /// second finds the checkpoint moved and stores nothing.
    pub async fn update_index(&self, index: &Index) -> Result<IndexProgress, Error> {
        self.update_index_unless(index, &|| false).await
    }

    /// [`Database::update_index`], ending the step early, with what it has
    /// mapped, when `others_wait()` says so at one of its waits for the next
    /// task (in the browser, between task budgets): the package's
    /// background maintenance passes whether other operations are queued
    /// behind the step, so they wait for one task budget and the commit,
    /// not for a whole step.
    pub async fn update_index_unless(
        &self,
        index: &Index,
        others_wait: &dyn OthersWait,
    ) -> Result<IndexProgress, Error> {
        let def = &index.def;
        let mut snap = self.snapshot();
        let rec = match snap.index_record(&def.name).await? {
            Some(r) if r.slot_of(&def.version).is_some() => r,
            _ => {
                self.define_index(def).await?;
                snap = self.snapshot();
                snap.index_record(&def.name)
                    .await?
                    .ok_or_else(|| Error::NoIndex(clip(&def.name)))?
            }
        };
        let (slot, building) = rec
            .slot_of(&def.version)
            .ok_or_else(|| Error::NoIndex(clip(&def.name)))?;
        if !slot.same_as(def) {
            // Stored under this version with another meaning.
            check_definition(def)?;
            self.define_index(def).await?;
        }
        let last = snap.last_etag();
        if slot.checkpoint >= last && !building && !slot.dirty {
            return Ok(snap.progress(slot, building));
        }
        // The changes are read a chunk at a time and mapped one by one. In
        // the browser the mapping runs one task budget at a time (a slow map
        // function or a large step never holds the page's thread for long),
        // for at most `STEP_TASKS` budgets per step.
        let mut budget = crate::platform::TaskBudget::start();
        let mut tasks = 1;
        let mut entries = 0;
        let mut docs = Vec::new();
        let mut to = slot.checkpoint;
        'read: while docs.len() < STEP_DOCS && entries < STEP_ENTRIES {
            let want = (STEP_DOCS - docs.len()).min(STEP_CHUNK);
            let changes = snap.changes_raw(to, want).await?;
            for d in &changes {
                let m = map_doc(&def.name, slot, &*index.fns, d)?;
                entries += m.entries.len();
                docs.push(m);
                to = d.meta.etag;
                if entries >= STEP_ENTRIES {
                    break 'read;
                }
                if budget.spent() {
                    if tasks >= STEP_TASKS {
                        break 'read;
                    }
                    budget.next_task().await;
                    if others_wait.others_wait() {
                        break 'read;
                    }
                    tasks += 1;
                }
            }
            if changes.len() < want {
                // The feed is read to its end.
                to = last;
                break;
            }
        }
        let mapped = docs.len();
        if mapped > 0 {
            // In the browser the commit applies the step a task budget at a
            // time too, from a task of its own (natively this is at once).
            budget.next_task().await;
        }
        let step = step::Step {
            name: def.name.clone(),
            id: slot.id,
            building,
            from: slot.checkpoint,
            to,
            fns: Arc::clone(&index.fns),
            docs,
        };
        self.commit_prepared(vec![Prepared::Index(Box::new(IndexOp::Step(step)))])
            .await?;
        let snap = self.snapshot();
        let rec = snap.index_record(&def.name).await?;
        let p = match rec.as_ref().and_then(|r| r.slot_of(&def.version)) {
            Some((s, b)) => IndexProgress {
                mapped,
                ..snap.progress(s, b)
            },
            None => IndexProgress {
                indexed_etag: to,
                db_etag: snap.last_etag(),
                mapped,
                building,
            },
        };
        Ok(p)
    }

    /// Steps `index` until it reflects every change up to `etag` (`None`:
    /// the database's last etag when called); a query after it sees the
    /// caller's own writes. Returns the progress.
    pub async fn catch_up_index(
        &self,
        index: &Index,
        etag: Option<u64>,
    ) -> Result<IndexProgress, Error> {
        let target = etag.unwrap_or_else(|| self.snapshot().last_etag());
        loop {
            let p = self.update_index(index).await?;
            if (p.indexed_etag >= target && !p.building) || (p.mapped == 0 && p.caught_up()) {
                return Ok(p);
            }
        }
    }
}

/// The output collection a pushed document would write into, if any: its
/// collection is an index's output collection, its id key starts with one
/// (`<collection>/`), or the document held is an index's output
/// (`held_from_index`). Read from the stored definitions, so it holds for
/// every index defined here, running or not.
pub(crate) async fn output_claimed<S: PageStore>(
    ctx: &WCtx<'_, S>,
    id_key: &[u8],
    collection: Option<&str>,
    held_from_index: bool,
) -> Result<Option<String>, Error> {
    let mut outputs: Vec<String> = Vec::new();
    let mut bad = None;
    tx::scan(ctx, Tree::IndexDefs, b"", &mut |k, v| {
        if k.first() == Some(&0) {
            return true;
        }
        let name = String::from_utf8_lossy(k);
        match DefRecord::decode(&name, &v) {
            Ok(r) => outputs.extend(
                [Some(&r.active), r.building.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.output.clone()),
            ),
            Err(e) => bad = Some(e),
        }
        true
    })
    .await?;
    if let Some(e) = bad {
        return Err(e);
    }
    for o in outputs {
        let mut prefix = super::write::coll_key(&o);
        prefix.push(b'/');
        if super::write::same_collection(collection, Some(&o)) || id_key.starts_with(&prefix) {
            return Ok(Some(o));
        }
    }
    // A hub that is itself an edge of another keeps that hub's shared
    // outputs read-only: its own edges may not write them either.
    let upstream = super::write::collection_set(
        ctx,
        crate::policy::HUB_OUTPUTS_KEY,
        "hub outputs (local record policy/hub-outputs)",
    )
    .await?;
    if let Some(c) = upstream.claims(id_key, collection) {
        return Ok(Some(c.to_string()));
    }
    Ok(held_from_index.then(|| "(an index's output)".to_string()))
}

/// Maps one changed document for `slot` (no entries: deleted, conflicted
/// away, or not in the index's collections).
fn map_doc(
    name: &str,
    slot: &Slot,
    fns: &dyn IndexFunctions,
    d: &doc::RawDoc,
) -> Result<Mapped, Error> {
    let key = doc::id_key(&d.id);
    let mut entries = Vec::new();
    let winner = &d.versions[0];
    if !winner.deleted && slot.covers(d.meta.collection.as_deref()) {
        let fail = |message: String| Error::Index {
            index: clip(name),
            doc: Some(clip(&d.id)),
            message,
        };
        let emits: Vec<Emit> = fns
            .map(&MapDoc {
                id: &d.id,
                collection: d.meta.collection.as_deref(),
                json: &winner.body,
            })
            .map_err(|e| fail(format!("the map function failed: {e}")))?;
        if emits.len() > MAX_EMITS {
            return Err(fail(format!(
                "{} entries from one document; the limit is {MAX_EMITS}",
                emits.len()
            )));
        }
        for e in emits {
            let k = key::encode(&e.key).map_err(|err| fail(err.to_string()))?;
            let v = serde_json::to_vec(&e.value).map_err(|err| fail(err.to_string()))?;
            if v.len() > MAX_VALUE_BYTES {
                return Err(fail(format!(
                    "an emitted value of {} bytes; the limit is {MAX_VALUE_BYTES}",
                    v.len()
                )));
            }
            entries.push((k, v));
        }
    }
    Ok(Mapped {
        id: d.id.clone(),
        key,
        entries,
    })
}
