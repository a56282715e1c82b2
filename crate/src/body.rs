//! The strict check of a document body, exactly as readers parse it.
//!
//! Every body the engine stores (a local put, a version received from a
//! peer) must be the JSON text of an object that any reader can parse back:
//! - a JSON object at top level, nothing but whitespace after it;
//! - nesting (arrays and objects) at most [`MAX_DEPTH`] deep;
//! - valid UTF-8 everywhere, and no lone surrogate escape (`"\ud800"` alone,
//!   `"\udc00"` alone, a high surrogate not followed by a low one);
//! - every number within the range of an `f64` (`1e400` is refused; a big
//!   integer that converts to a finite `f64` is fine);
//! - no duplicate key in any object, keys compared after unescaping
//!   (`{"a":1,"\u0061":2}` is a duplicate: the lesson of CouchDB's
//!   CVE-2017-12635, where two parsers disagreed on which duplicate wins).
//!
//! [`check_body`] is one iterative pass over the bytes: it never recurses
//! (a body nested 100,000 deep is refused at depth 65 without growing the
//! stack) and allocates nothing per scalar (keys are hashed in place; only
//! a key with escapes is unescaped, into a reused buffer). Its buffers (the
//! stack, the keys of the open objects) are kept for the next check on the
//! same thread when they are small (at most 64 KiB).

use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Deepest nesting of arrays and objects a body may have (the top-level
/// object counts as 1).
pub const MAX_DEPTH: usize = 64;

/// Why a body was refused by [`check_body`]. Offsets are byte offsets into
/// the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not a JSON object at top level (empty, an array, a string...).
    #[error("the body is not a JSON object (byte {offset})")]
    NotObject {
        /// Where the first non-whitespace byte is (or the length if none).
        offset: usize,
    },
    /// The body is not JSON text.
    #[error("JSON syntax error at byte {offset}: {what}")]
    Syntax {
        /// Where the error is.
        offset: usize,
        /// What was expected or found.
        what: &'static str,
    },
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {max} at byte {offset}", max = MAX_DEPTH)]
    TooDeep {
        /// Where the container that goes too deep opens.
        offset: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// The first byte that is not valid UTF-8.
        offset: usize,
    },
    /// A `\uD800`-`\uDFFF` escape that is not half of a surrogate pair.
    #[error("lone surrogate escape at byte {offset}")]
    LoneSurrogate {
        /// Where the escape starts.
        offset: usize,
    },
    /// A number outside the range of an `f64` (it would read as infinity).
    #[error("number out of the f64 range at byte {offset}")]
    NumberOutOfRange {
        /// Where the number starts.
        offset: usize,
    },
    /// The same key twice in one object (compared after unescaping).
    #[error("duplicate key {key:?} at byte {offset}")]
    DuplicateKey {
        /// The key (unescaped, lossy, clipped to 64 characters).
        key: String,
        /// Where its second occurrence starts.
        offset: usize,
    },
}

impl BodyError {
    /// The rule the body broke, a stable snake_case name (for refusals on
    /// the wire and in logs).
    pub fn rule(&self) -> &'static str {
        match self {
            BodyError::NotObject { .. } => "not_object",
            BodyError::Syntax { .. } => "syntax",
            BodyError::TooDeep { .. } => "too_deep",
            BodyError::InvalidUtf8 { .. } => "invalid_utf8",
            BodyError::LoneSurrogate { .. } => "lone_surrogate",
            BodyError::NumberOutOfRange { .. } => "number_out_of_range",
            BodyError::DuplicateKey { .. } => "duplicate_key",
        }
    }
}

/// Checks that `body` is the JSON text of an object that readers can parse
/// back (see the module documentation for the rules).
pub fn check_body(body: &[u8]) -> Result<(), BodyError> {
    checked(body).map(|_| ())
}

