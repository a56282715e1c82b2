//! Access rules the hub enforces: id prefixes (conflict policies are an
//! engine rule: [`crate::policy`]).
//!
//! Ids are case-insensitive (the engine indexes them lowercase), so prefixes
//! are matched on the lowercase form, on whole path segments: the prefix
//! `patients/dr-7` (or `patients/dr-7/`, the same rule) covers
//! `patients/dr-7` itself and everything under `patients/dr-7/`, never
//! `patients/dr-70/x`. Ids a hub accepts from an edge must also be
//! *canonical* ([`check_canonical`]): no empty, `.` or `..` segment, no
//! leading or trailing `/`, no backslash, so that no consumer that reads
//! ids as paths can be led outside a prefix.

use std::fmt;

use crate::error::{InputError, clip};

/// A normalised list of id prefixes (read or write scope of an edge).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// Lowercase, each ending in `/`; the empty string means "every id".
    norm: Vec<String>,
}

impl Prefixes {
    /// Parses and normalises prefixes. `""`, `"/"` and `"*"` mean every id.
    /// A prefix must itself be canonical (see [`check_canonical`]) once its
    /// trailing `/` is dropped.
    pub fn parse(list: &[String]) -> Result<Prefixes, InputError> {
        let mut norm = Vec::with_capacity(list.len());
        for p in list {
            let t = p.trim_end_matches('/');
            if t.is_empty() || t == "*" {
                norm.push(String::new());
                continue;
            }
            check_canonical(t).map_err(|e| match e {
                InputError::InvalidId { reason, .. } => {
                    InputError::InvalidArgument(format!("invalid prefix {:?}: {reason}", clip(p)))
                }
                other => other,
            })?;
            let mut n = t.to_lowercase();
            n.push('/');
            norm.push(n);
        }
        norm.sort();
        norm.dedup();
        Ok(Prefixes { norm })
    }

    /// Prefixes that allow every id.
    pub fn all() -> Prefixes {
        Prefixes {
            norm: vec![String::new()],
        }
    }

    /// Whether `id` falls inside one of the prefixes.
    pub fn allows(&self, id: &str) -> bool {
        !self.norm.is_empty() && self.allows_key(id.to_lowercase().as_bytes())
    }

    /// [`Prefixes::allows`] of an id given by its key (the lowercase id,
    /// as the engine's indexes hold it: `crate::doc::id_key`).
    pub fn allows_key(&self, key: &[u8]) -> bool {
        self.norm.iter().any(|p| {
            let p = p.as_bytes();
            p.is_empty() || key.starts_with(p) || (key.len() + 1 == p.len() && p.starts_with(key))
        })
    }

    /// Whether every id is allowed.
    pub fn is_all(&self) -> bool {
        self.norm.iter().any(String::is_empty)
    }

    /// The prefix of the list that covers `id`, if any (for error messages).
    pub fn matching(&self, id: &str) -> Option<&str> {
        let lower = id.to_lowercase();
        self.norm
            .iter()
            .find(|p| p.is_empty() || lower.starts_with(p.as_str()))
            .map(String::as_str)
    }

    /// The normalised prefixes (lowercase, each ending in `/`; `""` = all).
    pub fn as_slice(&self) -> &[String] {
        &self.norm
    }

    /// Whether no id is allowed.
    pub fn is_empty(&self) -> bool {
        self.norm.is_empty()
    }
}

impl fmt::Display for Prefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<&str> = self
            .norm
            .iter()
            .map(|p| if p.is_empty() { "*" } else { p.as_str() })
            .collect();
        write!(f, "[{}]", shown.join(", "))
    }
}

/// Checks that an id is canonical as a path: no empty, `.` or `..`
/// segment, no leading or trailing `/`, no backslash. The hub refuses other
/// ids from edges (they are fine in a local database).
pub fn check_canonical(id: &str) -> Result<(), InputError> {
    let bad = |reason| InputError::InvalidId {
        id: clip(id),
        reason,
    };
    crate::doc::validate_id(id)?;
    if id.contains('\\') {
        return Err(bad("backslashes are not allowed in replicated ids"));
    }
    for seg in id.split('/') {
        match seg {
            "" => {
                return Err(bad(
                    "empty path segment (leading, trailing or double '/') in a replicated id",
                ));
            }
            "." | ".." => return Err(bad("'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Prefixes {
        Prefixes::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn prefixes_match_whole_segments_case_insensitively() {
        let r = p(&["patients/dr-7"]);
        assert_eq!(r, p(&["Patients/DR-7/"]));
        assert!(r.allows("patients/dr-7/a"));
        assert!(r.allows("PATIENTS/Dr-7/a"));
        assert!(r.allows("patients/dr-7"));
        assert!(!r.allows("patients/dr-70/a"));
        assert!(!r.allows("patients/dr-"));
        assert!(!r.allows("patients/dr-8/a"));
        assert!(!r.allows("xpatients/dr-7/a"));
        assert_eq!(r.matching("patients/dr-7/a"), Some("patients/dr-7/"));
        assert!(p(&["*"]).allows("anything"));
        assert!(p(&[""]).allows("anything"));
        assert!(!p(&[]).allows("anything"));
    }

    #[test]
    fn bad_prefixes_and_ids_are_refused() {
        for bad in ["a/../b", "a//b", "/a", "a\\b", "./a", "a/."] {
            assert!(
                Prefixes::parse(&[bad.to_string()]).is_err(),
                "prefix {bad:?}"
            );
            assert!(check_canonical(bad).is_err(), "id {bad:?}");
        }
        assert!(check_canonical("a/").is_err());
        assert!(check_canonical("patients/dr-7/x").is_ok());
    }
}
