//! The rules a pushed batch can break (`docs/protocol.md` §5), as a typed
//! value: one variant per rule.
//!
//! On the wire a refusal is a `PushRejected { code, id, rule, message }`.
//! [`Violation::code`] is the stable wire code; several rules share one (the
//! five rules of a well-formed document are all `invalid_document`), so
//! clients keep matching on the codes they know while the hub tells the rules
//! apart. [`Violation::rule`] is the rule's text, [`Violation::wire_rule`] the
//! `rule` field as sent, and the `Display` form is the `message` field.
//!
//! The enum is `#[non_exhaustive]`: new rules are added as new variants.

use std::fmt;

use crate::doc::{MAX_BODY_BYTES, MAX_VERSIONS};
use crate::sync::hub::MAX_PUSH_DOCS;

/// Every wire code a [`Violation`] can have (the `code` column of
/// `docs/protocol.md` §5).
pub const VIOLATION_CODES: [&str; 14] = [
    "invalid_id",
    "write_denied",
    "duplicate_id",
    "invalid_document",
    "invalid_change_vector",
    "forged_change_vector",
    "batch_too_large",
    "too_many_versions",
    "document_too_large",
    "change_vector_too_large",
    "unseen_version",
    "delete_forbidden",
    "purged",
    "index_output",
];

/// A rule of `docs/protocol.md` §5 broken by a pushed batch; the hub refuses
/// the whole batch with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The batch has more than [`MAX_PUSH_DOCS`] documents.
    TooManyDocuments {
        /// Documents in the batch.
        count: usize,
    },
    /// The id is not a valid, canonical path.
    InvalidId {
        /// The document.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The id is outside the edge's write prefixes.
    WriteDenied {
        /// The document.
        id: String,
        /// The edge identity.
        identity: String,
        /// Its write prefixes, as displayed.
        prefixes: String,
    },
    /// A write with safety `hub` names a document outside the edge's read
    /// prefixes (a compare-and-set reads what the hub holds: it would be an
    /// existence oracle).
    UnreadableWrite {
        /// The document.
        id: String,
        /// The edge identity.
        identity: String,
    },
    /// The id appears twice in the batch (case-insensitively).
    DuplicateId {
        /// The document (its second occurrence).
        id: String,
    },
    /// The collection name is invalid.
    InvalidCollection {
        /// The document.
        id: String,
        /// What is wrong with the name.
        reason: String,
    },
    /// No version, or more than [`MAX_VERSIONS`].
    VersionCount {
        /// The document.
        id: String,
        /// Versions it has.
        count: usize,
    },
    /// A version has an empty change vector.
    EmptyChangeVector {
        /// The document.
        id: String,
    },
    /// A change vector claims a hub etag beyond what the hub sent this edge
    /// (the etag it acknowledged).
    ForgedChangeVector {
        /// The document.
        id: String,
        /// The hub etag claimed.
        claimed: u64,
        /// The hub etag up to which this edge was sent the changes feed.
        seen_upto: u64,
    },
    /// A deletion carries a body.
    DeletionWithBody {
        /// The document.
        id: String,
    },
    /// A body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge {
        /// The document.
        id: String,
        /// The body's size.
        bytes: usize,
    },
    /// A body is not a JSON object.
    BodyNotObject {
        /// The document.
        id: String,
    },
    /// A body is not what every reader parses: too deep, invalid UTF-8, a
    /// lone surrogate, a number out of range, a duplicate key.
    InvalidBody {
        /// The document.
        id: String,
        /// The body rule broken (`too_deep`, `duplicate_key`, ...).
        rule: &'static str,
        /// Where and how.
        reason: String,
    },
    /// A rule checked in the transaction that would store the document
    /// (caps, causality: `docs/security.md`).
    Refused(crate::db::Refusal),
}

