//! Index keys: JSON values encoded so that comparing the bytes compares the
//! values (an order-preserving, self-delimiting encoding).
//!
//! Order: `null` < `false` < `true` < numbers (as `f64`, `-0` = `0`) <
//! strings (by their UTF-8 bytes) < arrays (element by element, a prefix
//! first). Objects are not keys (`KeyError`).
//!
//! | value | bytes |
//! |---|---|
//! | `null` | `10` |
//! | `false`, `true` | `20`, `21` |
//! | number | `30` + 8 bytes: the `f64` bits, big-endian, sign bit flipped (all bits for negatives) |
//! | string | `40` + its bytes with `00` written `00 FF` + `00 00` |
//! | array | `50` + each element + `00` |
//!
//! A string's encoding without its terminator is a byte prefix of the
//! encoding of every string that starts with it, and an array's without its
//! `00` of every array that starts with its elements: prefix queries are
//! byte-prefix scans ([`prefix_bytes`]).

use serde_json::{Number, Value};

const NULL: u8 = 0x10;
const FALSE: u8 = 0x20;
const TRUE: u8 = 0x21;
const NUMBER: u8 = 0x30;
const STRING: u8 = 0x40;
const ARRAY: u8 = 0x50;
const END: u8 = 0x00;
const ESCAPE: u8 = 0xFF;

/// Deepest nesting of arrays in a key.
pub const MAX_KEY_DEPTH: usize = 16;

/// Longest encoded key, in bytes (an index entry's key must fit a B+tree
/// key with the document id after it).
pub const MAX_KEY_BYTES: usize = 512;

/// Why a value cannot be an index key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An object, or a number JSON cannot hold as `f64`.
    #[error(
        "an index key must be null, a boolean, a number, a string or an array of those (found {0})"
    )]
    NotAKey(&'static str),
    /// Arrays nested deeper than [`MAX_KEY_DEPTH`].
    #[error("an index key nests arrays deeper than {MAX_KEY_DEPTH} levels")]
    TooDeep,
    /// An encoded key longer than [`MAX_KEY_BYTES`].
    #[error("an index key is {0} bytes encoded; the limit is {MAX_KEY_BYTES}")]
    TooLong(usize),
    /// Bytes that are not an encoded key (a damaged record).
    #[error("bad encoded index key: {0}")]
    Bad(&'static str),
}

/// Encodes `v` (the whole encoding of one key).
pub fn encode(v: &Value) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(16);
    put(&mut out, v, 0)?;
    if out.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(out.len()));
    }
    Ok(out)
}

/// The bytes every key that starts with `v` begins with: `v`'s encoding
/// without the terminator of a string or of the outer array. A string
/// prefix `"ab"` matches `"ab"`, `"abc"`; an array prefix `["a"]` matches
/// `["a"]`, `["a", 1]`. Other values: their whole encoding (equality).
pub fn prefix_bytes(v: &Value) -> Result<Vec<u8>, KeyError> {
    let mut out = encode(v)?;
    match v {
        Value::String(_) => {
            out.truncate(out.len() - 2);
        }
        Value::Array(_) => {
            out.pop();
        }
        _ => {}
    }
    Ok(out)
}

fn put(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<(), KeyError> {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            let f = n
                .as_f64()
                .ok_or(KeyError::NotAKey("a number out of range"))?;
            out.push(NUMBER);
            out.extend_from_slice(&order_f64(f).to_be_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            put_escaped(out, s.as_bytes());
        }
        Value::Array(items) => {
            if depth >= MAX_KEY_DEPTH {
                return Err(KeyError::TooDeep);
            }
            out.push(ARRAY);
            for item in items {
                put(out, item, depth + 1)?;
            }
            out.push(END);
        }
        Value::Object(_) => return Err(KeyError::NotAKey("an object")),
    }
    Ok(())
}

/// Appends `bytes` with `00` escaped and the `00 00` terminator: the
/// encoding of a string's body (also used for document ids in entry keys).
pub fn put_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == END {
            out.push(ESCAPE);
        }
    }
    out.extend_from_slice(&[END, END]);
}

