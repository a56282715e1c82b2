//! The meta record (the root of a database: its id, counters, free list and
//! the catalog of named B+trees) and its codec, with the decoders of the
//! older format versions it is upgraded from.
//!
//! ## The catalog
//! Every B+tree of a database is registered once, in the [`catalog!`]
//! invocation below: its [`Tree`] variant (how the code names it) and its
//! stored name (how the meta record names it). The meta record stores one
//! root per registered tree; the integrity check walks every registered tree
//! (reachability, page accounting). Adding a tree is one line there.
//!
//! ## Format versions
//! - 1: fixed fields, roots of `docs`, `etags`, `colls`, `stats`;
//! - 2: version 1 plus the roots of `locals` and `conflicts`;
//! - 3: the counters, then the catalog as a list of (name, root);
//! - 4 (current): the layout of version 3; the catalog has the `origins`
//!   tree, which the upgrade from an older version builds from the documents
//!   held (`super::upgrade`).
//!
//! Older versions are decoded into the same [`Meta`]; the database upgrades
//! them on open by committing the meta in the current format (see
//! `docs/design.md`, "Meta record").

use crate::codec::{Put, Reader, get_u32};
use crate::cv::DbId;
use crate::error::OpenError;
use crate::store::{MAX_META, PAGE_SIZE, PageNo};

/// "OPST", the first four bytes of every meta record.
const META_MAGIC: u32 = 0x5453_504F;
/// The format version this engine writes.
pub(crate) const META_VERSION: u16 = 4;

/// Registers the named trees: one `Variant = "stored name"` line per tree.
macro_rules! catalog {
    ($($(#[doc = $doc:literal])* $tree:ident = $name:literal,)*) => {
        /// A named B+tree of the database (one registration in the catalog).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Tree {
            $($(#[doc = $doc])* $tree,)*
        }

        /// Every tree with its stored name, in catalog order (the order of
        /// [`Tree`]'s variants; a tree's index is `tree as usize`).
        pub(crate) const CATALOG: &[(Tree, &str)] = &[$((Tree::$tree, $name),)*];
    };
}

catalog! {
    /// Id key (lowercase id) → document record ([`crate::doc::encode_record`]).
    Docs = "docs",
    /// Etag (u64 big-endian) → id key: the changes feed, in etag order.
    Etags = "etags",
    /// Collection key + `0x00` + id key → empty: documents by collection.
    Colls = "colls",
    /// Collection key → live count (u64 LE) + the collection's display name.
    Stats = "stats",
    /// Local (non-replicated) records: replication checkpoints and the like.
    Locals = "locals",
    /// Id keys of conflicted documents → empty.
    Conflicts = "conflicts",
    /// Database id (16 bytes) → its high-water mark and owner
    /// ([`super::origins`]).
    Origins = "origins",
    /// Sequence number (u64 big-endian) → audit entry, hash-chained and
    /// append-only ([`super::audit`]).
    Audit = "audit",
    /// Index name → its definition and checkpoint (`super::index`); keys
    /// starting with `0x00` are the index registry's own records.
    IndexDefs = "index_defs",
    /// Index id (u32 big-endian) + encoded key (+ document hash for a
    /// reducing index) + escaped id key + emit number → the emitted value.
    IndexEntries = "index_entries",
    /// Index id + id key → the entries the document emitted (to remove them
    /// when it changes).
    IndexDocs = "index_docs",
    /// Index id + reduce key (+ depth and hash prefix) → a node of the
    /// key's reduce tree: its entry count and reduced result.
    IndexReduce = "index_reduce",
}

/// Number of registered trees.
pub(crate) const TREES: usize = CATALOG.len();

impl Tree {
    /// The name stored in the meta record.
    pub(crate) fn name(self) -> &'static str {
        CATALOG[self as usize].1
    }
}

/// The decoded meta record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) db_id: DbId,
    pub(crate) generation: u64,
    pub(crate) last_etag: u64,
    pub(crate) next_page: u64,
    pub(crate) freelist_head: PageNo,
    pub(crate) freelist_count: u64,
    pub(crate) doc_count: u64,
    pub(crate) tombstone_count: u64,
    /// The root of every registered tree, by `Tree as usize` (0: empty).
    roots: [PageNo; TREES],
}

impl Meta {
    /// The meta of a new, empty database.
    pub(crate) fn new(db_id: DbId) -> Meta {
        Meta {
            db_id,
            generation: 0,
            last_etag: 0,
            next_page: 1,
            freelist_head: 0,
            freelist_count: 0,
            doc_count: 0,
            tombstone_count: 0,
            roots: [0; TREES],
        }
    }

    /// The root page of `tree` (0: the tree is empty).
    pub(crate) fn root(&self, tree: Tree) -> PageNo {
        self.roots[tree as usize]
    }

    /// Sets the root page of `tree`.
    pub(crate) fn set_root(&mut self, tree: Tree, root: PageNo) {
        self.roots[tree as usize] = root;
    }

    /// Every registered tree with its root, in catalog order.
    pub(crate) fn trees(&self) -> impl Iterator<Item = (Tree, PageNo)> + '_ {
        CATALOG.iter().map(|&(t, _)| (t, self.root(t)))
    }

    /// The record in the current format (version [`META_VERSION`]).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        b.put_u32(META_MAGIC);
        b.put_u16(META_VERSION);
        b.put_u32(PAGE_SIZE as u32);
        b.extend_from_slice(self.db_id.as_bytes());
        for v in [
            self.generation,
            self.last_etag,
            self.next_page,
            self.freelist_head,
            self.freelist_count,
            self.doc_count,
            self.tombstone_count,
        ] {
            b.put_u64(v);
        }
        b.put_u16(TREES as u16);
        for (tree, root) in self.trees() {
            let name = tree.name();
            b.put_u8(name.len() as u8);
            b.extend_from_slice(name.as_bytes());
            b.put_u64(root);
        }
        let crc = crc32fast::hash(&b);
        b.put_u32(crc);
        debug_assert!(b.len() <= MAX_META);
        b
    }

    /// Decodes a meta record of any supported version; returns it with the
    /// version it was written in. A version newer than [`META_VERSION`] is
    /// [`OpenError::Unsupported`].
    pub(crate) fn decode(b: &[u8]) -> Result<(Meta, u16), OpenError> {
        let mut r = Reader::new(b);
        let (Ok(magic), Ok(version)) = (r.u32("magic"), r.u16("version")) else {
            return Err(corrupt(format!("{} bytes", b.len())));
        };
        if magic != META_MAGIC {
            return Err(corrupt("bad magic number".into()));
        }
        // A newer engine's layout is unknown: refuse it before reading more.
        if version > META_VERSION || version == 0 {
            return Err(OpenError::Unsupported(format!(
                "database format version {version} (this engine reads versions 1 to \
                 {META_VERSION}; a newer engine wrote it)"
            )));
        }
        if b.len() < 4 + 2 + 4 {
            return Err(corrupt(format!("{} bytes", b.len())));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if Some(crc32fast::hash(body)) != get_u32(crc, 0) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut r = Reader::new(&body[6..]);
        let m = decode_body(&mut r, version).map_err(|e| corrupt(e.to_string()))??;
        if r.remaining() != 0 {
            return Err(corrupt(format!(
                "{} bytes after the version {version} fields",
                r.remaining()
            )));
        }
        // Counters a real database can never reach: the page count and the
        // etags grow by one per page and per version written.
        const MAX_COUNTER: u64 = 1 << 62;
        for (what, v) in [
            ("generation", m.generation),
            ("last etag", m.last_etag),
            ("page count", m.next_page),
            ("free-list count", m.freelist_count),
            ("document count", m.doc_count),
            ("tombstone count", m.tombstone_count),
        ] {
            if v >= MAX_COUNTER {
                return Err(corrupt(format!("{what} {v} out of range")));
            }
        }
        for (tree, root) in m.trees() {
            if root >= m.next_page {
                return Err(corrupt(format!(
                    "{} root {root} beyond page count {}",
                    tree.name(),
                    m.next_page
                )));
            }
        }
        Ok((m, version))
    }
}

