//! Change vectors: which version of a document each database has seen.
//!
//! A [`ChangeVector`] maps database ids ([`DbId`]) to etags. One vector is
//! *newer* than another when it is at least as large in every entry and not
//! equal; two vectors where neither dominates are *concurrent* (a conflict).
//!
//! Text form: `<dbid>:<etag>,<dbid>:<etag>` with ids in base64url (22 chars,
//! no padding), sorted by id; the empty vector is `""`.
//! Binary form: `u16` LE entry count, then per entry the 16 id bytes and a
//! `u64` LE etag, sorted by id, unique, etags >= 1.
//!
//! Every parser here returns a typed [`InputError`] on bad input; none panics.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::codec::{Put, Reader, Truncated};
use crate::error::{InputError, clip};

/// The base64url alphabet (RFC 4648 §5).
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of a [`DbId`] in its text form.
const DBID_TEXT_LEN: usize = 22;

/// Most entries a change vector read from input (text, binary, or
/// [`ChangeVector::from_entries`]) may hold.
pub const MAX_CV_ENTRIES: usize = 4096;

/// Bytes of one encoded entry: 16 id bytes + u64 etag.
const ENTRY_BYTES: usize = 16 + 8;

/// A 16-byte database id.
///
/// Displayed and parsed as base64url without padding (22 characters). Parsing
/// is canonical: the unused low bits of the last character must be zero, so
/// every id has exactly one text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DbId(pub [u8; 16]);

impl DbId {
    /// A new random id from the platform's secure random source.
    pub fn random() -> DbId {
        let mut b = [0u8; 16];
        crate::platform::random_bytes(&mut b);
        DbId(b)
    }

    /// The raw 16 bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; DBID_TEXT_LEN];
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        let mut n = 0;
        for &b in &self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 6 {
                bits -= 6;
                out[n] = B64[((acc >> bits) & 63) as usize];
                n += 1;
            }
        }
        if bits > 0 {
            out[n] = B64[((acc << (6 - bits)) & 63) as usize];
        }
        // All bytes come from the ASCII alphabet.
        for &c in &out {
            fmt::Write::write_char(f, char::from(c))?;
        }
        Ok(())
    }
}

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

impl FromStr for DbId {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            InputError::InvalidChangeVector(format!("invalid database id {:?}: {why}", clip(s)))
        };
        let bytes = s.as_bytes();
        if bytes.len() != DBID_TEXT_LEN {
            return Err(bad("expected 22 base64url characters"));
        }
        let mut out = [0u8; 16];
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        let mut n = 0;
        for &c in bytes {
            let v = b64_value(c).ok_or_else(|| bad("not a base64url character"))?;
            acc = ((acc << 6) | v) & 0xFFFF;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                if n < 16 {
                    out[n] = (acc >> bits) as u8;
                }
                n += 1;
            }
        }
        // 22 chars = 132 bits = 16 bytes + 4 leftover bits, which must be zero.
        if n != 16 || bits != 4 || acc & 0xF != 0 {
            return Err(bad("non-canonical encoding"));
        }
        Ok(DbId(out))
    }
}

/// How two change vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CvOrder {
    /// Both vectors have the same entries.
    Equal,
    /// The first vector dominates the second and is not equal to it.
    Newer,
    /// The second vector dominates the first and is not equal to it.
    Older,
    /// Neither dominates: each has an entry larger than the other's.
    Concurrent,
}

impl CvOrder {
    /// The order seen from the other side (`Newer` <-> `Older`).
    pub fn reverse(self) -> CvOrder {
        match self {
            CvOrder::Newer => CvOrder::Older,
            CvOrder::Older => CvOrder::Newer,
            o => o,
        }
    }
}

/// A set of (database id, etag) entries, sorted by [`DbId`], unique, every
/// etag >= 1 (an absent entry means etag 0).
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct ChangeVector {
    entries: Vec<(DbId, u64)>,
}

impl ChangeVector {
    /// The empty change vector.
    pub fn new() -> Self {
        ChangeVector {
            entries: Vec::new(),
        }
    }