/// Reads an escaped byte string at the start of `b` (see [`put_escaped`]);
/// returns it and the bytes after its terminator.
pub fn take_escaped(b: &[u8]) -> Result<(Vec<u8>, &[u8]), KeyError> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match b.get(i) {
            None => return Err(KeyError::Bad("unterminated string")),
            Some(&END) => match b.get(i + 1) {
                Some(&END) => return Ok((out, &b[i + 2..])),
                Some(&ESCAPE) => {
                    out.push(END);
                    i += 2;
                }
                _ => return Err(KeyError::Bad("bad escape in a string")),
            },
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// `f64` bits whose unsigned order is the numbers' order (`-0` is `0`;
/// JSON has no NaN).
fn order_f64(f: f64) -> u64 {
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn unorder_f64(u: u64) -> f64 {
    if u >> 63 == 1 {
        f64::from_bits(u & !(1 << 63))
    } else {
        f64::from_bits(!u)
    }
}

/// Decodes one key at the start of `b`; returns it and the bytes after it.
pub fn decode_prefix(b: &[u8]) -> Result<(Value, &[u8]), KeyError> {
    take(b, 0)
}

/// Decodes a whole key (nothing may follow it).
pub fn decode(b: &[u8]) -> Result<Value, KeyError> {
    let (v, rest) = take(b, 0)?;
    if !rest.is_empty() {
        return Err(KeyError::Bad("bytes after the key"));
    }
    Ok(v)
}

fn take(b: &[u8], depth: usize) -> Result<(Value, &[u8]), KeyError> {
    let (&tag, rest) = b.split_first().ok_or(KeyError::Bad("empty"))?;
    match tag {
        NULL => Ok((Value::Null, rest)),
        FALSE => Ok((Value::Bool(false), rest)),
        TRUE => Ok((Value::Bool(true), rest)),
        NUMBER => {
            let raw: [u8; 8] = rest
                .get(..8)
                .and_then(|s| s.try_into().ok())
                .ok_or(KeyError::Bad("truncated number"))?;
            let f = unorder_f64(u64::from_be_bytes(raw));
            Ok((number_value(f)?, &rest[8..]))
        }
        STRING => {
            let (bytes, rest) = take_escaped(rest)?;
            let s = String::from_utf8(bytes).map_err(|_| KeyError::Bad("a string not UTF-8"))?;
            Ok((Value::String(s), rest))
        }
        ARRAY => {
            if depth >= MAX_KEY_DEPTH {
                return Err(KeyError::TooDeep);
            }
            let mut items = Vec::new();
            let mut rest = rest;
            loop {
                match rest.first() {
                    None => return Err(KeyError::Bad("unterminated array")),
                    Some(&END) => return Ok((Value::Array(items), &rest[1..])),
                    Some(_) => {
                        let (v, r) = take(rest, depth + 1)?;
                        items.push(v);
                        rest = r;
                    }
                }
            }
        }
        _ => Err(KeyError::Bad("unknown type tag")),
    }
}

/// A number as JSON shows it: an integer when it is one (within 2^53).
fn number_value(f: f64) -> Result<Value, KeyError> {
    if !f.is_finite() {
        return Err(KeyError::Bad("a number that is not finite"));
    }
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or(KeyError::Bad("a number that is not finite"))
}

// Native only: proptest is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::cmp::Ordering;

    /// The order the encoding must give, written directly.
    fn cmp(a: &Value, b: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(false) => 1,
                Value::Bool(true) => 2,
                Value::Number(_) => 3,
                Value::String(_) => 4,
                Value::Array(_) => 5,
                Value::Object(_) => 6,
            }
        }
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                x.as_f64().unwrap().total_cmp(&y.as_f64().unwrap())
            }
            (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Value::Array(x), Value::Array(y)) => {
                for (p, q) in x.iter().zip(y) {
                    let o = cmp(p, q);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            _ => rank(a).cmp(&rank(b)),
        }
    }

    fn key() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-c\u{0}\u{e9}]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(Value::Array)
        })
    }

    proptest! {
        #[test]
        fn bytes_compare_as_the_values(a in key(), b in key()) {
            let (ea, eb) = (encode(&a).unwrap(), encode(&b).unwrap());
            prop_assert_eq!(ea.cmp(&eb), cmp(&a, &b), "{} vs {}", a, b);
        }

        #[test]
        fn round_trips(a in key()) {
            let e = encode(&a).unwrap();
            let back = decode(&e).unwrap();
            prop_assert_eq!(encode(&back).unwrap(), e);
        }

        #[test]
        fn a_prefix_is_a_byte_prefix(s in "[a-c\u{0}]{0,4}", t in "[a-c\u{0}]{0,3}") {
            let p = prefix_bytes(&json!(s)).unwrap();
            let whole = encode(&json!(format!("{s}{t}"))).unwrap();
            prop_assert!(whole.starts_with(&p));
            let arr = encode(&json!([s, t])).unwrap();
            prop_assert!(arr.starts_with(&prefix_bytes(&json!([s])).unwrap()));
        }

        #[test]
        fn decoding_any_bytes_never_panics(b in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&b);
        }
    }

    #[test]
    fn numbers_keep_their_order_and_form() {
        let xs = [
            json!(-1e300),
            json!(-2),
            json!(-0.5),
            json!(0),
            json!(0.25),
            json!(3),
            json!(1e300),
        ];
        for w in xs.windows(2) {
            assert!(encode(&w[0]).unwrap() < encode(&w[1]).unwrap());
        }
        assert_eq!(encode(&json!(-0.0)).unwrap(), encode(&json!(0)).unwrap());
        assert_eq!(decode(&encode(&json!(7)).unwrap()).unwrap(), json!(7));
        assert_eq!(decode(&encode(&json!(7.5)).unwrap()).unwrap(), json!(7.5));
    }

    #[test]
    fn objects_deep_arrays_and_long_keys_are_refused() {
        assert_eq!(
            encode(&json!({"a": 1})),
            Err(KeyError::NotAKey("an object"))
        );
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        assert_eq!(encode(&deep), Err(KeyError::TooDeep));
        assert!(matches!(
            encode(&json!("x".repeat(600))),
            Err(KeyError::TooLong(_))
        ));
    }
}