fn corrupt(reason: String) -> OpenError {
    OpenError::Corrupt(format!("meta record: {reason}"))
}

/// Decodes the fields after the version number (the outer `Result` is a
/// truncated record, the inner one a bad value).
fn decode_body(
    r: &mut Reader<'_>,
    version: u16,
) -> Result<Result<Meta, OpenError>, crate::codec::Truncated> {
    let ps = r.u32("page size")?;
    if ps as usize != PAGE_SIZE {
        return Ok(Err(OpenError::Unsupported(format!("page size {ps}"))));
    }
    let mut m = Meta::new(DbId(r.array("database id")?));
    m.generation = r.u64("generation")?;
    m.last_etag = r.u64("last etag")?;
    m.next_page = r.u64("page count")?;
    if version < 3 {
        return decode_legacy(r, version, m).map(Ok);
    }
    m.freelist_head = r.u64("free-list head")?;
    m.freelist_count = r.u64("free-list count")?;
    m.doc_count = r.u64("document count")?;
    m.tombstone_count = r.u64("tombstone count")?;
    let n = r.u16("tree count")?;
    let mut seen = [false; TREES];
    for _ in 0..n {
        let len = r.u8("tree name length")?;
        let name = r.take(len as usize, "tree name")?;
        let root = r.u64("tree root")?;
        let Some(&(tree, _)) = CATALOG.iter().find(|(_, n)| n.as_bytes() == name) else {
            // Written by a newer engine that added a tree this one would not
            // maintain: opening it would leave that tree stale.
            return Ok(Err(OpenError::Unsupported(format!(
                "unknown tree {:?} in the meta record (a newer engine wrote it)",
                String::from_utf8_lossy(name)
            ))));
        };
        if std::mem::replace(&mut seen[tree as usize], true) {
            return Ok(Err(corrupt(format!("tree {:?} listed twice", tree.name()))));
        }
        // A registered tree the record does not list is empty.
        m.set_root(tree, root);
    }
    Ok(Ok(m))
}