/// [`check_body`], and in the same pass the collection the body names: its
/// `@metadata.@collection` member when that is a string (what
/// [`crate::doc::collection_of`] reads from a parsed body), so that a put of
/// JSON text reads its text once.
pub fn check_body_collection(body: &[u8]) -> Result<Option<String>, BodyError> {
    let c = checked(body)?;
    let MetaState::Found(key) = c.meta else {
        return Ok(None);
    };
    let raw = &body[key.start + 1..key.end - 1];
    if !key.escaped {
        // Checked UTF-8 (the whole body is).
        return Ok(std::str::from_utf8(raw).ok().map(str::to_owned));
    }
    let mut out = Vec::new();
    unescape(&body[key.start..key.end], &mut out);
    Ok(String::from_utf8(out).ok())
}

/// Runs the checker over `body` and returns it (for what it noted).
fn checked(body: &[u8]) -> Result<Checker<'_>, BodyError> {
    // Outside strings JSON is ASCII, so one validation of the whole text
    // covers every string's content.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(BodyError::InvalidUtf8 {
            offset: e.valid_up_to(),
        });
    }
    let Spare {
        mut stack,
        frames,
        scratch,
    } = SPARE.with(Cell::take).unwrap_or_default();
    stack.clear();
    let mut c = Checker {
        b: body,
        i: 0,
        stack,
        objs: 0,
        frames,
        scratch,
        hasher: None,
        meta: MetaState::Before,
    };
    c.skip_ws();
    if c.peek() != Some(b'{') {
        return Err(BodyError::NotObject { offset: c.i });
    }
    c.run()?;
    Ok(c)
}

/// Where the checker is with respect to `@metadata.@collection`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MetaState {
    /// Not seen the top-level `@metadata` key.
    Before,
    /// The top-level key `@metadata` was just read: its value comes next.
    MetaValue,
    /// Inside the `@metadata` object (at depth 2).
    InMeta,
    /// The key `@collection` of `@metadata` was just read.
    CollectionValue,
    /// `@metadata.@collection` is this string (quotes included).
    Found(Key),
    /// Past `@metadata` without a string `@collection`.
    Done,
}

/// What is open at one nesting level.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Object,
    Array,
}

/// Keys of one object compared one by one up to this many; beyond, by hash.
const LINEAR_KEYS: usize = 16;

/// A key of an open object: where its string is (quotes included) and
/// whether it holds escapes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    start: usize,
    end: usize,
    escaped: bool,
}

/// The keys seen so far in one open object (reused between objects at the
/// same depth).
#[derive(Default)]
struct KeyFrame {
    keys: Vec<Key>,
    /// One bit per key without escapes (a hash of its bytes): a key whose
    /// bit is not set cannot equal an earlier key, so it is not compared
    /// with them.
    seen: u64,
    /// Whether an earlier key had escapes (it has no bit in `seen`).
    escapes: bool,
    /// Hashes of the unescaped keys, once the object has more than
    /// [`LINEAR_KEYS`] keys.
    hashes: HashSet<u64, IdentityHash>,
}

/// The bit of [`KeyFrame::seen`] for a key's raw bytes (without escapes).
fn key_bit(raw: &[u8]) -> u64 {
    let (first, last) = match raw {
        [] => (0, 0),
        [f, .., l] => (*f, *l),
        [f] => (*f, *f),
    };
    let h = (raw.len() as u32)
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add(u32::from(first).wrapping_mul(0x85EB_CA6B))
        .wrapping_add(u32::from(last).wrapping_mul(0xC2B2_AE35));
    1 << (h >> 26)
}

/// A hasher for keys that are already hashes.
#[derive(Default, Clone, Copy)]
struct IdentityHash;

