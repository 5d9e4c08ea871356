//! Hinted handoff entries: a write held for a node that was down, stored as one field of the
//! hash `hint:<node>` (field = user key). The value is `<version> <origin> <tombstone> <bytes>`:
//! readable in Redis Insight, binary-safe for the value.

use crate::version::Version;

/// One held write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    pub version: Version,
    pub tombstone: bool,
    pub value: Vec<u8>,
}

/// The Redis key holding the hints for `node`.
pub fn hint_key(node: &str) -> String {
    format!("hint:{node}")
}

pub fn encode(version: &Version, tombstone: bool, value: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} {} ", version.ts, version.node, u8::from(tombstone)).into_bytes();
    out.extend_from_slice(value);
    out
}

pub fn decode(bytes: &[u8]) -> Option<Hint> {
    let mut parts = bytes.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let node = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let tombstone = match parts.next()? {
        b"0" => false,
        b"1" => true,
        _ => return None,
    };
    let value = parts.next()?.to_vec();
    Some(Hint {
        version: Version::new(ts, node),
        tombstone,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_binary_value() {
        let v = Version::new(42, "n1");
        let value = b"a b\x00\xff c".to_vec();
        let hint = decode(&encode(&v, false, &value)).unwrap();
        assert_eq!(
            hint,
            Hint {
                version: v.clone(),
                tombstone: false,
                value
            }
        );
        let t = decode(&encode(&v, true, b"")).unwrap();
        assert!(t.tombstone && t.value.is_empty());
        assert!(decode(b"x n1 0 v").is_none());
        assert!(decode(b"1 n1 2 v").is_none());
        assert!(decode(b"1 n1").is_none());
    }
}
