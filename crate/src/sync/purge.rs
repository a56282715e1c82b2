//! Purge orders: what an edge must erase when its read scope narrows or
//! its identity is revoked (`docs/protocol.md` §3 "Purge", docs/security.md).
//!
//! The hub keeps, per identity and hub database, a **served record**
//! (local record [`served_key`]): the read prefixes under which it may have
//! sent that identity documents (every read scope it authorized, grown at
//! each session), the number of the last order it issued, and the order
//! awaiting a receipt. At each authentication, [`plan`] compares the served
//! prefixes with the read scope in force: what is served but no longer
//! covered becomes an order (`Purge` frame: erase these prefixes, keep the
//! scope in force). The order is repeated at every session until the edge
//! answers with a signed receipt naming it; then the served prefixes shrink
//! to the scope the order kept. A revoked identity keeps nothing.
//!
//! Everything here is pure (no storage): the hub's shell reads and writes
//! the record in its database through [`crate::sync::driver`].

use crate::codec::{Put, Reader};

/// An order to erase documents, as the hub sends it (`Purge` frame).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeOrder {
    /// Its number (per identity and hub database, from 1, increasing).
    pub order: u64,
    /// `revoked` or `narrowed`.
    pub reason: String,
    /// Id prefixes to erase (normalised, lowercase; `""` is every id).
    pub prefixes: Vec<String>,
    /// Id prefixes to keep (the read scope in force; empty when revoked).
    pub keep: Vec<String>,
}

impl PurgeOrder {
    /// The engine's scope of this order (what [`crate::Database::purge`]
    /// removes).
    pub fn scope(&self) -> crate::db::PurgeScope {
        crate::db::PurgeScope {
            prefixes: self.prefixes.clone(),
            keep: self.keep.clone(),
            ids: Vec::new(),
        }
    }
}

/// The hub's served record of one identity (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Read prefixes under which the identity may hold documents.
    pub prefixes: Vec<String>,
    /// The last order number issued (0: none).
    pub last_order: u64,
    /// The order awaiting a receipt.
    pub pending: Option<PurgeOrder>,
}

/// Local record key of an identity's served record at the hub.
pub fn served_key(identity: &str) -> Vec<u8> {
    format!("sync/served/{identity}").into_bytes()
}

/// Format byte of the served record.
const SERVED_FORMAT: u8 = 1;
/// Most prefixes per list in a stored record.
const MAX_LIST: usize = 4096;

fn put_list(w: &mut Vec<u8>, list: &[String]) {
    w.put_u32(list.len() as u32);
    for p in list {
        w.put_bytes16(p.as_bytes());
    }
}

fn read_list(r: &mut Reader<'_>) -> Option<Vec<String>> {
    let n = r.u32("count").ok()? as usize;
    if n > MAX_LIST || n > r.remaining() / 2 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let b = r.bytes16("prefix").ok()?;
        out.push(String::from_utf8(b.to_vec()).ok()?);
    }
    Some(out)
}

impl Served {
    /// The stored bytes: format, served prefixes, last order, then the
    /// pending order (a flag, its number, reason, prefixes, keep).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        w.put_u8(SERVED_FORMAT);
        put_list(&mut w, &self.prefixes);
        w.put_u64(self.last_order);
        match &self.pending {
            None => w.put_u8(0),
            Some(o) => {
                w.put_u8(1);
                w.put_u64(o.order);
                w.put_bytes16(o.reason.as_bytes());
                put_list(&mut w, &o.prefixes);
                put_list(&mut w, &o.keep);
            }
        }
        w
    }

    /// Decodes a stored record; `None` when it is not one (the caller treats
    /// an unreadable record as "served everything": see [`Served::unknown`]).
    pub fn decode(b: &[u8]) -> Option<Served> {
        let mut r = Reader::new(b);
        if r.u8("format").ok()? != SERVED_FORMAT {
            return None;
        }
        let prefixes = read_list(&mut r)?;
        let last_order = r.u64("last order").ok()?;
        let pending = match r.u8("pending").ok()? {
            0 => None,
            1 => {
                let order = r.u64("order").ok()?;
                let reason = String::from_utf8(r.bytes16("reason").ok()?.to_vec()).ok()?;
                let prefixes = read_list(&mut r)?;
                let keep = read_list(&mut r)?;
                Some(PurgeOrder {
                    order,
                    reason,
                    prefixes,
                    keep,
                })
            }
            _ => return None,
        };
        (r.remaining() == 0).then_some(Served {
            prefixes,
            last_order,
            pending,
        })
    }

    /// What to assume when the stored record cannot be read: the identity
    /// may hold anything (so an order covers every id).
    pub fn unknown() -> Served {
        Served {
            prefixes: vec![String::new()],
            last_order: 0,
            pending: None,
        }
    }
}

/// Whether `id_prefix` lies under one of `scope` (`""` covers everything).
fn covered(scope: &[String], id_prefix: &str) -> bool {
    scope.iter().any(|q| id_prefix.starts_with(q.as_str()))
}

/// Adds `more` to `list`, keeping it minimal (no prefix under another one)
/// and sorted.
fn union(list: &[String], more: &[String]) -> Vec<String> {
    let mut all: Vec<String> = list.iter().chain(more).cloned().collect();
    all.sort();
    all.dedup();
    let copy = all.clone();
    all.retain(|p| !copy.iter().any(|q| q != p && p.starts_with(q.as_str())));
    all
}

/// What an authentication does to an identity's served record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The record to store (equal to the old one: nothing to write).
    pub served: Served,
    /// The order to send in this session, if any.
    pub order: Option<PurgeOrder>,
}