impl BuildHasher for IdentityHash {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// See [`IdentityHash`].
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Bytes a string scan stops at: `"`, `\\`, and control characters.
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The first index at or after `i` of a byte in [`STOP`] (or `b.len()`):
/// eight bytes at a time, the first stop byte of a word found from the
/// lowest bit of its mask; byte by byte only in the last few bytes.
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `w` that is zero. A borrow only marks
    // bytes above one that is, so the lowest marked byte is exact.
    let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        // Bytes below 0x20 (exact for the lowest, as above), `"`, `\`.
        let stops = (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | zeros(w ^ (ONES * u64::from(b'"')))
            | zeros(w ^ (ONES * u64::from(b'\\')));
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|c| !STOP[usize::from(*c)]) {
        i += 1;
    }
    i
}

/// A checker's buffers, kept between checks on this thread (a check of a
/// typical document otherwise allocates and frees its stack and its key
/// lists, several times as each grows).
#[derive(Default)]
struct Spare {
    stack: Vec<Open>,
    frames: Vec<KeyFrame>,
    scratch: (Vec<u8>, Vec<u8>),
}

/// A check's buffers go back for the next one when they hold at most this
/// many bytes in all (a document's take a few hundred); a huge or deeply
/// nested body's are freed with it, so no thread keeps much.
const SPARE_MAX_BYTES: usize = 64 << 10;

thread_local! {
    static SPARE: Cell<Option<Spare>> = const { Cell::new(None) };
}

impl Drop for Checker<'_> {
    fn drop(&mut self) {
        let frames: usize = self
            .frames
            .iter()
            .map(|f| {
                f.keys.capacity() * std::mem::size_of::<Key>()
                    + f.hashes.capacity() * std::mem::size_of::<u64>()
                    + std::mem::size_of::<KeyFrame>()
            })
            .sum();
        let bytes = frames
            + self.stack.capacity() * std::mem::size_of::<Open>()
            + self.scratch.0.capacity()
            + self.scratch.1.capacity();
        if bytes <= SPARE_MAX_BYTES {
            let spare = Spare {
                stack: std::mem::take(&mut self.stack),
                frames: std::mem::take(&mut self.frames),
                scratch: std::mem::take(&mut self.scratch),
            };
            SPARE.with(|s| s.set(Some(spare)));
        }
    }
}

struct Checker<'a> {
    b: &'a [u8],
    i: usize,
    /// Open containers, innermost last (at most [`MAX_DEPTH`]).
    stack: Vec<Open>,
    /// Objects among `stack`.
    objs: usize,
    /// Key frames of the open objects, by object depth (reused).
    frames: Vec<KeyFrame>,
    /// Buffers for unescaping keys.
    scratch: (Vec<u8>, Vec<u8>),
    /// Keyed hashing of the keys of big objects (random keys: no crafted
    /// collisions), made when first needed.
    hasher: Option<RandomState>,
    /// The search for `@metadata.@collection`, done along the way.
    meta: MetaState,
}

fn syntax(offset: usize, what: &'static str) -> BodyError {
    BodyError::Syntax { offset, what }
}

