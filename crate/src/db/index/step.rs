//! One step of an index, applied in one transaction: each mapped
//! document's old entries out and new entries in, the reduce trees of the
//! keys they touch, the output documents of those keys, and the checkpoint.
//! Everything is written or nothing is (the transaction rolls back whole),
//! so a crash between steps loses nothing and counts nothing twice: the
//! next step starts from the stored checkpoint.

use std::sync::Arc;

use serde_json::Value;

use crate::codec::{Put, Reader};
use crate::cv::DbId;
use crate::doc;
use crate::error::{Error, clip};
use crate::index::{IndexFunctions, doc_hash, key, output_id};
use crate::store::PageStore;

use super::super::alloc::WCtx;
use super::super::meta::Tree;
use super::super::types::Expected;
use super::super::write::{Prepared, apply_local_write as apply_write};
use super::{DefRecord, Slot, drop_id, read_def, reduce, tx, write_def};

/// A document as the map function saw it.
pub(crate) struct Mapped {
    /// The id as written.
    pub(crate) id: String,
    /// Its id key.
    pub(crate) key: Vec<u8>,
    /// Encoded key and value (JSON) of every entry (none: remove its entries).
    pub(crate) entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a step commits.
pub(crate) struct Step {
    pub(crate) name: String,
    /// The index id of the version stepped.
    pub(crate) id: u32,
    /// Whether that version is the one being built.
    pub(crate) building: bool,
    /// The checkpoint the documents were read after: the step applies only
    /// if it is still the stored one.
    pub(crate) from: u64,
    /// The checkpoint after the step.
    pub(crate) to: u64,
    pub(crate) fns: Arc<dyn IndexFunctions>,
    pub(crate) docs: Vec<Mapped>,
}

/// The key of a document's entry list in `index_docs`.
fn docs_key(id: u32, key: &[u8]) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

/// The suffix (after the index id) of an entry's key.
fn entry_suffix(kenc: &[u8], hash: Option<u64>, id_key: &[u8], n: u16) -> Vec<u8> {
    let mut s = Vec::with_capacity(kenc.len() + id_key.len() + 14);
    s.extend_from_slice(kenc);
    if let Some(h) = hash {
        s.extend_from_slice(&h.to_be_bytes());
    }
    key::put_escaped(&mut s, id_key);
    s.extend_from_slice(&n.to_be_bytes());
    s
}

fn encode_list(items: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(items.len() as u32);
    for i in items {
        b.put_bytes16(i);
    }
    b
}

pub(crate) fn decode_list(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader::new(b);
    let n = r.u32("count").ok()?;
    let mut out = Vec::with_capacity(n.min(super::MAX_EMITS as u32) as usize);
    for _ in 0..n {
        out.push(r.bytes16("entry").ok()?.to_vec());
    }
    (r.remaining() == 0).then_some(out)
}

/// An entry's stored value: the id as written, then the value's JSON.
pub(crate) fn entry_value(id: &str, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + id.len() + json.len());
    v.put_bytes16(id.as_bytes());
    v.extend_from_slice(json);
    v
}

/// Splits an entry's stored value into the id and the value's JSON.
pub(crate) fn split_value(v: &[u8]) -> Option<(&str, &[u8])> {
    let mut r = Reader::new(v);
    let id = std::str::from_utf8(r.bytes16("id").ok()?).ok()?;
    Some((id, r.rest()))
}

/// The encoded key at the start of an entry suffix.
fn key_of_suffix(s: &[u8]) -> Result<&[u8], Error> {
    let (_, rest) = key::decode_prefix(s).map_err(|e| Error::CorruptRecord {
        record: "index entry".into(),
        reason: e.to_string(),
    })?;
    Ok(&s[..s.len() - rest.len()])
}

