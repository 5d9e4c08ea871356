//! How the contract's typed replies meet a RESP client library without depending on one:
//! [`Build`] makes a reply value out of parts (the module builds Redis module replies with it),
//! [`Read`] looks at a received reply value (the coordinator and the node process read `redis`
//! crate values with it). [`Value`] is the contract's own reply value, for tests and tools.

use crate::version::{PutOutcome, Version};

use super::Decimal;

/// Builds one reply value of type `Out`.
pub trait Build {
    type Out;
    fn nil() -> Self::Out;
    fn int(n: i64) -> Self::Out;
    fn bulk(bytes: Vec<u8>) -> Self::Out;
    fn status(text: &'static str) -> Self::Out;
    fn array(items: Vec<Self::Out>) -> Self::Out;

    /// A version or timestamp: a bulk string of its decimal digits (a u64, so never an integer
    /// reply that could overflow i64).
    fn number(n: u64) -> Self::Out {
        Self::bulk(Decimal::new(n).as_bytes().to_vec())
    }
}

/// A view of one received reply value (cheap to copy: a reference).
pub trait Read<'a>: Copy {
    fn is_nil(self) -> bool;
    fn int(self) -> Option<i64>;
    /// A bulk string's bytes.
    fn bulk(self) -> Option<&'a [u8]>;
    /// A status reply's text (`OK` included).
    fn status(self) -> Option<&'a str>;
    /// An array's length.
    fn array_len(self) -> Option<usize>;
    /// An array's item.
    fn item(self, i: usize) -> Option<Self>;

    /// Whether it is a status reply of exactly `text`.
    fn is_status(self, text: &str) -> bool {
        self.status() == Some(text)
    }

    /// The items of an array of exactly `n`.
    fn items_of(self, n: usize) -> Option<impl Iterator<Item = Self>> {
        (self.array_len()? == n).then(|| (0..n).filter_map(move |i| self.item(i)))
    }
}

/// A u64 carried as text (bulk or status) or as an integer reply.
pub fn u64_of<'a>(v: impl Read<'a>) -> Option<u64> {
    if let Some(i) = v.int() {
        return u64::try_from(i).ok();
    }
    let text = v.bulk().or_else(|| v.status().map(str::as_bytes))?;
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Text carried as a bulk or status string, or an integer reply.
pub fn text_of<'a>(v: impl Read<'a>) -> Option<String> {
    if let Some(i) = v.int() {
        return Some(i.to_string());
    }
    let bytes = v.bulk().or_else(|| v.status().map(str::as_bytes))?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// The version two reply items carry (timestamp, origin node): as `RC.REPLICA.GET` replies, a
/// replica's `stale` answer and `HMGET key version origin` give them.
pub fn version_of<'a, R: Read<'a>>(ts: R, origin: R) -> Option<Version> {
    Some(Version::new(u64_of(ts)?, text_of(origin)?))
}

/// A put-if-newer outcome given as a status (`applied`, `duplicate`, `stale`).
pub fn outcome_of<'a>(v: impl Read<'a>) -> Option<PutOutcome> {
    match v.status()? {
        "applied" => Some(PutOutcome::Applied),
        "duplicate" => Some(PutOutcome::Duplicate),
        "stale" => Some(PutOutcome::Stale),
        _ => None,
    }
}

/// `1` or `0`: whether something was removed or changed.
pub fn flag_of<'a>(v: impl Read<'a>) -> Option<bool> {
    match v.int()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// A reply value as the contract knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Status(String),
    Array(Vec<Value>),
}

impl Build for Value {
    type Out = Value;
    fn nil() -> Value {
        Value::Nil
    }
    fn int(n: i64) -> Value {
        Value::Int(n)
    }
    fn bulk(bytes: Vec<u8>) -> Value {
        Value::Bulk(bytes)
    }
    fn status(text: &'static str) -> Value {
        Value::Status(text.to_string())
    }
    fn array(items: Vec<Value>) -> Value {
        Value::Array(items)
    }
}

impl<'a> Read<'a> for &'a Value {
    fn is_nil(self) -> bool {
        matches!(self, Value::Nil)
    }
    fn int(self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn bulk(self) -> Option<&'a [u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            _ => None,
        }
    }
    fn status(self) -> Option<&'a str> {
        match self {
            Value::Status(s) => Some(s),
            _ => None,
        }
    }
    fn array_len(self) -> Option<usize> {
        match self {
            Value::Array(items) => Some(items.len()),
            _ => None,
        }
    }
    fn item(self, i: usize) -> Option<Self> {
        match self {
            Value::Array(items) => items.get(i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_carry_versions_as_text_or_integers() {
        let (ts, origin) = (Value::Bulk(b"42".to_vec()), Value::Bulk(b"n1".to_vec()));
        assert_eq!(version_of(&ts, &origin), Some(Version::new(42, "n1")));
        assert_eq!(
            version_of(&Value::Int(7), &Value::Status("n2".into())),
            Some(Version::new(7, "n2"))
        );
        assert_eq!(version_of(&Value::Int(-1), &origin), None);
        assert_eq!(version_of(&Value::Bulk(b"x".to_vec()), &origin), None);
        assert_eq!(version_of(&ts, &Value::Nil), None);
        assert_eq!(
            Value::number(u64::MAX),
            Value::Bulk(u64::MAX.to_string().into_bytes())
        );
    }

    #[test]
    fn outcomes_and_flags() {
        for o in [
            PutOutcome::Applied,
            PutOutcome::Duplicate,
            PutOutcome::Stale,
        ] {
            assert_eq!(outcome_of(&Value::status(o.as_str())), Some(o));
        }
        assert_eq!(outcome_of(&Value::Bulk(b"applied".to_vec())), None);
        assert_eq!(flag_of(&Value::Int(1)), Some(true));
        assert_eq!(flag_of(&Value::Int(0)), Some(false));
        assert_eq!(flag_of(&Value::Int(2)), None);
        let a = Value::Array(vec![Value::Int(1), Value::Nil]);
        assert_eq!((&a).items_of(2).map(|i| i.count()), Some(2));
        assert!((&a).items_of(3).is_none());
    }
}
