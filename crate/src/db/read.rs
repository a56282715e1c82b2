//! Reads: verified page reads through the cache, [`Snapshot`] (a consistent
//! view of one flushed generation) and its queries, and the [`Database`]
//! methods that read through a fresh snapshot.

use std::sync::Arc;

use crate::btree::{self, PageRead};
use crate::codec::get_u64;
use crate::doc::{self, Document};
use crate::error::Error;
use crate::store::{PageBuf, PageNo, PageStore, StoreError};

use super::meta::{Meta, Tree};
use super::write::coll_key;
use super::{Database, Inner};

/// Reads a page through the cache, verifying it when it comes from the store.
pub(super) async fn read_cached<S: PageStore>(
    inner: &Inner<S>,
    no: PageNo,
    kind: u8,
) -> Result<PageBuf, Error> {
    // A damaged page is reported with the file and byte offset holding it.
    let located = |e: Error| match e {
        Error::Corrupt {
            page,
            location: None,
            reason,
        } => Error::Corrupt {
            location: inner.store.page_location(page),
            page,
            reason,
        },
        e => e,
    };
    if let Some((b, unverified)) = inner.cache.get(no) {
        // A page read along: checked now, or read again (and reported) below.
        let fine = !unverified || btree::check_page(&b, no, btree::page_kind(&b)).is_ok();
        if fine {
            if unverified {
                inner.cache.verified(no);
            }
            if kind != 0 && btree::page_kind(&b) != kind {
                return Err(located(btree::corrupt(
                    no,
                    format!("expected page kind {kind}, found {}", btree::page_kind(&b)),
                )));
            }
            return Ok(b);
        }
        inner.cache.remove(no);
    }
    let b = match inner.store.read_page(no).await {
        Ok(b) => b,
        Err(StoreError::PageNotFound(_)) => {
            return Err(btree::corrupt(no, "referenced page does not exist".into()));
        }
        Err(e) => return Err(e.into()),
    };
    take_read_along(inner);
    let k = if kind == 0 {
        btree::page_kind(&b)
    } else {
        kind
    };
    btree::check_page(&b, no, k).map_err(located)?;
    inner.cache.put(no, b.clone());
    Ok(b)
}

/// Loads those of `nos` the cache lacks with one [`PageStore::read_pages`]
/// and caches the ones that verify; the rest are left for
/// [`read_cached`] to load (and report) one by one.
/// Returns how many of `nos` it took care of: never more pages than a
/// quarter of the cache, so that what is read ahead is still there when the
/// scan gets to it.
pub(super) async fn prefetch_cached<S: PageStore>(inner: &Inner<S>, nos: &[PageNo]) -> usize {
    let max = (inner.cache.stats().capacity_pages / 4).max(1) as usize;
    let (missing, covered) = inner.cache.missing(nos, max);
    if missing.len() < 2 {
        // One page is one read either way: leave it to `read_cached`.
        return covered;
    }
    let pages = inner.store.read_pages(&missing).await;
    take_read_along(inner);
    for (&no, page) in missing.iter().zip(pages) {
        if let Ok(b) = page
            && btree::check_page(&b, no, btree::page_kind(&b)).is_ok()
        {
            inner.cache.put_loaded(no, b);
        }
    }
    covered
}

/// Caches, unverified, the pages the store read along with the last read
/// ([`PageStore::take_read_along`]): verified when first asked for.
fn take_read_along<S: PageStore>(inner: &Inner<S>) {
    for (no, b) in inner.store.take_read_along() {
        inner.cache.put_read_along(no, b);
    }
}

/// Reads of a snapshot: through the cache only.
pub(super) struct SnapRead<'a, S> {
    inner: &'a Inner<S>,
}

impl<S: PageStore> PageRead for SnapRead<'_, S> {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        read_cached(self.inner, no, kind).await
    }

    async fn prefetch(&self, nos: &[PageNo]) -> usize {
        prefetch_cached(self.inner, nos).await
    }
}

/// A consistent, read-only view of the database at one flushed generation.
/// Writes committed after it was taken are not visible through it.
pub struct Snapshot<S: PageStore> {
    pub(super) inner: Arc<Inner<S>>,
    pub(super) meta: Meta,
    feed_epoch: u64,
}