pub(super) async fn apply<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    s: &Step,
    db: DbId,
    now: i64,
) -> Result<(), Error> {
    let Some(mut rec) = read_def(ctx, &s.name).await? else {
        return Ok(()); // dropped meanwhile
    };
    let slot = if s.building {
        rec.building.as_ref()
    } else {
        Some(&rec.active)
    };
    let Some(slot) = slot.filter(|sl| sl.id == s.id && sl.checkpoint == s.from) else {
        return Ok(()); // another handle stepped it first
    };
    let slot: Slot = slot.clone();
    // The step reads up to `s.to`; if that was the database's end, the
    // output documents it writes (never in its own collections) are
    // passed over too, so the index is not stale by its own writes.
    let end_before = ctx.w.meta.last_etag;
    let prefix = s.id.to_be_bytes();
    // Reduce keys touched, with the hashes of the documents that touched them.
    // (Plain vectors, sorted afterwards: fewer generic collections in the
    // size-budgeted wasm build.)
    let mut touched: Vec<(Vec<u8>, Option<u64>)> = Vec::new();
    // In the browser the apply runs a task budget at a time (a step of
    // `STEP_DOCS` documents is longer than one); the writer lock stays held
    // meanwhile.
    let mut budget = crate::platform::TaskBudget::start();
    for m in &s.docs {
        budget.pause_if_spent().await;
        let dk = docs_key(s.id, &m.key);
        let hash = slot.reduce.then(|| doc_hash(&m.key));
        let old = tx::get(ctx, Tree::IndexDocs, &dk).await?;
        let old = match old {
            Some(b) => decode_list(&b).ok_or_else(|| Error::CorruptRecord {
                record: format!("entries of {:?} in index {:?}", clip(&m.id), clip(&s.name)),
                reason: "does not decode".into(),
            })?,
            None => Vec::new(),
        };
        if old.is_empty() && m.entries.is_empty() {
            continue;
        }
        for suffix in &old {
            let mut k = prefix.to_vec();
            k.extend_from_slice(suffix);
            tx::set(ctx, Tree::IndexEntries, &k, None).await?;
            if let Some(h) = hash {
                touched.push((key_of_suffix(suffix)?.to_vec(), Some(h)));
            }
        }
        let mut new = Vec::with_capacity(m.entries.len());
        for (n, (kenc, json)) in m.entries.iter().enumerate() {
            let suffix = entry_suffix(kenc, hash, &m.key, n as u16);
            let mut k = prefix.to_vec();
            k.extend_from_slice(&suffix);
            let v = entry_value(&m.id, json);
            tx::set(ctx, Tree::IndexEntries, &k, Some(&v)).await?;
            if let Some(h) = hash {
                touched.push((kenc.clone(), Some(h)));
            }
            new.push(suffix);
        }
        let list = (!new.is_empty()).then(|| encode_list(&new));
        tx::set(ctx, Tree::IndexDocs, &dk, list.as_deref()).await?;
    }
    if slot.dirty {
        // Roots a purge emptied: rebuilt whole from the entries left.
        let start = reduce::root_prefix(s.id);
        tx::scan(ctx, Tree::IndexReduce, &start, &mut |k, v| {
            if !k.starts_with(&start) {
                return false;
            }
            if reduce::is_dirty(&v) {
                touched.push((k[start.len()..].to_vec(), None));
            }
            true
        })
        .await?;
    }
    let write_outputs = slot.output.is_some() && !s.building;
    touched.sort_unstable();
    touched.dedup();
    let mut i = 0;
    while i < touched.len() {
        budget.pause_if_spent().await;
        let kenc = &touched[i].0;
        let n = touched[i..].iter().take_while(|(k, _)| k == kenc).count();
        let hashes: Vec<u64> = touched[i..i + n].iter().filter_map(|t| t.1).collect();
        i += n;
        let key_value = key::decode(kenc).map_err(|e| Error::CorruptRecord {
            record: format!("a key of index {:?}", clip(&s.name)),
            reason: e.to_string(),
        })?;
        let r = reduce::Reducer {
            name: &s.name,
            id: s.id,
            kenc,
            key: &key_value,
            fns: &*s.fns,
        };
        let (before, after) = r.update(ctx, &hashes).await?;
        if write_outputs && before != after {
            let out = slot.output.as_deref().expect("checked");
            write_output(ctx, &s.name, out, &key_value, after.as_deref(), db, now).await?;
        }
    }
    let mut slot = slot;
    slot.checkpoint = if s.to >= end_before {
        ctx.w.meta.last_etag
    } else {
        s.to
    };
    slot.dirty = false;
    if s.building {
        if slot.checkpoint >= ctx.w.meta.last_etag {
            // Caught up: the new version replaces the old one.
            drop_id(ctx, rec.active.id).await?;
            let out = slot.output.clone();
            rec.active = slot;
            rec.building = None;
            if let Some(out) = out {
                rewrite_outputs(ctx, &s.name, &rec, &out, db, now).await?;
                rec.active.checkpoint = ctx.w.meta.last_etag;
            }
        } else {
            rec.building = Some(slot);
        }
    } else {
        rec.active = slot;
    }
    write_def(ctx, &s.name, Some(&rec)).await
}