impl Violation {
    /// The stable wire code (one of [`VIOLATION_CODES`]); also the `reason`
    /// label of the hub's `outpost_rejections_total`.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::TooManyDocuments { .. } => "batch_too_large",
            Violation::InvalidId { .. } => "invalid_id",
            Violation::WriteDenied { .. } | Violation::UnreadableWrite { .. } => "write_denied",
            Violation::DuplicateId { .. } => "duplicate_id",
            Violation::InvalidCollection { .. }
            | Violation::VersionCount { .. }
            | Violation::DeletionWithBody { .. }
            | Violation::BodyTooLarge { .. }
            | Violation::BodyNotObject { .. }
            | Violation::InvalidBody { .. } => "invalid_document",
            Violation::EmptyChangeVector { .. } => "invalid_change_vector",
            Violation::ForgedChangeVector { .. } => "forged_change_vector",
            Violation::Refused(r) => r.code(),
        }
    }

    /// The rule's text. For every rule but [`Violation::WriteDenied`] this is
    /// the `rule` field as sent; see [`Violation::wire_rule`].
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::TooManyDocuments { .. } => "at most 500 documents per batch",
            Violation::InvalidId { .. } => {
                "ids are canonical paths: no empty, '.' or '..' segment, no leading or trailing '/', no '\\'"
            }
            Violation::WriteDenied { .. } => "write prefixes",
            Violation::UnreadableWrite { .. } => {
                "a write with safety hub needs read access to its documents"
            }
            Violation::DuplicateId { .. } => "each id at most once per batch",
            Violation::InvalidCollection { .. } => "collection names",
            Violation::VersionCount { .. } => "1 to 32 versions per document",
            Violation::EmptyChangeVector { .. } => "every version has a change vector",
            Violation::ForgedChangeVector { .. } => {
                "a change vector may not claim hub history the hub has not written"
            }
            Violation::DeletionWithBody { .. } => "deletions carry no body",
            Violation::BodyTooLarge { .. } | Violation::BodyNotObject { .. } => {
                "bodies are JSON objects of at most 16777216 bytes"
            }
            Violation::InvalidBody { rule, .. } => rule,
            Violation::Refused(r) => match r {
                crate::db::Refusal::TooManyVersions { .. } => {
                    "at most 32 concurrent versions per document"
                }
                crate::db::Refusal::DocumentTooLarge { .. } => {
                    "a document with all its versions takes at most 25165824 bytes"
                }
                crate::db::Refusal::ChangeVectorTooLarge { .. } => {
                    "a stored change vector has at most 4096 entries"
                }
                crate::db::Refusal::ForgedEntry { .. } => {
                    "a change vector may raise only the entries of databases this edge owns"
                }
                crate::db::Refusal::UnseenVersion { .. } => {
                    "a version may supersede only versions this edge was sent"
                }
                crate::db::Refusal::DbIdTaken { .. } => {
                    "a database id belongs to the identity that first pushed under it"
                }
                crate::db::Refusal::BatchSequence { .. } => {
                    "each signed batch continues the edge's chain"
                }
                crate::db::Refusal::DeleteForbidden { .. } => {
                    "documents of a guarded collection are never deleted nor moved out of it"
                }
                crate::db::Refusal::Purged { .. } => "an id the hub purged is never taken back",
                crate::db::Refusal::IndexOutput { .. } => {
                    "an index's output documents are written by the hub's index alone"
                }
            },
        }
    }

    /// The `rule` field of `PushRejected`: [`Violation::rule`], followed by
    /// the edge's write prefixes for [`Violation::WriteDenied`].
    pub fn wire_rule(&self) -> String {
        match self {
            Violation::WriteDenied { prefixes, .. } => format!("{} {prefixes}", self.rule()),
            _ => self.rule().to_string(),
        }
    }

    /// The document named in the refusal (empty for a rule of the batch).
    pub fn id(&self) -> &str {
        match self {
            Violation::TooManyDocuments { .. } => "",
            Violation::InvalidId { id, .. }
            | Violation::WriteDenied { id, .. }
            | Violation::UnreadableWrite { id, .. }
            | Violation::DuplicateId { id }
            | Violation::InvalidCollection { id, .. }
            | Violation::VersionCount { id, .. }
            | Violation::EmptyChangeVector { id }
            | Violation::ForgedChangeVector { id, .. }
            | Violation::DeletionWithBody { id }
            | Violation::BodyTooLarge { id, .. }
            | Violation::BodyNotObject { id }
            | Violation::InvalidBody { id, .. } => id,
            Violation::Refused(r) => r.id(),
        }
    }
}

/// The `message` field of `PushRejected`: the details.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TooManyDocuments { count } => write!(f, "the batch has {count} documents"),
            Violation::InvalidId { reason, .. } | Violation::InvalidCollection { reason, .. } => {
                f.write_str(reason)
            }
            Violation::WriteDenied { id, identity, .. } => {
                write!(f, "edge {identity:?} may not write {id:?}")
            }
            Violation::UnreadableWrite { id, identity } => write!(
                f,
                "edge {identity:?} may not read {id:?}, so it may not compare-and-set it at the hub"
            ),
            Violation::DuplicateId { id } => write!(f, "{id:?} appears twice"),
            Violation::VersionCount { count, .. } => write!(f, "{count} versions"),
            Violation::EmptyChangeVector { .. } => f.write_str("empty change vector"),
            Violation::ForgedChangeVector {
                claimed, seen_upto, ..
            } => write!(
                f,
                "claims hub etag {claimed}; this edge was sent the hub's changes up to {seen_upto}"
            ),
            Violation::DeletionWithBody { .. } => f.write_str("a deletion with a body"),
            // One message for both, as before the split (the wire is unchanged).
            Violation::BodyTooLarge { .. } | Violation::BodyNotObject { .. } => {
                f.write_str("the body is not a JSON object or is too large")
            }
            Violation::InvalidBody { reason, .. } => f.write_str(reason),
            Violation::Refused(r) => write!(f, "{r}"),
        }
    }
}

