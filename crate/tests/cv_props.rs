//! Property tests of change vectors: the partial-order laws of `compare`,
//! the lattice laws of `merge`, round trips, and panic-freedom of parsers.

// Native only: uses proptest or the file store (wasm32 tests run in a browser).
#![cfg(not(target_arch = "wasm32"))]

use outpost::cv::{ChangeVector, CvOrder, DbId};
use proptest::prelude::*;

/// A small pool of ids so that generated vectors overlap.
fn db_id() -> impl Strategy<Value = DbId> {
    (0u8..4).prop_map(|n| DbId([n.wrapping_mul(37).wrapping_add(1); 16]))
}

/// Small etags (so entries often tie) plus occasional extremes.
fn etag() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..4, 1 => Just(u64::MAX), 1 => any::<u64>()]
}

fn cv() -> impl Strategy<Value = ChangeVector> {
    proptest::collection::vec((db_id(), etag()), 0..6)
        .prop_map(|e| ChangeVector::from_entries(e).expect("small vectors are valid"))
}

fn mirror(o: CvOrder) -> CvOrder {
    match o {
        CvOrder::Newer => CvOrder::Older,
        CvOrder::Older => CvOrder::Newer,
        o => o,
    }
}

/// Entrywise `a >= b`, computed naively as a reference.
fn naive_dominates(a: &ChangeVector, b: &ChangeVector) -> bool {
    b.entries().iter().all(|(d, e)| a.get(d) >= *e)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold(a in cv()) {
        let e = a.entries();
        prop_assert!(e.windows(2).all(|w| w[0].0 < w[1].0));
        prop_assert!(e.iter().all(|x| x.1 >= 1));
    }

    #[test]
    fn compare_reflexive(a in cv()) {
        prop_assert_eq!(a.compare(&a), CvOrder::Equal);
        prop_assert!(a.dominates(&a));
    }

    #[test]
    fn compare_antisymmetric(a in cv(), b in cv()) {
        prop_assert_eq!(a.compare(&b), mirror(b.compare(&a)));
        if a.dominates(&b) && b.dominates(&a) {
            prop_assert_eq!(&a, &b);
        }
        prop_assert_eq!(a.compare(&b) == CvOrder::Equal, a == b);
    }

    #[test]
    fn compare_matches_naive(a in cv(), b in cv()) {
        prop_assert_eq!(a.dominates(&b), naive_dominates(&a, &b));
        let expected = match (naive_dominates(&a, &b), naive_dominates(&b, &a)) {
            (true, true) => CvOrder::Equal,
            (true, false) => CvOrder::Newer,
            (false, true) => CvOrder::Older,
            (false, false) => CvOrder::Concurrent,
        };
        prop_assert_eq!(a.compare(&b), expected);
    }

    #[test]
    fn dominance_transitive(a in cv(), b in cv(), c in cv()) {
        // Build chains so the premise holds often: a ≤ a∪b ≤ a∪b∪c.
        let ab = a.merge(&b);
        let abc = ab.merge(&c);
        prop_assert!(abc.dominates(&ab) && ab.dominates(&a) && abc.dominates(&a));
        // And on arbitrary triples.
        if c.dominates(&b) && b.dominates(&a) {
            prop_assert!(c.dominates(&a));
        }
    }

    #[test]
    fn merge_least_upper_bound(a in cv(), b in cv(), c in cv()) {
        let m = a.merge(&b);
        prop_assert!(m.dominates(&a));
        prop_assert!(m.dominates(&b));
        // Any upper bound of a and b dominates their merge.
        let upper = c.merge(&a).merge(&b);
        prop_assert!(upper.dominates(&m));
        if c.dominates(&a) && c.dominates(&b) {
            prop_assert!(c.dominates(&m));
        }
    }

    #[test]
    fn merge_lattice_laws(a in cv(), b in cv(), c in cv()) {
        prop_assert_eq!(a.merge(&b), b.merge(&a));
        prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
        prop_assert_eq!(a.merge(&a), a.clone());
        prop_assert_eq!(a.merge(&ChangeVector::new()), a);
    }

    #[test]
    fn set_is_merge_of_singleton(a in cv(), d in db_id(), e in etag()) {
        let single = ChangeVector::from_entries([(d, e)]).unwrap();
        prop_assert_eq!(a.with(d, e), a.merge(&single));
    }

    #[test]
    fn text_roundtrip(a in cv()) {
        let t = a.to_text();
        prop_assert_eq!(ChangeVector::parse_text(&t).unwrap(), a.clone());
        let spaced = t.replace(',', ", ");
        prop_assert_eq!(ChangeVector::parse_text(&spaced).unwrap(), a.clone());
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<ChangeVector>(&json).unwrap(), a);
    }

    #[test]
    fn binary_roundtrip(a in cv(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut buf = Vec::new();
        a.encode(&mut buf);
        prop_assert_eq!(buf.len(), a.encoded_len());
        buf.extend_from_slice(&tail);
        let (b, n) = ChangeVector::decode(&buf).unwrap();
        prop_assert_eq!(b, a.clone());
        prop_assert_eq!(n, a.encoded_len());
        for k in 0..a.encoded_len() {
            prop_assert!(ChangeVector::decode(&buf[..k]).is_err());
        }
    }

    #[test]
    fn dbid_text_roundtrip(bytes in any::<[u8; 16]>()) {
        let d = DbId(bytes);
        let s = d.to_string();
        prop_assert_eq!(s.len(), 22);
        prop_assert_eq!(s.parse::<DbId>().unwrap(), d);
    }

    #[test]
    fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((v, n)) = ChangeVector::decode(&bytes) {
            prop_assert!(n <= bytes.len());
            let mut re = Vec::new();
            v.encode(&mut re);
            prop_assert_eq!(&re[..], &bytes[..n]);
        }
    }

    #[test]
    fn decode_small_counts_never_panics(n in 0u16..5, bytes in proptest::collection::vec(any::<u8>(), 0..130)) {
        let mut buf = n.to_le_bytes().to_vec();
        buf.extend_from_slice(&bytes);
        let _ = ChangeVector::decode(&buf);
    }

    #[test]
    fn parse_text_arbitrary_never_panics(s in any::<String>()) {
        let _ = ChangeVector::parse_text(&s);
        let _ = s.parse::<DbId>();
    }

    #[test]
    fn parse_text_near_valid_never_panics(
        s in "([A-Za-z0-9_=+-]{20,24}:[0-9+-]{0,22}(, ?)?){0,4}"
    ) {
        if let Ok(v) = ChangeVector::parse_text(&s) {
            prop_assert_eq!(ChangeVector::parse_text(&v.to_text()).unwrap(), v);
        }
    }
}