impl Checker<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        let (b, mut i) = (self.b, self.i);
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
            i += 1;
        }
        self.i = i;
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), BodyError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(syntax(self.i, what))
        }
    }

    /// Opens a container at `self.i` (the `{` or `[`).
    fn open(&mut self, kind: Open) -> Result<(), BodyError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(BodyError::TooDeep { offset: self.i });
        }
        self.stack.push(kind);
        self.i += 1;
        if kind == Open::Object {
            self.objs += 1;
            let n = self.objs;
            if self.frames.len() < n {
                self.frames.push(KeyFrame::default());
            } else {
                let f = &mut self.frames[n - 1];
                f.keys.clear();
                f.seen = 0;
                f.escapes = false;
                if !f.hashes.is_empty() {
                    f.hashes.clear();
                }
            }
        }
        Ok(())
    }

    /// The whole body, from its opening `{`.
    fn run(&mut self) -> Result<(), BodyError> {
        // `true`: a value is expected next; `false`: a value just ended.
        let mut want_value = true;
        loop {
            if want_value {
                self.skip_ws();
                let at = self.i;
                match self.meta {
                    MetaState::MetaValue => {
                        self.meta = if self.peek() == Some(b'{') {
                            MetaState::InMeta
                        } else {
                            MetaState::Done
                        };
                    }
                    MetaState::CollectionValue if self.peek() == Some(b'"') => {
                        let escaped = self.string()?;
                        self.meta = MetaState::Found(Key {
                            start: at,
                            end: self.i,
                            escaped,
                        });
                        want_value = false;
                        continue;
                    }
                    MetaState::CollectionValue => self.meta = MetaState::InMeta,
                    _ => {}
                }
                match self.peek() {
                    Some(b'{') => {
                        self.open(Open::Object)?;
                        self.skip_ws();
                        if self.peek() == Some(b'}') {
                            self.i += 1;
                            self.close();
                            want_value = false;
                        } else {
                            self.key()?;
                        }
                        continue;
                    }
                    Some(b'[') => {
                        self.open(Open::Array)?;
                        self.skip_ws();
                        if self.peek() == Some(b']') {
                            self.i += 1;
                            self.close();
                            want_value = false;
                        }
                        continue;
                    }
                    Some(b'"') => {
                        self.string()?;
                    }
                    Some(b't') => self.literal(b"true")?,
                    Some(b'f') => self.literal(b"false")?,
                    Some(b'n') => self.literal(b"null")?,
                    Some(b'-' | b'0'..=b'9') => self.number()?,
                    None => return Err(syntax(at, "unexpected end of the body")),
                    Some(_) => return Err(syntax(at, "expected a value")),
                }
                want_value = false;
                continue;
            }
            // After a value: a separator, the end of a container, or the end.
            self.skip_ws();
            let at = self.i;
            match (self.stack.last(), self.peek()) {
                (None, None) => return Ok(()),
                (None, Some(_)) => return Err(syntax(at, "trailing characters after the object")),
                (Some(Open::Object), Some(b',')) => {
                    self.i += 1;
                    self.key()?;
                    want_value = true;
                }
                (Some(Open::Array), Some(b',')) => {
                    self.i += 1;
                    want_value = true;
                }
                (Some(Open::Object), Some(b'}')) | (Some(Open::Array), Some(b']')) => {
                    self.i += 1;
                    self.close();
                }
                (Some(_), None) => return Err(syntax(at, "unexpected end of the body")),
                (Some(Open::Object), Some(_)) => return Err(syntax(at, "expected ',' or '}'")),
                (Some(Open::Array), Some(_)) => return Err(syntax(at, "expected ',' or ']'")),
            }
        }
    }

    /// Closes the innermost container (its closing byte was consumed).
    fn close(&mut self) {
        if self.stack.pop() == Some(Open::Object) {
            self.objs -= 1;
        }
        if self.meta == MetaState::InMeta && self.stack.len() == 1 {
            self.meta = MetaState::Done;
        }
    }

    /// Notes a key of the top-level object or of `@metadata` that the
    /// search for the collection looks for.
    fn note_key(&mut self, key: Key) {
        let wanted: &[u8] = match (self.meta, self.stack.len()) {
            (MetaState::Before, 1) => b"@metadata",
            (MetaState::InMeta, 2) => b"@collection",
            _ => return,
        };
        let raw = &self.b[key.start + 1..key.end - 1];
        let same = if key.escaped {
            unescape(&self.b[key.start..key.end], &mut self.scratch.0);
            self.scratch.0 == wanted
        } else {
            raw == wanted
        };
        if same {
            self.meta = match self.meta {
                MetaState::Before => MetaState::MetaValue,
                _ => MetaState::CollectionValue,
            };
        }
    }

    /// A key of the innermost object and its `:`; checks it is not a duplicate.
    fn key(&mut self) -> Result<(), BodyError> {
        self.skip_ws();
        let start = self.i;
        if self.peek() != Some(b'"') {
            return Err(syntax(start, "expected a key string"));
        }
        let escaped = self.string()?;
        let key = Key {
            start,
            end: self.i,
            escaped,
        };
        let b = self.b;
        let n = self.objs;
        let f = &mut self.frames[n - 1];
        let bit = key_bit(&b[start + 1..self.i - 1]);
        let dup = if f.keys.len() < LINEAR_KEYS {
            let unseen = !escaped && !f.escapes && f.seen & bit == 0;
            f.seen |= bit;
            f.escapes |= escaped;
            !unseen
                && f.keys
                    .iter()
                    .any(|k| same_key(b, k, &key, &mut self.scratch))
        } else {
            let hasher = self.hasher.get_or_insert_with(RandomState::new);
            if f.hashes.is_empty() {
                for k in &f.keys {
                    f.hashes.insert(key_hash(b, k, hasher, &mut self.scratch.0));
                }
            }
            // Same hash: compare exactly with the earlier keys (rare).
            !f.hashes
                .insert(key_hash(b, &key, hasher, &mut self.scratch.0))
                && f.keys
                    .iter()
                    .any(|k| same_key(b, k, &key, &mut self.scratch))
        };
        if dup {
            unescape(&b[start..self.i], &mut self.scratch.0);
            let key: String = String::from_utf8_lossy(&self.scratch.0)
                .chars()
                .take(64)
                .collect();
            return Err(BodyError::DuplicateKey { key, offset: start });
        }
        f.keys.push(key);
        self.note_key(key);
        self.expect(b':', "expected ':' after a key")
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), BodyError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(syntax(self.i, "invalid literal"))
        }
    }

    /// A string from its opening quote; returns whether it holds escapes.
    fn string(&mut self) -> Result<bool, BodyError> {
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i = skip_plain(self.b, self.i);
            let Some(&c) = self.b.get(self.i) else {
                return Err(syntax(self.i, "unterminated string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => return Err(syntax(self.i, "control character in a string")),
                _ => self.i += 1,
            }
        }
    }

    /// One escape from its backslash.
    fn escape(&mut self) -> Result<(), BodyError> {
        let at = self.i;
        match self.b.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 2;
                Ok(())
            }
            Some(b'u') => {
                let u = hex4(self.b, at + 2).ok_or_else(|| syntax(at, "invalid \\u escape"))?;
                self.i += 6;
                match u {
                    0xD800..=0xDBFF => {
                        let low = (self.b.get(self.i) == Some(&b'\\')
                            && self.b.get(self.i + 1) == Some(&b'u'))
                        .then(|| hex4(self.b, self.i + 2))
                        .flatten();
                        match low {
                            Some(0xDC00..=0xDFFF) => {
                                self.i += 6;
                                Ok(())
                            }
                            _ => Err(BodyError::LoneSurrogate { offset: at }),
                        }
                    }
                    0xDC00..=0xDFFF => Err(BodyError::LoneSurrogate { offset: at }),
                    _ => Ok(()),
                }
            }
            _ => Err(syntax(at, "invalid escape")),
        }
    }

    fn digits(&mut self) -> usize {
        let (b, s) = (self.b, self.i);
        let mut i = s;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        self.i = i;
        i - s
    }

    fn number(&mut self) -> Result<(), BodyError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(syntax(self.i, "invalid number")),
        }
        let int_digits = self.i - int_start;
        let mut simple = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(syntax(self.i, "invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            simple = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(syntax(self.i, "invalid number"));
            }
        }
        // Without an exponent, fewer than 300 integer digits is always a
        // finite f64; otherwise parse (no allocation) and look.
        if !simple || int_digits >= 300 {
            let text = std::str::from_utf8(&self.b[start..self.i])
                .map_err(|_| syntax(start, "invalid number"))?;
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => {}
                _ => return Err(BodyError::NumberOutOfRange { offset: start }),
            }
        }
        Ok(())
    }
}

