//! The rules of `docs/protocol.md` §5 the hub machine checks on every
//! pushed document before anything is stored (the rules that need the
//! stored data run in the transaction: `crate::db::remote`).

use std::collections::HashSet;

use super::{Grant, HubSession, MAX_PUSH_DOCS};
use crate::doc::{self, MAX_BODY_BYTES, MAX_VERSIONS};
use crate::sync::check_canonical;
use crate::sync::frame::WireDoc;
use crate::sync::violation::Violation;

impl HubSession {
    /// Every rule of `docs/protocol.md` §5, on every document, before any is
    /// stored; the first one broken.
    pub(super) fn check_push(&self, g: &Grant, docs: &[WireDoc]) -> Result<(), Violation> {
        if docs.len() > MAX_PUSH_DOCS {
            return Err(Violation::TooManyDocuments { count: docs.len() });
        }
        let mut seen = HashSet::with_capacity(docs.len());
        for d in docs {
            let id = || d.id.clone();
            if let Err(e) = check_canonical(&d.id) {
                return Err(Violation::InvalidId {
                    id: id(),
                    reason: e.to_string(),
                });
            }
            if !g.write.allows(&d.id) {
                return Err(Violation::WriteDenied {
                    id: id(),
                    identity: g.identity.clone(),
                    prefixes: g.write.to_string(),
                });
            }
            if !seen.insert(doc::id_key(&d.id)) {
                return Err(Violation::DuplicateId { id: id() });
            }
            if let Some(c) = &d.collection
                && let Err(e) = doc::validate_collection(c)
            {
                return Err(Violation::InvalidCollection {
                    id: id(),
                    reason: e.to_string(),
                });
            }
            if d.versions.is_empty() || d.versions.len() > MAX_VERSIONS {
                return Err(Violation::VersionCount {
                    id: id(),
                    count: d.versions.len(),
                });
            }
            for v in &d.versions {
                if v.change_vector.is_empty() {
                    return Err(Violation::EmptyChangeVector { id: id() });
                }
                // The hub's own entry: at most what this edge was sent.
                let claimed = v.change_vector.get(&self.hub_db_id);
                if claimed > self.seen_upto {
                    return Err(Violation::ForgedChangeVector {
                        id: id(),
                        claimed,
                        seen_upto: self.seen_upto,
                    });
                }
                if v.deleted {
                    if !v.body.is_empty() {
                        return Err(Violation::DeletionWithBody { id: id() });
                    }
                } else if v.body.len() > MAX_BODY_BYTES {
                    return Err(Violation::BodyTooLarge {
                        id: id(),
                        bytes: v.body.len(),
                    });
                } else if let Err(e) = crate::body::check_body(&v.body) {
                    if e.rule() == "not_object" {
                        return Err(Violation::BodyNotObject { id: id() });
                    }
                    return Err(Violation::InvalidBody {
                        id: id(),
                        rule: e.rule(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}