/// Plans a session of an identity whose served record is `old` and whose
/// read scope in force is `read` (normalised prefixes; `revoked`: no scope
/// at all). The served prefixes grow by `read` (the session may send
/// documents under it); whatever they cover that `read` does not is to be
/// erased: the pending order if it says exactly that, else a new one.
pub fn plan(old: &Served, read: &[String], revoked: bool) -> Plan {
    let read: &[String] = if revoked { &[] } else { read };
    let lost: Vec<String> = old
        .prefixes
        .iter()
        .filter(|p| !covered(read, p))
        .cloned()
        .collect();
    let mut served = old.clone();
    if !revoked {
        served.prefixes = union(&old.prefixes, read);
    }
    if lost.is_empty() {
        // Nothing left the scope (or a widened scope covers it again): an
        // order still pending is moot.
        served.pending = None;
        return Plan {
            served,
            order: None,
        };
    }
    let reason = if revoked { "revoked" } else { "narrowed" };
    let keep = read.to_vec();
    let order = match &old.pending {
        Some(p) if p.prefixes == lost && p.keep == keep && p.reason == reason => p.clone(),
        _ => {
            served.last_order = old.last_order.saturating_add(1);
            PurgeOrder {
                order: served.last_order,
                reason: reason.into(),
                prefixes: lost,
                keep,
            }
        }
    };
    served.pending = Some(order.clone());
    Plan {
        served,
        order: Some(order),
    }
}

/// The served record after a receipt for order `order`: when it answers
/// the pending order, the served prefixes become what that order kept
/// (plus nothing: the next session grows them again) and nothing is
/// pending; a receipt for another order changes nothing (`None`).
pub fn after_receipt(old: &Served, order: u64) -> Option<Served> {
    let p = old.pending.as_ref().filter(|p| p.order == order)?;
    Some(Served {
        prefixes: p.keep.clone(),
        last_order: old.last_order,
        pending: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_first_session_records_its_scope_and_orders_nothing() {
        let p = plan(&Served::default(), &v(&["a/"]), false);
        assert_eq!(p.order, None);
        assert_eq!(p.served.prefixes, v(&["a/"]));
        assert_eq!(p.served.last_order, 0);
    }

    #[test]
    fn narrowing_orders_the_lost_prefixes_and_keeps_the_new_scope() {
        let old = Served {
            prefixes: v(&["clinic/", "x/"]),
            ..Served::default()
        };
        let p = plan(&old, &v(&["clinic/boston/", "x/"]), false);
        let o = p.order.clone().unwrap();
        assert_eq!(o.order, 1);
        assert_eq!(o.reason, "narrowed");
        assert_eq!(o.prefixes, v(&["clinic/"]));
        assert_eq!(o.keep, v(&["clinic/boston/", "x/"]));
        // The same plan again repeats the same order (no new number).
        let again = plan(&p.served, &v(&["clinic/boston/", "x/"]), false);
        assert_eq!(again.order, Some(o.clone()));
        assert_eq!(again.served, p.served);
        // The receipt settles it; the next session orders nothing.
        let settled = after_receipt(&p.served, 1).unwrap();
        assert_eq!(settled.prefixes, v(&["clinic/boston/", "x/"]));
        assert_eq!(
            plan(&settled, &v(&["clinic/boston/", "x/"]), false).order,
            None
        );
        // A receipt for another order changes nothing.
        assert_eq!(after_receipt(&p.served, 2), None);
    }

    #[test]
    fn revocation_erases_everything_served() {
        let old = Served {
            prefixes: v(&["a/", "b/"]),
            ..Served::default()
        };
        let p = plan(&old, &v(&["a/"]), true);
        let o = p.order.unwrap();
        assert_eq!(
            (o.reason.as_str(), o.prefixes, o.keep),
            ("revoked", v(&["a/", "b/"]), vec![])
        );
        // Revocation does not grow the served prefixes.
        assert_eq!(p.served.prefixes, v(&["a/", "b/"]));
    }

    #[test]
    fn a_widened_scope_makes_a_pending_order_moot() {
        let old = Served {
            prefixes: v(&["a/b/", "c/"]),
            last_order: 3,
            pending: Some(PurgeOrder {
                order: 3,
                reason: "narrowed".into(),
                prefixes: v(&["c/"]),
                keep: v(&["a/b/"]),
            }),
        };
        let p = plan(&old, &v(&["a/", "c/"]), false);
        assert_eq!(p.order, None);
        assert_eq!(p.served.pending, None);
        assert_eq!(p.served.prefixes, v(&["a/", "c/"]));
        assert_eq!(p.served.last_order, 3);
        // A different narrowing issues a new number.
        let q = plan(&old, &v(&["a/b/"]), false);
        assert_eq!(q.order.as_ref().unwrap().order, 3);
        let r = plan(&old, &v(&[]), false);
        assert_eq!(r.order.unwrap().order, 4);
    }

    #[test]
    fn the_record_roundtrips_and_refuses_damage() {
        let s = Served {
            prefixes: v(&["", "a/"]),
            last_order: 9,
            pending: Some(PurgeOrder {
                order: 9,
                reason: "revoked".into(),
                prefixes: v(&["a/"]),
                keep: vec![],
            }),
        };
        let b = s.encode();
        assert_eq!(Served::decode(&b), Some(s.clone()));
        for k in 0..b.len() {
            assert_eq!(Served::decode(&b[..k]), None, "truncated at {k}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Served::decode(&longer), None);
        // Fixed bytes of an empty record (wasm32 and x86_64 alike).
        assert_eq!(
            Served::default().encode(),
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