/// The value of the four hex digits at `at`.
fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let h = b.get(at..at + 4)?;
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Whether two keys of a body are the same once unescaped.
fn same_key(b: &[u8], x: &Key, y: &Key, scratch: &mut (Vec<u8>, Vec<u8>)) -> bool {
    let (xs, ys) = (&b[x.start..x.end], &b[y.start..y.end]);
    if !x.escaped && !y.escaped {
        return xs == ys;
    }
    unescape(xs, &mut scratch.0);
    unescape(ys, &mut scratch.1);
    scratch.0 == scratch.1
}

/// The keyed hash of a key once unescaped.
fn key_hash(b: &[u8], k: &Key, hasher: &RandomState, scratch: &mut Vec<u8>) -> u64 {
    let raw = &b[k.start..k.end];
    if k.escaped {
        unescape(raw, scratch);
        hasher.hash_one(scratch.as_slice())
    } else {
        hasher.hash_one(&raw[1..raw.len() - 1])
    }
}

/// Unescapes a checked string (with its quotes) into `out` (cleared first).
fn unescape(s: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let inner = &s[1..s.len().saturating_sub(1).max(1)];
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' {
            out.push(inner[i]);
            i += 1;
            continue;
        }
        let e = inner.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        let c = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut u = hex4(inner, i).unwrap_or(0xFFFD);
                i += 4;
                if (0xD800..0xDC00).contains(&u)
                    && let Some(lo) = hex4(inner, i + 2)
                {
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                    i += 6;
                }
                let ch = char::from_u32(u).unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            other => other,
        };
        out.push(c);
    }
}

