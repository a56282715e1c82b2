//! Purge orders: what an edge must erase when its read scope narrows or
//! its identity is revoked (`docs/protocol.md` §3 "Purge", docs/security.md).
//!
//! The hub keeps, per identity, device and hub database, a **served
//! record** (local record [`served_key`]): the read prefixes under which it
//! may have sent that device documents (each device of an identity holds
//! its own copies, so each erases and answers for itself) (every read scope it authorized, grown at
//! each session), the number of the last order it issued, and the order
//! awaiting a receipt. At each authentication, [`plan`] compares the served
//! prefixes with the read scope in force: what is served but no longer
//! covered becomes an order (`Purge` frame: erase these prefixes, keep the
//! scope in force). The order is repeated at every session until the edge
//! answers with a signed receipt naming it; then the served prefixes shrink
//! to the scope the order kept. A revoked identity keeps nothing.
//!
//! A **subject purge** (`outpost-hub purge`, [`crate::sync::forget`]) adds
//! its marker's number to the `owed` list of every identity whose served
//! prefixes cover a removed id; the next order to that identity names the
//! removed ids by their hashes ([`crate::db::purged_id_hash`]), and its
//! receipt settles the markers it carried.
//!
//! Everything here is pure (no storage): the hub's shell reads and writes
//! the record in its database through [`crate::sync::driver`].

use crate::codec::{Put, Reader};
use crate::cv::DbId;

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
    /// Ids to erase whatever `keep` says, by their hashes
    /// ([`crate::db::purged_id_hash`]): the documents of subject purges.
    /// Sent on the wire; not stored in the served record (the hub finds
    /// them again from `markers`).
    pub ids: Vec<[u8; 32]>,
    /// The hub's purge markers this order carries (the hub's own
    /// bookkeeping: never sent).
    pub markers: Vec<u64>,
}

