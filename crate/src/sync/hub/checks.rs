//! The rules of `docs/protocol.md` §5 the hub machine checks on every
//! pushed document before anything is stored (the rules that need the
//! stored data run in the transaction: `crate::db::remote`).

use std::collections::HashSet;

use super::{Grant, HubSession, MAX_PUSH_DOCS};
use crate::doc::{self, MAX_BODY_BYTES, MAX_VERSIONS};
use crate::sync::check_canonical;
use crate::sync::frame::{WireDoc, WireWrite};
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
            check_target(g, &d.id, d.collection.as_deref(), false, &mut seen)?;
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
                check_body(&d.id, v.deleted, &v.body)?;
            }
        }
        Ok(())
    }

    /// The rules of `docs/protocol.md` §5 that apply to a `Write` (write
    /// safety `hub`), before it goes to the transaction: canonical ids
    /// inside the write **and read** prefixes, each once, valid
    /// collections and bodies. Its expectations are only compared with
    /// what the hub holds, so no causality rule applies; the transaction
    /// checks the guards, the retired ids and the caps.
    pub(super) fn check_writes(&self, g: &Grant, ops: &[WireWrite]) -> Result<(), Violation> {
        let mut seen = HashSet::with_capacity(ops.len());
        for o in ops {
            check_target(g, &o.id, o.collection.as_deref(), true, &mut seen)?;
            check_body(&o.id, o.deleted, &o.body)?;
        }
        Ok(())
    }
}

/// The rules of a document's id and collection: a canonical id inside the
/// write prefixes (and the read prefixes when `need_read`), once in the
/// batch (`seen`: the id keys so far), a valid collection.
fn check_target(
    g: &Grant,
    id: &str,
    collection: Option<&str>,
    need_read: bool,
    seen: &mut HashSet<Vec<u8>>,
) -> Result<(), Violation> {
    let name = || id.to_string();
    if let Err(e) = check_canonical(id) {
        return Err(Violation::InvalidId {
            id: name(),
            reason: e.to_string(),
        });
    }
    if !g.write.allows(id) {
        return Err(Violation::WriteDenied {
            id: name(),
            identity: g.identity.clone(),
            prefixes: g.write.to_string(),
        });
    }
    if need_read && !g.read.allows(id) {
        return Err(Violation::UnreadableWrite {
            id: name(),
            identity: g.identity.clone(),
        });
    }
    if !seen.insert(doc::id_key(id)) {
        return Err(Violation::DuplicateId { id: name() });
    }
    if let Some(c) = collection
        && let Err(e) = doc::validate_collection(c)
    {
        return Err(Violation::InvalidCollection {
            id: name(),
            reason: e.to_string(),
        });
    }
    Ok(())
}

/// A version's body: none for a deletion, else a JSON object within
/// [`MAX_BODY_BYTES`] that every reader parses.
fn check_body(id: &str, deleted: bool, body: &[u8]) -> Result<(), Violation> {
    let id = || id.to_string();
    if deleted {
        if !body.is_empty() {
            return Err(Violation::DeletionWithBody { id: id() });
        }
    } else if body.len() > MAX_BODY_BYTES {
        return Err(Violation::BodyTooLarge {
            id: id(),
            bytes: body.len(),
        });
    } else if let Err(e) = crate::body::check_body(body) {
        if e.rule() == "not_object" {
            return Err(Violation::BodyNotObject { id: id() });
        }
        return Err(Violation::InvalidBody {
            id: id(),
            rule: e.rule(),
            reason: e.to_string(),
        });
    }
    Ok(())
}