/// The members of the JSON object `body` (between its outer braces, trimmed),
/// if `body` is one object text: its first `{` closed by its last `}` and
/// nothing but (ASCII) whitespace around them, strings followed through their
/// escapes. Brackets of the wrong kind are left to the parser, which
/// refuses them.
///
/// What it is for: a reader that splices stored bodies into one JSON text
/// (the wasm bindings' reads, which `JSON.parse` a page of documents at
/// once) must know that no body closes its object early and goes on with
/// text of its own, such as more documents. A body that passed
/// [`check_body`] always passes; one that did not (a damaged or foreign
/// file) may pass and still not parse, which the splicer's parse reports.
pub fn object_members(body: &str) -> Option<&str> {
    let t = body.trim_ascii();
    let b = t.as_bytes();
    if b.len() < 2 || b[0] != b'{' || b[b.len() - 1] != b'}' {
        return None;
    }
    let (mut depth, mut i) = (0usize, 0);
    while let Some(&c) = b.get(i) {
        match c {
            // A string: to its closing quote, eight bytes at a time where
            // nothing can end it, an escape taking the byte after it.
            b'"' => {
                i += 1;
                loop {
                    i = skip_plain(b, i);
                    match b.get(i)? {
                        b'"' => break,
                        b'\\' => i += 2,
                        // A control character: not JSON, which the parse says.
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 && i + 1 != b.len() {
                    return None;
                }
            }
            _ => {}
        }
        i += 1;
    }
    (depth == 0).then(|| t[1..t.len() - 1].trim_ascii())
}

/// Follows JSON text byte by byte through its strings and their escapes,
/// for a scan that only cares about what lies outside strings
/// (`jsonl::line_weight`; [`object_members`] skips a string's plain bytes
/// eight at a time instead).
#[derive(Default)]
pub struct Strings {
    in_str: bool,
    esc: bool,
}

impl Strings {
    /// Whether the next byte, `b`, lies outside every string (a string's
    /// quotes count as inside it).
    pub fn outside(&mut self, b: u8) -> bool {
        if self.in_str {
            if self.esc {
                self.esc = false;
            } else if b == b'\\' {
                self.esc = true;
            } else if b == b'"' {
                self.in_str = false;
            }
            false
        } else if b == b'"' {
            self.in_str = true;
            false
        } else {
            true
        }
    }

    /// Whether the text so far ends inside a string.
    pub fn in_string(&self) -> bool {
        self.in_str
    }
}

#[cfg(test)]
mod tests;