    /// Builds a vector from entries in any order. Duplicate ids keep the
    /// largest etag; entries with etag 0 are dropped. More than
    /// [`MAX_CV_ENTRIES`] distinct ids is an error.
    pub fn from_entries(it: impl IntoIterator<Item = (DbId, u64)>) -> Result<Self, InputError> {
        let mut entries: Vec<(DbId, u64)> = Vec::new();
        for (db, etag) in it {
            if etag == 0 {
                continue;
            }
            entries.push((db, etag));
            // Bound memory on hostile input; duplicates are collapsed below.
            if entries.len() > 2 * MAX_CV_ENTRIES {
                Self::normalize(&mut entries);
                if entries.len() > MAX_CV_ENTRIES {
                    return Err(too_many(entries.len()));
                }
            }
        }
        Self::normalize(&mut entries);
        if entries.len() > MAX_CV_ENTRIES {
            return Err(too_many(entries.len()));
        }
        Ok(ChangeVector { entries })
    }

    /// Sorts by id and collapses duplicates to their largest etag.
    fn normalize(entries: &mut Vec<(DbId, u64)>) {
        // Sort by id, larger etag first, then keep the first of each id.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
    }

    /// The etag recorded for `db`, or 0 if absent.
    pub fn get(&self, db: &DbId) -> u64 {
        match self.entries.binary_search_by(|e| e.0.cmp(db)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Sets the entry for `db` to `max(current, etag)`. Setting 0 is a no-op.
    ///
    /// This does not enforce [`MAX_CV_ENTRIES`], which bounds input only.
    pub fn set(&mut self, db: DbId, etag: u64) {
        if etag == 0 {
            return;
        }
        match self.entries.binary_search_by(|e| e.0.cmp(&db)) {
            Ok(i) => {
                let cur = &mut self.entries[i].1;
                *cur = (*cur).max(etag);
            }
            Err(i) => self.entries.insert(i, (db, etag)),
        }
    }

    /// A copy of this vector with [`set`](Self::set)`(db, etag)` applied.
    pub fn with(&self, db: DbId, etag: u64) -> Self {
        let mut v = self.clone();
        v.set(db, etag);
        v
    }

    /// The entries, sorted by id, unique, etags >= 1.
    pub fn entries(&self) -> &[(DbId, u64)] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the vector has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Compares entrywise: `Equal`, `Newer` (self dominates and differs),
    /// `Older` (other dominates and differs) or `Concurrent`.
    pub fn compare(&self, other: &Self) -> CvOrder {
        let (mut self_gt, mut other_gt) = (false, false);
        let (a, b) = (&self.entries, &other.entries);
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    self_gt = true;
                    i += 1;
                }
                Ordering::Greater => {
                    other_gt = true;
                    j += 1;
                }
                Ordering::Equal => {
                    match a[i].1.cmp(&b[j].1) {
                        Ordering::Greater => self_gt = true,
                        Ordering::Less => other_gt = true,
                        Ordering::Equal => {}
                    }
                    i += 1;
                    j += 1;
                }
            }
            if self_gt && other_gt {
                return CvOrder::Concurrent;
            }
        }
        self_gt |= i < a.len();
        other_gt |= j < b.len();
        match (self_gt, other_gt) {
            (false, false) => CvOrder::Equal,
            (true, false) => CvOrder::Newer,
            (false, true) => CvOrder::Older,
            (true, true) => CvOrder::Concurrent,
        }
    }

    /// The entrywise maximum of both vectors: the least vector dominating both.
    pub fn merge(&self, other: &Self) -> Self {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    out.push((a[i].0, a[i].1.max(b[j].1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        ChangeVector { entries: out }
    }

    /// Whether `self >= other` entrywise (`compare` is `Equal` or `Newer`).
    pub fn dominates(&self, other: &Self) -> bool {
        matches!(self.compare(other), CvOrder::Equal | CvOrder::Newer)
    }

    /// The text form `<dbid>:<etag>,<dbid>:<etag>` in id order; `""` if empty.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.entries.len() * 34);
        for (k, (db, etag)) in self.entries.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            // Writing to a String cannot fail.
            let _ = fmt::Write::write_fmt(&mut s, format_args!("{db}:{etag}"));
        }
        s
    }

    /// Parses the text form. Entries may come in any order and may be
    /// separated by `,` followed by optional spaces; `""` (or only spaces) is
    /// the empty vector. Entries with etag 0 are dropped. Duplicate ids,
    /// empty entries, etags that are not plain decimal `u64`s, bad ids and
    /// more than [`MAX_CV_ENTRIES`] entries are errors.
    pub fn parse_text(s: &str) -> Result<Self, InputError> {
        let bad = |why: String| InputError::InvalidChangeVector(format!("{why} in {:?}", clip(s)));
        let trimmed = s.trim_matches(' ');
        if trimmed.is_empty() {
            return Ok(ChangeVector::new());
        }
        let count = trimmed.bytes().filter(|&b| b == b',').count() + 1;
        if count > MAX_CV_ENTRIES {
            return Err(too_many(count));
        }
        let mut entries = Vec::with_capacity(count);
        for part in trimmed.split(',') {
            let part = part.trim_matches(' ');
            if part.is_empty() {
                return Err(bad("empty entry".into()));
            }
            let (id, etag) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("entry {:?} lacks ':'", clip(part))))?;
            let db: DbId = id.parse()?;
            if etag.is_empty() || etag.len() > 20 || !etag.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("bad etag {:?}", clip(etag))));
            }
            let etag: u64 = etag
                .parse()
                .map_err(|_| bad(format!("etag {:?} out of range", clip(etag))))?;
            entries.push((db, etag));
        }
        entries.sort_unstable_by_key(|a| a.0);
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(bad("duplicate database id".into()));
        }
        entries.retain(|e| e.1 != 0);
        Ok(ChangeVector { entries })
    }

    /// Appends the binary form: `u16` LE count, then per entry 16 id bytes
    /// and a `u64` LE etag.
    ///
    /// A vector grown (by [`set`](Self::set) or [`merge`](Self::merge)) past
    /// `u16::MAX` entries is written truncated to its first `u16::MAX`
    /// entries; callers keep vectors within [`MAX_CV_ENTRIES`], which
    /// [`decode`](Self::decode) enforces.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = self.entries.len().min(usize::from(u16::MAX));
        debug_assert_eq!(n, self.entries.len(), "change vector too large to encode");
        out.reserve(2 + n * ENTRY_BYTES);
        out.put_u16(n as u16);
        for (db, etag) in &self.entries[..n] {
            out.extend_from_slice(&db.0);
            out.put_u64(*etag);
        }
    }

    /// Length in bytes of the binary form written by [`encode`](Self::encode).
    pub fn encoded_len(&self) -> usize {
        2 + self.entries.len().min(usize::from(u16::MAX)) * ENTRY_BYTES
    }

    /// Decodes the binary form from the start of `buf`, returning the vector
    /// and the number of bytes consumed (trailing bytes are left to the
    /// caller). Rejects truncated input, more than [`MAX_CV_ENTRIES`]
    /// entries, ids not strictly increasing, and etag 0.
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), InputError> {
        let bad = |why: &str| InputError::InvalidChangeVector(format!("binary: {why}"));
        let mut r = Reader::new(buf);
        let count = usize::from(r.u16("count").map_err(|_| bad("truncated count"))?);
        if count > MAX_CV_ENTRIES {
            return Err(too_many(count));
        }
        let body = r
            .take(count * ENTRY_BYTES, "entries")
            .map_err(|_| bad("truncated entries"))?;
        let mut e = Reader::new(body);
        let mut entries: Vec<(DbId, u64)> = Vec::with_capacity(count);
        for _ in 0..count {
            let mut entry = || Ok::<_, Truncated>((DbId(e.array("id")?), e.u64("etag")?));
            let (db, etag) = entry().map_err(|_| bad("truncated entries"))?;
            if etag == 0 {
                return Err(bad("entry with etag 0"));
            }
            if let Some(last) = entries.last()
                && last.0 >= db
            {
                return Err(bad("ids not sorted and unique"));
            }
            entries.push((db, etag));
        }
        Ok((ChangeVector { entries }, r.pos()))
    }
}

