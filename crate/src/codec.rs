//! Little-endian, fixed-width encoding: the one home of byte order for every
//! on-disk and wire format (pages, records, the meta record, WAL headers and
//! frames, sync frames). wasm32 and x86_64 read and write the same bytes
//! because every integer goes through here with an explicit width.
//!
//! Three tools:
//! - [`Reader`]: a cursor over untrusted bytes. Every read is bounds-checked
//!   and fails with [`Truncated`], naming the field, instead of panicking.
//! - [`Put`]: appends fixed-width integers to a `Vec<u8>` (encoders).
//!   Length-prefixed byte strings (a `u16` or `u32` length, then the bytes)
//!   have their pair: [`Put::put_bytes16`]/[`Reader::bytes16`] and
//!   [`Put::put_bytes32`]/[`Reader::bytes32`].
//! - [`get_u16`]/[`get_u32`]/[`get_u64`] and [`set_u16`]/[`set_u32`]/
//!   [`set_u64`]: fixed offsets inside a buffer (page and header layouts).
//!   The getters return `None` past the end; the setters are for buffers the
//!   caller sized itself and panic past the end, which is a bug, not input.

/// A read ran past the end of its input; `what` names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// The field that did not fit.
    pub what: String,
}

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "truncated at {}", self.what)
    }
}

impl std::error::Error for Truncated {}

/// A bounds-checked little-endian cursor over bytes that may be hostile.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Skips `n` bytes that the caller decoded from [`Reader::rest`].
    pub fn advance(&mut self, n: usize, what: &str) -> Result<(), Truncated> {
        self.take(n, what).map(|_| ())
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Truncated> {
        if n > self.remaining() {
            return Err(Truncated { what: what.into() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Truncated> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, Truncated> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &str) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self, what: &str) -> Result<i64, Truncated> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A byte string after its little-endian `u16` length (both named
    /// `what`); the pair of [`Put::put_bytes16`].
    pub fn bytes16(&mut self, what: &str) -> Result<&'a [u8], Truncated> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// A byte string after its little-endian `u32` length (both named
    /// `what`); the pair of [`Put::put_bytes32`].
    pub fn bytes32(&mut self, what: &str) -> Result<&'a [u8], Truncated> {
        let n = self.u32(what)?;
        self.take(n as usize, what)
    }
}

/// Appends little-endian fixed-width integers.
pub trait Put {
    /// Appends one byte.
    fn put_u8(&mut self, v: u8);
    /// Appends a little-endian `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a little-endian `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, v: u64);
    /// Appends a little-endian `i64`.
    fn put_i64(&mut self, v: i64);
    /// Appends `b` after its length as a little-endian `u16`. Callers keep
    /// `b` within `u16::MAX` bytes; longer input is cut to that many (the
    /// encoding stays well-framed, it never panics).
    fn put_bytes16(&mut self, b: &[u8]);
    /// Appends `b` after its length as a little-endian `u32` (cut to
    /// `u32::MAX` bytes like [`Put::put_bytes16`]).
    fn put_bytes32(&mut self, b: &[u8]);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes16(&mut self, b: &[u8]) {
        let n = b.len().min(usize::from(u16::MAX));
        self.put_u16(n as u16);
        self.extend_from_slice(&b[..n]);
    }
    fn put_bytes32(&mut self, b: &[u8]) {
        let n = b.len().min(u32::MAX as usize);
        self.put_u32(n as u32);
        self.extend_from_slice(&b[..n]);
    }
}

fn get<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The little-endian `u16` at `at`, or `None` past the end of `buf`.
pub fn get_u16(buf: &[u8], at: usize) -> Option<u16> {
    get(buf, at).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `at`, or `None` past the end of `buf`.
pub fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    get(buf, at).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `at`, or `None` past the end of `buf`.
pub fn get_u64(buf: &[u8], at: usize) -> Option<u64> {
    get(buf, at).map(u64::from_le_bytes)
}

/// Writes `v` little-endian at `at`. Panics past the end of `buf` (a buffer
/// the caller sized: a bug, never input).
pub fn set_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` little-endian at `at` (see [`set_u16`]).
pub fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` little-endian at `at` (see [`set_u16`]).
pub fn set_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Lowercase hex of `bytes` (key, hash and signature texts).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The bytes of a hex text (either case), or `None` when it is not an even
/// number of hex digits.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    b.chunks(2)
        .map(|p| Some(u8::try_from(digit(p[0])? * 16 + digit(p[1])?).unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fixed_bytes() {
        let mut b = Vec::new();
        b.put_u8(7);
        b.put_u16(0x0102);
        b.put_u32(0x0304_0506);
        b.put_u64(0x0708_090a_0b0c_0d0e);
        b.put_i64(-2);
        assert_eq!(
            b[..15],
            [7, 2, 1, 6, 5, 4, 3, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 7]
        );
        let mut r = Reader::new(&b);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x0102);
        assert_eq!(r.u32("c").unwrap(), 0x0304_0506);
        assert_eq!(r.u64("d").unwrap(), 0x0708_090a_0b0c_0d0e);
        assert_eq!(r.i64("e").unwrap(), -2);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u8("f").unwrap_err().to_string(), "truncated at f");
    }

    #[test]
    fn length_prefixed_bytes() {
        let mut b = Vec::new();
        b.put_bytes16(b"ab");
        b.put_bytes32(b"xyz");
        b.put_bytes16(&[]);
        assert_eq!(b, [2, 0, b'a', b'b', 3, 0, 0, 0, b'x', b'y', b'z', 0, 0]);
        let mut r = Reader::new(&b);
        assert_eq!(r.bytes16("k").unwrap(), b"ab");
        assert_eq!(r.bytes32("v").unwrap(), b"xyz");
        assert_eq!(r.bytes16("e").unwrap(), b"");
        assert_eq!(r.remaining(), 0);
        // A length that promises more than there is.
        let mut r = Reader::new(&[5, 0, 1, 2]);
        assert_eq!(r.bytes16("s").unwrap_err().to_string(), "truncated at s");
        // Longer than the prefix can say: cut, still well-framed.
        let mut long = Vec::new();
        long.put_bytes16(&vec![7u8; 70_000]);
        assert_eq!(long.len(), 2 + usize::from(u16::MAX));
        assert_eq!(Reader::new(&long).bytes16("s").unwrap().len(), 65_535);
    }

    #[test]
    fn fixed_offsets() {
        let mut b = vec![0u8; 16];
        set_u16(&mut b, 0, 0xbeef);
        set_u32(&mut b, 2, 0xdead_beef);
        set_u64(&mut b, 8, u64::MAX - 1);
        assert_eq!(get_u16(&b, 0), Some(0xbeef));
        assert_eq!(get_u32(&b, 2), Some(0xdead_beef));
        assert_eq!(get_u64(&b, 8), Some(u64::MAX - 1));
        assert_eq!(get_u64(&b, 9), None);
        assert_eq!(get_u16(&b, usize::MAX), None);
    }

    #[test]
    fn short_reads_leave_the_cursor() {
        let b = [1u8, 2, 3];
        let mut r = Reader::new(&b);
        assert!(r.u32("x").is_err());
        assert_eq!(r.pos(), 0);
        assert_eq!(r.u16("y").unwrap(), 0x0201);
        assert_eq!(r.rest(), &[3]);
    }
}