impl<S: PageStore> Drop for Snapshot<S> {
    fn drop(&mut self) {
        let mut sh = self.inner.shared();
        if let Some(c) = sh.readers.get_mut(&self.meta.generation) {
            *c -= 1;
            if *c == 0 {
                sh.readers.remove(&self.meta.generation);
            }
        }
    }
}

/// A document record, or [`Error::CorruptRecord`] naming its key.
fn decode_doc(rec: &[u8], key: &[u8]) -> Result<Document, Error> {
    doc::decode_record(rec).map_err(|e| Error::corrupt_record(key, e))
}

/// A document record that a read met and could not decode: the read skipped
/// it (one bad record never stops the changes feed, a scan or an export) and
/// the database remembers it ([`Database::unreadable_seen`]); the operator
/// lists and moves such records aside with [`Database::find_unreadable`] and
/// [`Database::quarantine_unreadable`] (`outpost repair`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnreadableRecord {
    /// The record's key in the documents tree (the lowercase id), lossy UTF-8.
    pub key: String,
    /// Its etag, when known (from the etag index).
    pub etag: Option<u64>,
    /// The record's length in bytes.
    pub bytes: u64,
    /// Why it does not decode.
    pub error: String,
}

/// How many unreadable records a database remembers (the first met).
pub(super) const MAX_UNREADABLE_SEEN: usize = 1024;

impl<S> Inner<S> {
    /// Remembers a record a read skipped (see [`UnreadableRecord`]).
    pub(super) fn note_unreadable(
        &self,
        key: &[u8],
        etag: Option<u64>,
        bytes: u64,
        e: &impl std::fmt::Display,
    ) {
        let mut seen = self.unreadable.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_UNREADABLE_SEEN && !seen.contains_key(key) {
            return;
        }
        let prev_etag = seen.get(key).and_then(|r| r.etag);
        seen.insert(
            key.to_vec(),
            UnreadableRecord {
                key: String::from_utf8_lossy(key).into_owned(),
                etag: etag.or(prev_etag),
                bytes,
                error: e.to_string(),
            },
        );
    }
}

impl<S: PageStore> Database<S> {
    /// A consistent read-only view of the last committed state.
    pub fn snapshot(&self) -> Snapshot<S> {
        let mut sh = self.inner.shared();
        let meta = sh.visible.clone();
        *sh.readers.entry(meta.generation).or_insert(0) += 1;
        Snapshot {
            inner: self.inner.clone(),
            meta,
            feed_epoch: sh.feed_epoch,
        }
    }
}