/// The fixed layouts of versions 1 and 2: after the first three counters,
/// the roots of `docs`, `etags`, `colls`, `stats`, then the free list and the
/// document counters; version 2 appends the roots of `locals` and `conflicts`.
fn decode_legacy(
    r: &mut Reader<'_>,
    version: u16,
    mut m: Meta,
) -> Result<Meta, crate::codec::Truncated> {
    for tree in [Tree::Docs, Tree::Etags, Tree::Colls, Tree::Stats] {
        m.set_root(tree, r.u64(tree.name())?);
    }
    m.freelist_head = r.u64("free-list head")?;
    m.freelist_count = r.u64("free-list count")?;
    m.doc_count = r.u64("document count")?;
    m.tombstone_count = r.u64("tombstone count")?;
    if version >= 2 {
        for tree in [Tree::Locals, Tree::Conflicts] {
            m.set_root(tree, r.u64(tree.name())?);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        let mut m = Meta::new(DbId([3; 16]));
        m.generation = 7;
        m.last_etag = 42;
        m.next_page = 100;
        m.freelist_head = 9;
        m.freelist_count = 4;
        m.doc_count = 30;
        m.tombstone_count = 2;
        for (i, &(t, _)) in CATALOG.iter().enumerate() {
            m.set_root(t, 10 + i as u64);
        }
        m
    }

    /// The version 2 layout, as the engine of that version wrote it.
    fn encode_v2(m: &Meta, version: u16, with_v2_roots: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_u32(META_MAGIC);
        b.put_u16(version);
        b.put_u32(PAGE_SIZE as u32);
        b.extend_from_slice(m.db_id.as_bytes());
        let mut v = vec![
            m.generation,
            m.last_etag,
            m.next_page,
            m.root(Tree::Docs),
            m.root(Tree::Etags),
            m.root(Tree::Colls),
            m.root(Tree::Stats),
            m.freelist_head,
            m.freelist_count,
            m.doc_count,
            m.tombstone_count,
        ];
        if with_v2_roots {
            v.extend([m.root(Tree::Locals), m.root(Tree::Conflicts)]);
        }
        for x in v {
            b.put_u64(x);
        }
        let crc = crc32fast::hash(&b);
        b.put_u32(crc);
        b
    }

    #[test]
    fn current_roundtrip() {
        let m = sample();
        assert_eq!(Meta::decode(&m.encode()).unwrap(), (m, META_VERSION));
    }

    #[test]
    fn versions_1_and_2_decode_into_the_catalog() {
        let mut m = sample();
        // Trees added after version 2 are empty in a version 2 record.
        for t in [
            Tree::Origins,
            Tree::Audit,
            Tree::IndexDefs,
            Tree::IndexEntries,
            Tree::IndexDocs,
            Tree::IndexReduce,
        ] {
            m.set_root(t, 0);
        }
        assert_eq!(
            Meta::decode(&encode_v2(&m, 2, true)).unwrap(),
            (m.clone(), 2)
        );
        let mut v1 = m.clone();
        v1.set_root(Tree::Locals, 0);
        v1.set_root(Tree::Conflicts, 0);
        assert_eq!(Meta::decode(&encode_v2(&m, 1, false)).unwrap(), (v1, 1));
        // A version 1 record with the version 2 length is damaged.
        assert!(matches!(
            Meta::decode(&encode_v2(&m, 1, true)),
            Err(OpenError::Corrupt(_))
        ));
    }

    #[test]
    fn newer_versions_unknown_trees_and_damage_are_refused() {
        let mut b = sample().encode();
        b[4] = META_VERSION as u8 + 1;
        assert!(matches!(Meta::decode(&b), Err(OpenError::Unsupported(_))));
        let mut b = sample().encode();
        let at = b.len() - 4 - 8 - 1;
        b[at] ^= 0x20; // the last letter of the last tree's name
        let crc = crc32fast::hash(&b[..b.len() - 4]);
        let n = b.len();
        crate::codec::set_u32(&mut b, n - 4, crc);
        assert!(matches!(Meta::decode(&b), Err(OpenError::Unsupported(_))));
        let mut b = sample().encode();
        b[30] ^= 1;
        assert!(matches!(Meta::decode(&b), Err(OpenError::Corrupt(_))));
        assert!(matches!(Meta::decode(&b[..5]), Err(OpenError::Corrupt(_))));
        let mut m = sample();
        m.set_root(Tree::Stats, 100);
        assert!(matches!(
            Meta::decode(&m.encode()),
            Err(OpenError::Corrupt(_))
        ));
    }
}
