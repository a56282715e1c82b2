//! PLACEHOLDER (replaced by the purge-engine branch at merge).

use crate::error::Error;
use crate::store::PageStore;

use super::Database;

/// Which documents a purge removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeScope {
    /// Prefixes.
    pub prefixes: Vec<String>,
    /// Keep.
    pub keep: Vec<String>,
    /// Ids.
    pub ids: Vec<String>,
}

/// What a purge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeReport {
    /// Removed.
    pub removed: u64,
    /// Hash.
    pub ids_hash: [u8; 32],
    /// Pages.
    pub pages_erased: u64,
}

impl<S: PageStore> Database<S> {
    /// Placeholder.
    pub async fn purge(&self, _scope: &PurgeScope) -> Result<PurgeReport, Error> {
        Err(Error::Closed)
    }
}