/// Defines the read methods of [`Database`]: each reads the last committed
/// state through a snapshot of its own (`db.m(args)` is
/// `db.snapshot().m(args)`); take one [`Snapshot`] for several consistent reads.
macro_rules! read_through_snapshot {
    ($($(#[doc = $doc:literal])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl<S: PageStore> Database<S> {
            $(
                $(#[doc = $doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, Error> {
                    self.snapshot().$name($($arg),*).await
                }
            )*
        }
    };
}

read_through_snapshot! {
    /// Reads a live document (`None` if absent or deleted).
    fn get(&self, id: &str) -> Option<Document>;
    /// Reads the newest version of a document including tombstones.
    fn get_version(&self, id: &str) -> Option<Document>;
    /// Live documents whose id starts with `prefix` (case-insensitive), in id
    /// order, after the id `after` (for paging), at most `limit`.
    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<Document>;
    /// The ids (as written) of what [`Database::scan`] returns, without
    /// parsing or converting the bodies.
    fn scan_ids(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String>;
    /// Document versions (tombstones included) with etag greater than `since`,
    /// in etag order, at most `limit`.
    fn changes(&self, since: u64, limit: usize) -> Vec<Document>;
    /// [`Database::changes`] with bodies left as JSON text.
    fn changes_raw(&self, since: u64, limit: usize) -> Vec<doc::RawDoc>;
    /// Live documents of a collection (case-insensitive), in id order, after `after`.
    fn by_collection(&self, collection: &str, after: Option<&str>, limit: usize) -> Vec<Document>;
    /// Collections with their live document counts, by name.
    fn collections(&self) -> Vec<(String, u64)>;
    /// Conflicted documents (each with its concurrent versions in
    /// [`Document::conflicts`]), in id order, after the id `after`.
    fn conflicts(&self, after: Option<&str>, limit: usize) -> Vec<Document>;
    /// The value of a local record (see [`super::Batch::set_local`]).
    fn get_local(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Local records whose key starts with `prefix`, in key order.
    fn scan_locals(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// A read of documents handed to its caller as one JSON array text to
/// parse ([`doc::spliced_array`]: the stored bodies, not parsed by the
/// engine), or parsed by the engine when that text cannot be made or does
/// not parse.
#[derive(Debug)]
pub enum Spliced<T> {
    /// What the caller's `parse` made of the spliced text.
    Text(T),
    /// The documents as the engine's own read returns them: a body did
    /// not splice or the text did not parse, so the engine parsed each
    /// body itself, in the same snapshot. What its own read does with a
    /// body that does not parse holds: a `get` is
    /// [`Error::CorruptRecord`]; a scan or the changes feed skips and
    /// remembers it ([`UnreadableRecord`]) and reads on to fill its page.
    Parsed(Vec<Document>),
}

/// Where a spliced read's pages come from, and how far it has read.
enum Pages<'a> {
    /// Live documents whose id starts with the prefix, after the id.
    Ids(&'a str, Option<String>),
    /// The changes feed after the etag.
    Feed(u64),
}

/// The spliced reads ([`Spliced`]): [`Database::get`], [`Database::scan`]
/// and [`Database::changes`] for a caller that parses JSON faster than the
/// engine does (the bindings, with `JSON.parse`). Each reads through a
/// snapshot of its own.
impl<S: PageStore> Database<S> {
    /// [`Database::get`], spliced: `None` if absent or deleted.
    pub async fn get_spliced<T>(
        &self,
        id: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<Spliced<T>>, Error> {
        self.snapshot().get_spliced(id, parse).await
    }

    /// [`Database::scan`], spliced.
    pub async fn scan_spliced<T>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Spliced<T>, Error> {
        self.snapshot()
            .scan_spliced(prefix, after, limit, parse)
            .await
    }

    /// [`Database::changes`], spliced.
    pub async fn changes_spliced<T>(
        &self,
        since: u64,
        limit: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Spliced<T>, Error> {
        self.snapshot().changes_spliced(since, limit, parse).await
    }
}

impl<S: PageStore> Snapshot<S> {
    pub(super) fn reader(&self) -> SnapRead<'_, S> {
        SnapRead { inner: &self.inner }
    }

    /// The etag of the last write visible in this snapshot.
    pub fn last_etag(&self) -> u64 {
        self.meta.last_etag
    }

    /// A number of this open database handle that moves on whenever a
    /// commit changes its documents or its changes feed (a write, a purge,
    /// a compaction, another process's commits), and not when a commit
    /// changes only local records: two snapshots of one handle with the
    /// same feed epoch read the same documents and the same changes feed.
    pub fn feed_epoch(&self) -> u64 {
        self.feed_epoch
    }

    /// Number of live documents in this snapshot.
    pub fn count(&self) -> u64 {
        self.meta.doc_count
    }

    /// Reads a live document.
    pub async fn get(&self, id: &str) -> Result<Option<Document>, Error> {
        Ok(self
            .get_version(id)
            .await?
            .filter(|d| !d.meta.flags.is_tombstone()))
    }

    /// Reads the newest version of a document including tombstones.
    pub async fn get_version(&self, id: &str) -> Result<Option<Document>, Error> {
        doc::validate_id(id)?;
        let key = doc::id_key(id);
        match btree::get(&self.reader(), self.meta.root(Tree::Docs), &key).await? {
            Some(rec) => Ok(Some(decode_doc(&rec, &key)?)),
            None => Ok(None),
        }
    }

    /// See [`Database::scan`].
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        self.scan_within(prefix, after, limit, usize::MAX).await
    }

    /// [`Snapshot::scan`] that also ends its page once the stored records
    /// read hold `max_bytes` (the document that reaches it included, so a
    /// page has at least one document when any remains): a page whose
    /// memory follows a budget whatever the documents' sizes (up to
    /// [`crate::doc::MAX_BODY_BYTES`] each). A short page does not mean the
    /// end; an empty one does.
    pub async fn scan_within(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Document>, Error> {
        let limit = (limit, max_bytes);
        self.scan_live(prefix, after, limit, doc::decode_record, |d| {
            d.meta.flags.is_tombstone()
        })
        .await
    }

    /// See [`Database::get_spliced`].
    pub async fn get_spliced<T>(
        &self,
        id: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<Spliced<T>>, Error> {
        doc::validate_id(id)?;
        let key = doc::id_key(id);
        let Some(rec) = btree::get(&self.reader(), self.meta.root(Tree::Docs), &key).await? else {
            return Ok(None);
        };
        let d = doc::decode_raw_doc(&rec).map_err(|e| Error::corrupt_record(&key, e))?;
        if d.meta.flags.is_tombstone() {
            return Ok(None);
        }
        if let Some(v) = doc::spliced_array(std::slice::from_ref(&d))
            .as_deref()
            .and_then(parse)
        {
            return Ok(Some(Spliced::Text(v)));
        }
        let d = d
            .into_document()
            .map_err(|e| Error::corrupt_record(&key, e))?;
        Ok(Some(Spliced::Parsed(vec![d])))
    }

    /// See [`Database::scan_spliced`].
    pub async fn scan_spliced<T>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Spliced<T>, Error> {
        let from = Pages::Ids(prefix, after.map(str::to_string));
        self.spliced(from, limit, parse).await
    }

    /// See [`Database::changes_spliced`].
    pub async fn changes_spliced<T>(
        &self,
        since: u64,
        limit: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Spliced<T>, Error> {
        self.spliced(Pages::Feed(since), limit, parse).await
    }

    /// A spliced read of the pages `from` names. When the first does not
    /// splice or parse, the pages are parsed here, filled past a body that
    /// does not parse as the engine's own reads fill theirs (the same walks
    /// again, not `scan`'s or `changes`': another generic instance of a
    /// walk would cost the wasm build more).
    async fn spliced<T>(
        &self,
        mut from: Pages<'_>,
        limit: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Spliced<T>, Error> {
        let mut docs = self.page(&from, limit).await?;
        if let Some(v) = doc::spliced_array(&docs).as_deref().and_then(parse) {
            return Ok(Spliced::Text(v));
        }
        let mut out = Vec::new();
        loop {
            let full = docs.len() == limit - out.len();
            match (&mut from, docs.last()) {
                (Pages::Ids(_, after), Some(d)) => *after = Some(d.id.clone()),
                (Pages::Feed(since), Some(d)) => *since = d.meta.etag,
                (_, None) => {}
            }
            self.parse_or_note(docs, &mut out).await?;
            if !full || out.len() == limit {
                return Ok(Spliced::Parsed(out));
            }
            docs = self.page(&from, limit - out.len()).await?;
        }
    }

    /// At most `want` documents of `from`, bodies as stored (for `Ids`,
    /// the live documents [`Snapshot::scan`] would return).
    async fn page(&self, from: &Pages<'_>, want: usize) -> Result<Vec<doc::RawDoc>, Error> {
        match from {
            Pages::Ids(prefix, after) => {
                let dead = |d: &doc::RawDoc| d.meta.flags.is_tombstone();
                let limit = (want, usize::MAX);
                self.scan_live(prefix, after.as_deref(), limit, doc::decode_raw_doc, dead)
                    .await
            }
            Pages::Feed(since) => self.feed(*since, want, doc::decode_raw_doc).await,
        }
    }

    /// Parses `docs` onto `out`; one whose body does not parse is left out
    /// and remembered, as the engine's parsed reads do ([`UnreadableRecord`]).
    async fn parse_or_note(
        &self,
        docs: Vec<doc::RawDoc>,
        out: &mut Vec<Document>,
    ) -> Result<(), Error> {
        for d in docs {
            let key = doc::id_key(&d.id);
            let etag = d.meta.etag;
            match d.into_document() {
                Ok(d) => out.push(d),
                Err(e) => {
                    // The record's length, read again (a rare path).
                    let root = self.meta.root(Tree::Docs);
                    let rec = btree::get(&self.reader(), root, &key).await?;
                    let bytes = rec.map_or(0, |r| r.len() as u64);
                    self.inner.note_unreadable(&key, Some(etag), bytes, &e);
                }
            }
        }
        Ok(())
    }

    /// A document record as [`btree::scan_values`] loaded it; `None` when
    /// its value's overflow chain is damaged, the record then skipped and
    /// remembered as one that does not decode.
    fn loaded_or_note(
        &self,
        key: &[u8],
        etag: Option<u64>,
        rec: Result<Vec<u8>, Error>,
    ) -> Option<Vec<u8>> {
        match rec {
            Ok(rec) => Some(rec),
            Err(e) => {
                let why = super::repair::damaged_page(&e);
                self.inner.note_unreadable(key, etag, 0, &why);
                None
            }
        }
    }

    /// See [`Database::scan_ids`].
    pub async fn scan_ids(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let found = self
            .scan_live(
                prefix,
                after,
                (limit, usize::MAX),
                doc::decode_record_meta,
                |(_, m)| m.flags.is_tombstone(),
            )
            .await?;
        Ok(found.into_iter().map(|(id, _)| id).collect())
    }

    /// The documents records of ids starting with `prefix` after `after`,
    /// decoded by `decode`, leaving out those `deleted` says are
    /// tombstones, at most `limit.0`, and ending after the one whose stored
    /// record brings the bytes read to `limit.1`; a record that does not
    /// decode is skipped and remembered.
    async fn scan_live<T>(
        &self,
        prefix: &str,
        after: Option<&str>,
        (limit, max_bytes): (usize, usize),
        decode: impl Fn(&[u8]) -> Result<T, doc::RecordError>,
        deleted: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, Error> {
        let pk = doc::id_key(prefix);
        let mut start = pk.clone();
        if let Some(a) = after {
            doc::validate_id(a)?;
            let mut ak = doc::id_key(a);
            ak.push(0);
            start = start.max(ak);
        }
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut bytes = 0usize;
        btree::scan_values(
            &self.reader(),
            self.meta.root(Tree::Docs),
            &start,
            |k, rec| {
                if !k.starts_with(&pk) {
                    return false;
                }
                let Some(rec) = self.loaded_or_note(k, None, rec) else {
                    return true;
                };
                match decode(&rec) {
                    Ok(d) if deleted(&d) => true,
                    Ok(d) => {
                        out.push(d);
                        bytes = bytes.saturating_add(rec.len());
                        out.len() < limit && bytes < max_bytes
                    }
                    Err(e) => {
                        // Skipped, remembered: the scan goes on.
                        self.inner.note_unreadable(k, None, rec.len() as u64, &e);
                        true
                    }
                }
            },
        )
        .await?;
        Ok(out)
    }

    /// Counts the entries of the changes feed after `since` whose id key
    /// (the lowercase id) passes `filter`, reading only the etag index.
    pub async fn count_changes(
        &self,
        since: u64,
        mut filter: impl FnMut(&[u8]) -> bool,
    ) -> Result<u64, Error> {
        let mut n = 0u64;
        if since == u64::MAX {
            return Ok(0);
        }
        btree::scan(
            &self.reader(),
            self.meta.root(Tree::Etags),
            &(since + 1).to_be_bytes(),
            |_, idk| {
                if filter(&idk) {
                    n += 1;
                }
                true
            },
        )
        .await?;
        Ok(n)
    }

    /// See [`Database::changes`].
    pub async fn changes(&self, since: u64, limit: usize) -> Result<Vec<Document>, Error> {
        self.feed(since, limit, doc::decode_record).await
    }

    /// The documents of the changes feed after etag `since`, at most
    /// `limit`, each decoded by `decode` (one that does not decode is
    /// skipped and remembered, see [`Snapshot::load_docs`]).
    async fn feed<T>(
        &self,
        since: u64,
        limit: usize,
        decode: impl Fn(&[u8]) -> Result<T, doc::RecordError>,
    ) -> Result<Vec<T>, Error> {
        if since == u64::MAX {
            return Ok(Vec::new());
        }
        let start = (since + 1).to_be_bytes().to_vec();
        self.load_docs(Tree::Etags, start, &[], limit, "etag", decode)
            .await
    }

    /// The changes feed like [`Snapshot::changes`], with bodies left as JSON
    /// text (nothing parsed): what replication sends.
    ///
    /// A record that does not decode, or holds a body that fails the strict
    /// body check (stored before the check existed: [`doc::decode_raw_doc_checked`]),
    /// is skipped (and remembered, see [`UnreadableRecord`]): the feed goes
    /// on past it, and still returns `limit` documents when the feed holds
    /// that many more. No peer is sent what it would refuse.
    pub async fn changes_raw(&self, since: u64, limit: usize) -> Result<Vec<doc::RawDoc>, Error> {
        self.changes_raw_where(since, limit, |_| true).await
    }

    /// [`Snapshot::changes_raw`] restricted to the documents whose id key
    /// (the lowercase id) passes `keep`, judged on the etag index alone: a
    /// document left out is never read (a narrow edge's catch-up walks the
    /// index, not every document; `crate::sync::feed`).
    pub async fn changes_raw_where(
        &self,
        since: u64,
        limit: usize,
        keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<doc::RawDoc>, Error> {
        if since == u64::MAX {
            return Ok(Vec::new());
        }
        let start = (since + 1).to_be_bytes().to_vec();
        self.load_docs_where(
            Tree::Etags,
            start,
            &[],
            limit,
            "etag",
            doc::decode_raw_doc_checked,
            keep,
        )
        .await
    }

    /// The etag and id key of every document (tombstones included) whose
    /// id key starts with `key_prefix`, in id order, reading only the
    /// record headers; `None` as soon as more than `budget` lie under the
    /// prefix (the caller then walks the changes feed instead). A record
    /// whose header does not decode is skipped and remembered, as the feed
    /// skips it.
    pub async fn etags_under(
        &self,
        key_prefix: &[u8],
        budget: usize,
    ) -> Result<Option<Vec<(u64, Vec<u8>)>>, Error> {
        let mut out = Vec::new();
        let mut over = false;
        btree::scan_values(
            &self.reader(),
            self.meta.root(Tree::Docs),
            key_prefix,
            |k, rec| {
                if !k.starts_with(key_prefix) {
                    return false;
                }
                if out.len() == budget {
                    over = true;
                    return false;
                }
                let Some(rec) = self.loaded_or_note(k, None, rec) else {
                    return true;
                };
                match doc::record_etag(&rec) {
                    Ok(etag) => out.push((etag, k.to_vec())),
                    Err(e) => self.inner.note_unreadable(k, None, rec.len() as u64, &e),
                }
                true
            },
        )
        .await?;
        Ok((!over).then_some(out))
    }

    /// The document of this id key, body left as JSON text; `None` when
    /// absent, or when its record does not decode or fails the strict body
    /// check (skipped and remembered, as [`Snapshot::changes_raw`] does).
    pub async fn raw_doc_by_key(&self, key: &[u8]) -> Result<Option<doc::RawDoc>, Error> {
        let rec = match btree::get(&self.reader(), self.meta.root(Tree::Docs), key).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(None),
            // A damaged page of it: skipped and remembered, as the feed does.
            Err(e @ Error::Corrupt { .. }) => {
                self.inner
                    .note_unreadable(key, None, 0, &super::repair::damaged_page(&e));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match doc::decode_raw_doc_checked(&rec) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                self.inner.note_unreadable(key, None, rec.len() as u64, &e);
                Ok(None)
            }
        }
    }

    /// Reads, decoded by `decode`, up to `limit` documents listed by the
    /// index `tree` from its key `start` on, while its keys start with
    /// `prefix` (the etag index maps etag → id key; the others hold
    /// `prefix` + id key). A record that does not decode is skipped and
    /// remembered, and the walk goes on to fill `limit`; an index entry
    /// without a document is index corruption.
    async fn load_docs<T>(
        &self,
        tree: Tree,
        start: Vec<u8>,
        prefix: &[u8],
        limit: usize,
        what: &str,
        decode: impl Fn(&[u8]) -> Result<T, doc::RecordError>,
    ) -> Result<Vec<T>, Error> {
        self.load_docs_where(tree, start, prefix, limit, what, decode, |_| true)
            .await
    }

    /// [`Snapshot::load_docs`] of the entries whose id key passes `keep`.
    #[allow(clippy::too_many_arguments)]
    async fn load_docs_where<T>(
        &self,
        tree: Tree,
        mut start: Vec<u8>,
        prefix: &[u8],
        limit: usize,
        what: &str,
        decode: impl Fn(&[u8]) -> Result<T, doc::RecordError>,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<T>, Error> {
        let root = self.meta.root(tree);
        let mut out = Vec::new();
        while out.len() < limit {
            let want = limit - out.len();
            // (index key, id key)
            let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            btree::scan(&self.reader(), root, &start, |k, v| {
                if !k.starts_with(prefix) {
                    return false;
                }
                let idk = if tree == Tree::Etags {
                    v
                } else {
                    k[prefix.len()..].to_vec()
                };
                if keep(&idk) {
                    entries.push((k.to_vec(), idk));
                }
                entries.len() < want
            })
            .await?;
            let full = entries.len() == want;
            for (ik, idk) in entries {
                let etag = || {
                    (tree == Tree::Etags)
                        .then(|| ik.as_slice().try_into().ok().map(u64::from_be_bytes))
                        .flatten()
                };
                match btree::get(&self.reader(), self.meta.root(Tree::Docs), &idk).await {
                    Ok(Some(rec)) => match decode(&rec) {
                        Ok(d) => out.push(d),
                        Err(e) => self
                            .inner
                            .note_unreadable(&idk, etag(), rec.len() as u64, &e),
                    },
                    // A page of the record (its overflow chain, or its
                    // leaf) is damaged: skipped and remembered too. A
                    // store error still ends the read.
                    Err(e @ Error::Corrupt { .. }) => {
                        self.inner.note_unreadable(
                            &idk,
                            etag(),
                            0,
                            &super::repair::damaged_page(&e),
                        );
                    }
                    Err(e) => return Err(e),
                    Ok(None) => {
                        return Err(Error::Corrupt {
                            page: root,
                            location: None,
                            reason: format!("{what} index points to a missing document"),
                        });
                    }
                }
                start = ik;
            }
            if !full {
                break;
            }
            // The smallest key after the last one read.
            start.push(0);
        }
        Ok(out)
    }

    /// See [`Database::by_collection`].
    pub async fn by_collection(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        doc::validate_collection(collection)?;
        let mut prefix = coll_key(collection);
        prefix.push(0);
        self.indexed_docs(Tree::Colls, prefix, after, limit, "collection")
            .await
    }

    /// See [`Database::conflicts`].
    pub async fn conflicts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        self.indexed_docs(Tree::Conflicts, Vec::new(), after, limit, "conflict")
            .await
    }

    /// The documents the index `tree` lists under `prefix` (its keys are
    /// `prefix` + id key), in id order, after the id `after`, at most `limit`.
    async fn indexed_docs(
        &self,
        tree: Tree,
        prefix: Vec<u8>,
        after: Option<&str>,
        limit: usize,
        what: &str,
    ) -> Result<Vec<Document>, Error> {
        let mut start = prefix.clone();
        if let Some(a) = after {
            doc::validate_id(a)?;
            start.extend_from_slice(&doc::id_key(a));
            start.push(0);
        }
        self.load_docs(tree, start, &prefix, limit, what, doc::decode_record)
            .await
    }

    /// See [`Database::get_local`].
    pub async fn get_local(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        btree::get(&self.reader(), self.meta.root(Tree::Locals), key).await
    }

    /// What this database knows of database `db`: the highest etag it holds
    /// for it and who introduced it ([`super::Origin`]); `None` if no held
    /// version names it (or it is this database).
    pub async fn origin(&self, db: &crate::cv::DbId) -> Result<Option<super::Origin>, Error> {
        Ok(
            btree::get(&self.reader(), self.meta.root(Tree::Origins), db.as_bytes())
                .await?
                .and_then(|v| super::Origin::decode(&v)),
        )
    }

    /// See [`Database::scan_locals`].
    pub async fn scan_locals(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        btree::scan(
            &self.reader(),
            self.meta.root(Tree::Locals),
            prefix,
            |k, v| {
                if !k.starts_with(prefix) {
                    return false;
                }
                out.push((k.to_vec(), v.to_vec()));
                out.len() < limit
            },
        )
        .await?;
        Ok(out)
    }

    /// See [`Database::collections`].
    pub async fn collections(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut out = Vec::new();
        btree::scan(&self.reader(), self.meta.root(Tree::Stats), b"", |_, v| {
            if let Some(n) = get_u64(&v, 0) {
                out.push((String::from_utf8_lossy(&v[8..]).into_owned(), n));
            }
            true
        })
        .await?;
        Ok(out)
    }
}