impl std::error::Error for Violation {}

// The rule texts spell out these limits.
const _: () = assert!(MAX_PUSH_DOCS == 500);
const _: () = assert!(MAX_VERSIONS == 32);
const _: () = assert!(MAX_BODY_BYTES == 16_777_216);
const _: () = assert!(crate::db::MAX_DOC_BYTES == 25_165_824);
const _: () = assert!(crate::cv::MAX_CV_ENTRIES == 4096);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{MAX_DOC_BYTES, Refusal};

    fn all() -> Vec<Violation> {
        let id = || "notes/a".to_string();
        vec![
            Violation::Refused(Refusal::DbIdTaken {
                db: crate::cv::DbId([2; 16]),
            }),
            Violation::TooManyDocuments { count: 501 },
            Violation::InvalidId {
                id: id(),
                reason: "empty segment".into(),
            },
            Violation::WriteDenied {
                id: id(),
                identity: "e".into(),
                prefixes: "[\"other/\"]".into(),
            },
            Violation::UnreadableWrite {
                id: id(),
                identity: "e".into(),
            },
            Violation::DuplicateId { id: id() },
            Violation::InvalidCollection {
                id: id(),
                reason: "bad name".into(),
            },
            Violation::VersionCount { id: id(), count: 0 },
            Violation::EmptyChangeVector { id: id() },
            Violation::ForgedChangeVector {
                id: id(),
                claimed: 9,
                seen_upto: 3,
            },
            Violation::DeletionWithBody { id: id() },
            Violation::BodyTooLarge {
                id: id(),
                bytes: MAX_BODY_BYTES + 1,
            },
            Violation::BodyNotObject { id: id() },
            Violation::InvalidBody {
                id: id(),
                rule: "duplicate_key",
                reason: "key \"a\" twice".into(),
            },
            Violation::Refused(Refusal::TooManyVersions {
                id: id(),
                count: 33,
            }),
            Violation::Refused(Refusal::DocumentTooLarge {
                id: id(),
                bytes: MAX_DOC_BYTES + 1,
            }),
            Violation::Refused(Refusal::ChangeVectorTooLarge {
                id: id(),
                entries: 4097,
            }),
            Violation::Refused(Refusal::ForgedEntry {
                id: id(),
                db: crate::cv::DbId([1; 16]),
                claimed: 9,
                held: 3,
            }),
            Violation::Refused(Refusal::UnseenVersion { id: id() }),
            Violation::Refused(Refusal::DeleteForbidden {
                id: id(),
                collection: "Invoices".into(),
            }),
            Violation::Refused(Refusal::Purged {
                id: id(),
                marker: 1,
            }),
            Violation::Refused(Refusal::IndexOutput {
                id: id(),
                collection: "Totals".into(),
            }),
        ]
    }

    #[test]
    fn every_violation_has_a_documented_code_a_rule_and_a_message() {
        let all = all();
        for v in &all {
            assert!(!v.code().is_empty(), "{v:?}");
            assert!(VIOLATION_CODES.contains(&v.code()), "{v:?}: {}", v.code());
            assert!(!v.rule().is_empty(), "{v:?}");
            assert!(v.wire_rule().starts_with(v.rule()), "{v:?}");
            assert!(!v.to_string().is_empty(), "{v:?}");
            if !matches!(
                v,
                Violation::TooManyDocuments { .. } | Violation::Refused(Refusal::DbIdTaken { .. })
            ) {
                assert_eq!(v.id(), "notes/a", "{v:?}");
            }
        }
        // Every documented code is used by some rule.
        for c in VIOLATION_CODES {
            assert!(all.iter().any(|v| v.code() == c), "{c} unused");
        }
    }

    #[test]
    fn rule_texts_match_the_limits() {
        let rule = |v: Violation| v.rule();
        assert_eq!(
            rule(Violation::TooManyDocuments { count: 0 }),
            format!("at most {MAX_PUSH_DOCS} documents per batch")
        );
        assert_eq!(
            rule(Violation::VersionCount {
                id: String::new(),
                count: 0
            }),
            format!("1 to {MAX_VERSIONS} versions per document")
        );
        assert_eq!(
            rule(Violation::BodyNotObject { id: String::new() }),
            format!("bodies are JSON objects of at most {MAX_BODY_BYTES} bytes")
        );
    }
}
