//! Per-collection rules of the engine, used by both the database and the
//! replication layer: how concurrent versions are settled (conflict policy).
//! Deletion guards and validation rules of collections belong here too.
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        for s in ["latest", "hub-wins", "manual"] {
            assert_eq!(s.parse::<ConflictPolicy>().unwrap().as_str(), s);
        }
        assert!("Latest".parse::<ConflictPolicy>().is_err());
    }
}
