//! Per-collection rules of the engine, used by both the database and the
//! replication layer: how concurrent versions are settled (conflict policy)
//! and which collections are never deleted (deletion guards). Validation
//! rules of collections belong here too.
//!
//! The dependency runs one way: `sync` uses this module; the engine never
//! imports `sync`.

use std::fmt;
use std::str::FromStr;

use crate::error::{InputError, clip};

/// How the hub settles concurrent versions of a document in a collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConflictPolicy {
    /// The version that reached the hub last wins (the hub's arrival order;
    /// edge clocks are not trusted). The hub writes a resolution that
    /// supersedes both.
    #[default]
    Latest,
    /// The version the hub already held wins; the hub writes a resolution.
    HubWins,
    /// Every concurrent version is kept; the application lists conflicts and
    /// resolves them (the resolution replicates).
    Manual,
}

impl ConflictPolicy {
    /// The configuration spelling: `latest`, `hub-wins` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Latest => "latest",
            ConflictPolicy::HubWins => "hub-wins",
            ConflictPolicy::Manual => "manual",
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConflictPolicy {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest" => Ok(ConflictPolicy::Latest),
            "hub-wins" => Ok(ConflictPolicy::HubWins),
            "manual" => Ok(ConflictPolicy::Manual),
            other => Err(InputError::InvalidArgument(format!(
                "unknown conflict policy {:?}: expected latest, hub-wins or manual",
                clip(other)
            ))),
        }
    }
}

/// The conflict policy of every collection of a database: named
/// collections (matched case-insensitively) and a default for the others and
/// for documents in no collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    by_collection: std::collections::HashMap<String, ConflictPolicy>,
    default: ConflictPolicy,
}

impl Policies {
    /// A table from `(collection, policy)` pairs and a default.
    pub fn new(
        collections: impl IntoIterator<Item = (String, ConflictPolicy)>,
        default: ConflictPolicy,
    ) -> Policies {
        Policies {
            by_collection: collections
                .into_iter()
                .map(|(c, p)| (c.to_lowercase(), p))
                .collect(),
            default,
        }
    }

    /// The policy of `collection` (`None`: no collection).
    pub fn of(&self, collection: Option<&str>) -> ConflictPolicy {
        collection
            .and_then(|c| self.by_collection.get(&c.to_lowercase()))
            .copied()
            .unwrap_or(self.default)
    }
}

/// Local record key of a database's deletion guards
/// ([`DeletionGuards::encode`]): the engine reads it in every transaction
/// that deletes a document or moves it out of its collection.
pub const GUARDS_KEY: &[u8] = b"policy/guards";

/// Most guarded collections.
pub const MAX_GUARDS: usize = 1024;

/// Local record key, at an edge, of its hub's shared output collections
/// (the outputs of indexes the hub computes, `Welcome` of protocol 9):
/// documents of these collections, or whose id starts with `<collection>/`,
/// are read-only here: the engine refuses local writes to them
/// (`index_output`); they change only by what the hub sends. Stored as a
/// [`CollectionSet`].
pub const HUB_OUTPUTS_KEY: &[u8] = b"policy/hub-outputs";

/// A set of collection names, as a local record stores it: the deletion
/// guards ([`GUARDS_KEY`]) and an edge's read-only hub outputs
/// ([`HUB_OUTPUTS_KEY`]).
pub type CollectionSet = DeletionGuards;

/// Collections whose documents are never deleted (an invoice is cancelled,
/// a payment refunded): a delete, a resolution that deletes, or a change of
/// collection out of one of them is refused with `delete_forbidden` (locally
/// by the engine, at the hub for what edges push). Names match
/// case-insensitively, as collections do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionGuards {
    /// Lowercase collection names, sorted, no duplicates.
    collections: Vec<String>,
}

impl DeletionGuards {
    /// Guards of these collections.
    pub fn new(collections: impl IntoIterator<Item = String>) -> DeletionGuards {
        let mut c: Vec<String> = collections.into_iter().map(|c| c.to_lowercase()).collect();
        c.sort();
        c.dedup();
        c.truncate(MAX_GUARDS);
        DeletionGuards { collections: c }
    }

    /// Whether documents of `collection` may not be deleted.
    pub fn protects(&self, collection: Option<&str>) -> bool {
        collection.is_some_and(|c| self.collections.binary_search(&c.to_lowercase()).is_ok())
    }

    /// The collection of this set that claims the document `id_key` (a
    /// lowercase id) of `collection`: the collection itself, or one whose
    /// name followed by `/` begins the id.
    pub fn claims(&self, id_key: &[u8], collection: Option<&str>) -> Option<&str> {
        self.collections
            .iter()
            .find(|c| {
                collection.is_some_and(|x| x.to_lowercase() == **c)
                    || (id_key.len() > c.len()
                        && id_key.starts_with(c.as_bytes())
                        && id_key[c.len()] == b'/')
            })
            .map(String::as_str)
    }

    /// The guarded collections (lowercase, sorted).
    pub fn collections(&self) -> &[String] {
        &self.collections
    }

    /// Whether nothing is guarded.
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty()
    }

    /// The stored bytes: format 1, `u32` count, each name `u16`-length
    /// prefixed (`crate::codec`).
    pub fn encode(&self) -> Vec<u8> {
        use crate::codec::Put;
        let mut w = Vec::with_capacity(8 + self.collections.len() * 16);
        w.put_u8(1);
        w.put_u32(self.collections.len() as u32);
        for c in &self.collections {
            w.put_bytes16(c.as_bytes());
        }
        w
    }

    /// Decodes a stored record; `None` when it is not one (the caller
    /// refuses to guess: see `crate::db`).
    pub fn decode(b: &[u8]) -> Option<DeletionGuards> {
        let mut r = crate::codec::Reader::new(b);
        if r.u8("format").ok()? != 1 {
            return None;
        }
        let n = r.u32("count").ok()? as usize;
        if n > MAX_GUARDS || n > r.remaining() / 2 {
            return None;
        }
        let mut c = Vec::with_capacity(n);
        for _ in 0..n {
            c.push(String::from_utf8(r.bytes16("collection").ok()?.to_vec()).ok()?);
        }
        (r.remaining() == 0).then(|| DeletionGuards::new(c))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn guards_match_case_insensitively_and_roundtrip() {
        let g = DeletionGuards::new(["Invoices".to_string(), "payments".into(), "INVOICES".into()]);
        assert_eq!(g.collections(), ["invoices", "payments"]);
        assert!(g.protects(Some("invoices")) && g.protects(Some("Payments")));
        assert!(!g.protects(Some("Notes")) && !g.protects(None));
        let b = g.encode();
        assert_eq!(DeletionGuards::decode(&b), Some(g));
        for k in 0..b.len() {
            assert_eq!(DeletionGuards::decode(&b[..k]), None);
        }
        // Fixed bytes (wasm32 and x86_64 alike).
        assert_eq!(
            DeletionGuards::new(["A".to_string()]).encode(),
            vec![1, 1, 0, 0, 0, 1, 0, b'a']
        );
    }

    #[test]
    fn policies_parse() {
        for s in ["latest", "hub-wins", "manual"] {
            assert_eq!(s.parse::<ConflictPolicy>().unwrap().as_str(), s);
        }
        assert!("Latest".parse::<ConflictPolicy>().is_err());
    }
}