fn too_many(n: usize) -> InputError {
    InputError::InvalidChangeVector(format!("{n} entries; the limit is {MAX_CV_ENTRIES}"))
}

impl fmt::Display for ChangeVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for ChangeVector {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChangeVector::parse_text(s)
    }
}

impl serde::Serialize for ChangeVector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> serde::Deserialize<'de> for ChangeVector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ChangeVector::parse_text(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DbId {
        DbId([n; 16])
    }

    fn cv(e: &[(u8, u64)]) -> ChangeVector {
        ChangeVector::from_entries(e.iter().map(|&(n, t)| (id(n), t))).unwrap()
    }

    #[test]
    fn dbid_text_roundtrip() {
        for _ in 0..200 {
            let d = DbId::random();
            let s = d.to_string();
            assert_eq!(s.len(), 22);
            assert_eq!(s.parse::<DbId>().unwrap(), d);
        }
        assert_eq!(DbId([0; 16]).to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(DbId([0xff; 16]).to_string(), "_____________________w");
        // RFC 4648 check against a known encoding of bytes 0..16.
        let mut b = [0u8; 16];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        assert_eq!(DbId(b).to_string(), "AAECAwQFBgcICQoLDA0ODw");
    }

    #[test]
    fn dbid_rejects_bad_text() {
        for s in [
            "",
            "AAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAA+",
            "_____________________x", // non-zero leftover bits
            "AAAAAAAAAAAAAAAAAAAAAé",
        ] {
            assert!(matches!(
                s.parse::<DbId>(),
                Err(InputError::InvalidChangeVector(_))
            ));
        }
    }

    #[test]
    fn from_entries_normalizes() {
        let v =
            ChangeVector::from_entries([(id(2), 5), (id(1), 3), (id(2), 7), (id(3), 0)]).unwrap();
        assert_eq!(v.entries(), &[(id(1), 3), (id(2), 7)]);
        assert_eq!(v.get(&id(2)), 7);
        assert_eq!(v.get(&id(3)), 0);
        assert_eq!(v.len(), 2);
        assert!(!v.is_empty());
        assert!(ChangeVector::new().is_empty());
        let many = (0..=MAX_CV_ENTRIES as u32).map(|i| {
            let mut b = [0u8; 16];
            crate::codec::set_u32(&mut b, 0, i);
            (DbId(b), 1)
        });
        assert!(ChangeVector::from_entries(many).is_err());
        // Many duplicates of one id are fine.
        let dups = (0..3 * MAX_CV_ENTRIES as u64).map(|i| (id(1), i + 1));
        let v = ChangeVector::from_entries(dups).unwrap();
        assert_eq!(v.entries(), &[(id(1), 3 * MAX_CV_ENTRIES as u64)]);
    }

    #[test]
    fn set_and_with() {
        let mut v = ChangeVector::new();
        v.set(id(2), 4);
        v.set(id(1), 1);
        v.set(id(2), 3);
        v.set(id(3), 0);
        assert_eq!(v.entries(), &[(id(1), 1), (id(2), 4)]);
        let w = v.with(id(2), 9);
        assert_eq!(w.get(&id(2)), 9);
        assert_eq!(v.get(&id(2)), 4);
    }

    #[test]
    fn compare_cases() {
        let a = cv(&[(1, 2), (2, 3)]);
        assert_eq!(a.compare(&a), CvOrder::Equal);
        assert_eq!(a.compare(&cv(&[(1, 2)])), CvOrder::Newer);
        assert_eq!(cv(&[(1, 2)]).compare(&a), CvOrder::Older);
        assert_eq!(a.compare(&cv(&[(1, 3)])), CvOrder::Concurrent);
        assert_eq!(a.compare(&cv(&[(3, 1)])), CvOrder::Concurrent);
        assert_eq!(a.compare(&ChangeVector::new()), CvOrder::Newer);
        assert_eq!(
            ChangeVector::new().compare(&ChangeVector::new()),
            CvOrder::Equal
        );
        assert!(a.dominates(&a));
        assert!(a.dominates(&cv(&[(2, 3)])));
        assert!(!cv(&[(2, 3)]).dominates(&a));
        assert_eq!(CvOrder::Newer.reverse(), CvOrder::Older);
    }

    #[test]
    fn merge_is_entrywise_max() {
        let a = cv(&[(1, 2), (2, 5)]);
        let b = cv(&[(2, 3), (3, 1)]);
        assert_eq!(a.merge(&b), cv(&[(1, 2), (2, 5), (3, 1)]));
    }

    #[test]
    fn text_roundtrip_and_forms() {
        let a = cv(&[(1, 2), (2, 18446744073709551615)]);
        let t = a.to_text();
        assert_eq!(ChangeVector::parse_text(&t).unwrap(), a);
        assert_eq!(a.to_string(), t);
        assert_eq!(t.parse::<ChangeVector>().unwrap(), a);
        assert_eq!(ChangeVector::new().to_text(), "");
        assert_eq!(ChangeVector::parse_text("").unwrap(), ChangeVector::new());
        // Spaces after commas, any order.
        let (i1, i2) = (id(1), id(2));
        let s = format!("{i2}:18446744073709551615, {i1}:2");
        assert_eq!(ChangeVector::parse_text(&s).unwrap(), a);
        // etag 0 dropped.
        assert_eq!(
            ChangeVector::parse_text(&format!("{i1}:0")).unwrap(),
            ChangeVector::new()
        );
    }

    #[test]
    fn text_rejects() {
        let i1 = id(1);
        for s in [
            format!("{i1}"),
            format!("{i1}:"),
            format!("{i1}:-1"),
            format!("{i1}:+1"),
            format!("{i1}:18446744073709551616"),
            format!("{i1}:1,"),
            format!("{i1}:1,,{i1}:2"),
            format!("{i1}:1,{i1}:2"),
            format!("{i1}:1x"),
            "x:1".to_string(),
            ",".to_string(),
        ] {
            assert!(
                matches!(
                    ChangeVector::parse_text(&s),
                    Err(InputError::InvalidChangeVector(_))
                ),
                "{s:?}"
            );
        }
        let big = vec![format!("{i1}:1"); MAX_CV_ENTRIES + 1].join(",");
        assert!(ChangeVector::parse_text(&big).is_err());
    }

    #[test]
    fn binary_roundtrip() {
        let a = cv(&[(1, 2), (2, 300), (9, u64::MAX)]);
        let mut buf = vec![0xAA];
        a.encode(&mut buf);
        assert_eq!(buf.len(), 1 + a.encoded_len());
        buf.push(7);
        let (b, n) = ChangeVector::decode(&buf[1..]).unwrap();
        assert_eq!(b, a);
        assert_eq!(n, a.encoded_len());
        // Every truncation fails.
        let mut enc = Vec::new();
        a.encode(&mut enc);
        for k in 0..enc.len() {
            assert!(ChangeVector::decode(&enc[..k]).is_err());
        }
        let mut e = Vec::new();
        ChangeVector::new().encode(&mut e);
        assert_eq!(e, vec![0, 0]);
        assert_eq!(ChangeVector::decode(&e).unwrap(), (ChangeVector::new(), 2));
    }

    #[test]
    fn binary_rejects() {
        let entry = |n: u8, etag: u64| {
            let mut v = vec![n; 16];
            v.put_u64(etag);
            v
        };
        let mut unsorted = vec![2, 0];
        unsorted.extend(entry(2, 1));
        unsorted.extend(entry(1, 1));
        assert!(ChangeVector::decode(&unsorted).is_err());
        let mut dup = vec![2, 0];
        dup.extend(entry(1, 1));
        dup.extend(entry(1, 2));
        assert!(ChangeVector::decode(&dup).is_err());
        let mut zero = vec![1, 0];
        zero.extend(entry(1, 0));
        assert!(ChangeVector::decode(&zero).is_err());
        assert!(ChangeVector::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn serde_as_text() {
        let a = cv(&[(1, 2), (3, 4)]);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, format!("\"{}\"", a.to_text()));
        let b: ChangeVector = serde_json::from_str(&j).unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<ChangeVector>("\"nope\"").is_err());
        assert!(serde_json::from_str::<ChangeVector>("5").is_err());
    }
}