impl PurgeOrder {
    /// The engine's scope of this order (what [`crate::Database::purge`]
    /// removes).
    pub fn scope(&self) -> crate::db::PurgeScope {
        crate::db::PurgeScope {
            prefixes: self.prefixes.clone(),
            keep: self.keep.clone(),
            ids: Vec::new(),
            id_hashes: self.ids.clone(),
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
    /// Subject purge markers whose documents this identity may hold and
    /// has not yet confirmed erased (ascending).
    pub owed: Vec<u64>,
}

/// Prefix of the served records.
pub const SERVED_PREFIX: &[u8] = b"sync/served/";

/// Local record key of the served record of `identity`'s device `device`
/// at the hub: `sync/served/<identity>/<device>` (identities hold no `/`).
pub fn served_key(identity: &str, device: &DbId) -> Vec<u8> {
    format!("sync/served/{identity}/{device}").into_bytes()
}

/// Key of an identity's served record as protocol 4 hubs kept it (one per
/// identity, every device together): `sync/served/<identity>`. Still read:
/// a device with no record of its own starts from it (it may hold what
/// that record says), and a subject purge counts it as a holder.
pub fn identity_served_key(identity: &str) -> Vec<u8> {
    format!("sync/served/{identity}").into_bytes()
}

/// Whose a served record key is: the identity, and the device (`None`:
/// a protocol 4 record of the whole identity). `None` for other keys.
pub fn parse_served_key(key: &[u8]) -> Option<(String, Option<DbId>)> {
    let rest = std::str::from_utf8(key.strip_prefix(SERVED_PREFIX)?).ok()?;
    match rest.split_once('/') {
        None => Some((rest.to_string(), None)),
        Some((identity, device)) => Some((identity.to_string(), Some(device.parse().ok()?))),
    }
}

/// Format byte of the served record: 2 adds the owed markers (after the
/// last order number) and the pending order's markers (at its end). A
/// format 1 record (protocol 4 hubs) reads as one with none.
const SERVED_FORMAT: u8 = 2;
/// Most markers one order carries (the rest go in later orders).
pub const MAX_ORDER_MARKERS: usize = 8;
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

fn put_numbers(w: &mut Vec<u8>, list: &[u64]) {
    w.put_u32(list.len() as u32);
    for n in list {
        w.put_u64(*n);
    }
}

fn read_numbers(r: &mut Reader<'_>) -> Option<Vec<u64>> {
    let n = r.u32("count").ok()? as usize;
    if n > MAX_LIST || n > r.remaining() / 8 {
        return None;
    }
    (0..n).map(|_| r.u64("marker").ok()).collect()
}

impl Served {
    /// The stored bytes: format, served prefixes, last order, owed
    /// markers, then the pending order (a flag, its number, reason,
    /// prefixes, keep, markers). Counts are `u32`, numbers `u64`, strings
    /// `u16`-length-prefixed, all little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        w.put_u8(SERVED_FORMAT);
        put_list(&mut w, &self.prefixes);
        w.put_u64(self.last_order);
        put_numbers(&mut w, &self.owed);
        match &self.pending {
            None => w.put_u8(0),
            Some(o) => {
                w.put_u8(1);
                w.put_u64(o.order);
                w.put_bytes16(o.reason.as_bytes());
                put_list(&mut w, &o.prefixes);
                put_list(&mut w, &o.keep);
                put_numbers(&mut w, &o.markers);
            }
        }
        w
    }

    /// Decodes a stored record; `None` when it is not one (the caller treats
    /// an unreadable record as "served everything": see [`Served::unknown`]).
    pub fn decode(b: &[u8]) -> Option<Served> {
        let mut r = Reader::new(b);
        let format = r.u8("format").ok()?;
        if !(1..=SERVED_FORMAT).contains(&format) {
            return None;
        }
        let prefixes = read_list(&mut r)?;
        let last_order = r.u64("last order").ok()?;
        let owed = if format >= 2 {
            read_numbers(&mut r)?
        } else {
            Vec::new()
        };
        let pending = match r.u8("pending").ok()? {
            0 => None,
            1 => {
                let order = r.u64("order").ok()?;
                let reason = String::from_utf8(r.bytes16("reason").ok()?.to_vec()).ok()?;
                let prefixes = read_list(&mut r)?;
                let keep = read_list(&mut r)?;
                let markers = if format >= 2 {
                    read_numbers(&mut r)?
                } else {
                    Vec::new()
                };
                Some(PurgeOrder {
                    order,
                    reason,
                    prefixes,
                    keep,
                    ids: Vec::new(),
                    markers,
                })
            }
            _ => return None,
        };
        (r.remaining() == 0).then_some(Served {
            prefixes,
            last_order,
            pending,
            owed,
        })
    }

    /// What to assume when the stored record cannot be read: the identity
    /// may hold anything (so an order covers every id).
    pub fn unknown() -> Served {
        Served {
            prefixes: vec![String::new()],
            last_order: 0,
            pending: None,
            owed: Vec::new(),
        }
    }

    /// Whether this identity may hold the document with id key `key`.
    pub fn covers(&self, key: &str) -> bool {
        covered(&self.prefixes, key)
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
    let markers: Vec<u64> = old.owed.iter().take(MAX_ORDER_MARKERS).copied().collect();
    if lost.is_empty() && markers.is_empty() {
        // Nothing left the scope (or a widened scope covers it again): an
        // order still pending is moot.
        served.pending = None;
        return Plan {
            served,
            order: None,
        };
    }
    let reason = if revoked {
        "revoked"
    } else if !lost.is_empty() {
        "narrowed"
    } else {
        "purged"
    };
    let keep = read.to_vec();
    let order = match &old.pending {
        Some(p)
            if p.prefixes == lost
                && p.keep == keep
                && p.reason == reason
                && p.markers == markers =>
        {
            p.clone()
        }
        _ => {
            served.last_order = old.last_order.saturating_add(1);
            PurgeOrder {
                order: served.last_order,
                reason: reason.into(),
                prefixes: lost,
                keep,
                ids: Vec::new(),
                markers,
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
/// (plus nothing: the next session grows them again), the markers it
/// carried are settled, and nothing is pending; a receipt for another
/// order changes nothing (`None`).
pub fn after_receipt(old: &Served, order: u64) -> Option<Served> {
    let p = old.pending.as_ref().filter(|p| p.order == order)?;
    Some(Served {
        prefixes: p.keep.clone(),
        last_order: old.last_order,
        pending: None,
        owed: old
            .owed
            .iter()
            .filter(|m| !p.markers.contains(m))
            .copied()
            .collect(),
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
                ..PurgeOrder::default()
            }),
            owed: vec![],
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
                ids: vec![],
                markers: vec![4, 7],
            }),
            owed: vec![4, 7, 9],
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
            vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn a_format_1_record_of_protocol_4_hubs_still_reads() {
        // Fixture: what a protocol 4 hub stored (format 1: no owed markers,
        // no markers in the pending order): prefixes ["a/"], last order 3,
        // pending order 3 "narrowed" erasing ["a/"] keeping [].
        let mut b = vec![1, 1, 0, 0, 0, 2, 0, b'a', b'/'];
        b.extend_from_slice(&3u64.to_le_bytes());
        b.push(1);
        b.extend_from_slice(&3u64.to_le_bytes());
        b.extend_from_slice(&[8, 0]);
        b.extend_from_slice(b"narrowed");
        b.extend_from_slice(&[1, 0, 0, 0, 2, 0, b'a', b'/', 0, 0, 0, 0]);
        let s = Served::decode(&b).expect("format 1 reads");
        assert_eq!(
            s,
            Served {
                prefixes: v(&["a/"]),
                last_order: 3,
                pending: Some(PurgeOrder {
                    order: 3,
                    reason: "narrowed".into(),
                    prefixes: v(&["a/"]),
                    ..PurgeOrder::default()
                }),
                owed: vec![],
            }
        );
        // Written back, it is format 2 and reads the same.
        assert_eq!(s.encode()[0], 2);
        assert_eq!(Served::decode(&s.encode()), Some(s));
        // An unknown format is refused.
        let mut future = b.clone();
        future[0] = 3;
        assert_eq!(Served::decode(&future), None);
    }

    #[test]
    fn owed_markers_make_an_order_that_the_receipt_settles() {
        let old = Served {
            prefixes: v(&["notes/"]),
            last_order: 2,
            owed: vec![5, 6],
            ..Served::default()
        };
        let p = plan(&old, &v(&["notes/"]), false);
        let o = p.order.clone().unwrap();
        assert_eq!(
            (
                o.order,
                o.reason.as_str(),
                o.prefixes.len(),
                o.markers.clone()
            ),
            (3, "purged", 0, vec![5, 6])
        );
        assert_eq!(o.keep, v(&["notes/"]));
        // Repeated while unanswered.
        assert_eq!(plan(&p.served, &v(&["notes/"]), false).order, Some(o));
        // A marker added meanwhile makes a new order with both.
        let mut more = p.served.clone();
        more.owed.push(8);
        let q = plan(&more, &v(&["notes/"]), false).order.unwrap();
        assert_eq!((q.order, q.markers), (4, vec![5, 6, 8]));
        // The receipt of order 3 settles 5 and 6 (and not 8).
        assert_eq!(after_receipt(&more, 3).unwrap().owed, vec![8]);
        let settled = after_receipt(&p.served, 3).unwrap();
        assert!(settled.owed.is_empty());
        assert_eq!(plan(&settled, &v(&["notes/"]), false).order, None);
        // A narrowing and owed markers travel in one order.
        let both = plan(&old, &v(&["notes/a/"]), false).order.unwrap();
        assert_eq!(
            (both.reason.as_str(), both.prefixes, both.markers),
            ("narrowed", v(&["notes/"]), vec![5, 6])
        );
        // At most MAX_ORDER_MARKERS per order.
        let many = Served {
            owed: (1..=20).collect(),
            ..old
        };
        let m = plan(&many, &v(&["notes/"]), false).order.unwrap();
        assert_eq!(
            m.markers,
            (1..=MAX_ORDER_MARKERS as u64).collect::<Vec<_>>()
        );
    }
}