/// An output document's write, boxed (compiled once, not inlined into the
/// step's state machine).
fn local_write<'a, S: PageStore>(
    ctx: &'a mut WCtx<'_, S>,
    op: &'a Prepared,
    db: DbId,
    now: i64,
) -> crate::platform::BoxFuture<'a, Result<Option<super::super::types::WriteResult>, Error>> {
    Box::pin(apply_write(ctx, op, db, now))
}

/// Writes (or, `result` `None`, deletes) the output document of one key.
async fn write_output<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    name: &str,
    collection: &str,
    key_value: &Value,
    result: Option<&[u8]>,
    db: DbId,
    now: i64,
) -> Result<(), Error> {
    let id = output_id(collection, key_value);
    let fail = |message: String| Error::Index {
        index: clip(name),
        doc: Some(clip(&id)),
        message,
    };
    doc::validate_id(&id).map_err(|e| fail(format!("output document id: {e}")))?;
    let key = doc::id_key(&id);
    let op = match result {
        Some(json) => {
            let body = match serde_json::from_slice::<Value>(json) {
                Ok(Value::Object(_)) => json.to_vec(),
                Ok(other) => serde_json::to_vec(&serde_json::json!({ "value": other }))
                    .map_err(|e| fail(e.to_string()))?,
                Err(e) => return Err(fail(format!("a stored result does not parse: {e}"))),
            };
            crate::body::check_body(&body)
                .map_err(|e| fail(format!("the result breaks body rule {}: {e}", e.rule())))?;
            Prepared::Put {
                id,
                key,
                body,
                collection: Some(collection.to_string()),
                expected: Expected::Any,
                resolve: false,
                from_index: true,
            }
        }
        None => Prepared::Delete {
            id,
            key,
            expected: Expected::Any,
            resolve: false,
            from_index: true,
        },
    };
    local_write(ctx, &op, db, now).await?;
    Ok(())
}

/// After a new version replaced the old one: the output collection holds
/// exactly the new version's results (documents of keys it no longer has
/// are deleted).
async fn rewrite_outputs<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    name: &str,
    rec: &DefRecord,
    collection: &str,
    db: DbId,
    now: i64,
) -> Result<(), Error> {
    let id = rec.active.id;
    let mut results = Vec::new();
    let start = reduce::root_prefix(id);
    tx::scan(ctx, Tree::IndexReduce, &start, &mut |k, v| {
        if !k.starts_with(&start) {
            return false;
        }
        results.push((k[start.len()..].to_vec(), v));
        true
    })
    .await?;
    let mut keep = Vec::new();
    for (kenc, node) in results {
        let key_value = key::decode(&kenc).map_err(|e| Error::CorruptRecord {
            record: format!("a key of index {:?}", clip(name)),
            reason: e.to_string(),
        })?;
        let result = reduce::node_result(&node)?;
        keep.push(doc::id_key(&output_id(collection, &key_value)));
        write_output(ctx, name, collection, &key_value, Some(result), db, now).await?;
    }
    keep.sort_unstable();
    // Output documents of keys the new version does not have.
    let ck = super::super::write::coll_index_key(collection, b"");
    let mut stale = Vec::new();
    tx::scan(ctx, Tree::Colls, &ck, &mut |k, _| {
        if !k.starts_with(&ck) {
            return false;
        }
        let idk = &k[ck.len()..];
        if keep.binary_search_by(|k| k.as_slice().cmp(idk)).is_err() {
            stale.push(idk.to_vec());
        }
        true
    })
    .await?;
    for idk in stale {
        let Some(raw) = tx::get(ctx, Tree::Docs, &idk).await? else {
            continue;
        };
        let (doc_id, meta, _, _) =
            doc::decode_raw(&raw).map_err(|e| Error::corrupt_record(&idk, e))?;
        if !meta.flags.is_from_index() {
            continue;
        }
        let op = Prepared::Delete {
            id: doc_id,
            key: idk,
            expected: Expected::Any,
            resolve: false,
            from_index: true,
        };
        local_write(ctx, &op, db, now).await?;
    }
    Ok(())
}
