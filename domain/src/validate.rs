//! Argument checks shared by every `RC.*` command and the HTTP API: each returns the parsed value
//! or a coded error whose message names the argument and the problem.

use crate::checksum::{parse_crc32c_hex, parse_sha256_hex};
use crate::codes::{Code, CodedError};

/// Chunk indexes run from 0 to this bound (exclusive): 1 Mi chunks of at most 5 MiB each.
pub const MAX_CHUNK_INDEX: u32 = 1 << 20;
/// Longest node id.
pub const MAX_NODE_ID_BYTES: usize = 32;
/// Longest file id.
pub const MAX_FILE_ID_BYTES: usize = 128;

type Result<T> = std::result::Result<T, CodedError>;

/// A short printable ASCII rendering of an argument for error messages: bytes outside printable
/// ASCII are shown as `\xNN` (error replies must stay plain text), and a long argument is cut.
pub fn show(arg: &[u8]) -> String {
    const SHOWN: usize = 64;
    let mut out = String::new();
    for &b in &arg[..arg.len().min(SHOWN)] {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if arg.len() > SHOWN {
        out.push_str(&format!("... ({} bytes)", arg.len()));
    }
    out
}

fn bad(message: String) -> CodedError {
    CodedError::new(Code::BadArg, message)
}

/// A user key: 1 to `max_bytes` bytes of UTF-8.
pub fn user_key(arg: &[u8], max_bytes: u64) -> Result<&str> {
    if arg.is_empty() {
        return Err(bad("key must not be empty".into()));
    }
    check_size("key", arg.len(), max_bytes, "rcluster.max-key-bytes")?;
    std::str::from_utf8(arg).map_err(|_| bad(format!("key '{}' is not valid UTF-8", show(arg))))
}

/// A size check: `what` is at most `max_bytes` long, else `TOOLARGE` naming the setting.
pub fn check_size(what: &str, len: usize, max_bytes: u64, setting: &str) -> Result<()> {
    if len as u64 > max_bytes {
        return Err(CodedError::new(
            Code::TooLarge,
            format!("{what} is {len} bytes, the limit is {max_bytes} ({setting})"),
        ));
    }
    Ok(())
}

/// An unsigned 64-bit decimal number (a version or timestamp).
pub fn u64_arg(name: &str, arg: &[u8]) -> Result<u64> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            bad(format!(
                "{name} must be an unsigned 64-bit integer, got '{}'",
                show(arg)
            ))
        })
}

fn ident(
    name: &str,
    arg: &[u8],
    max: usize,
    allowed: fn(u8) -> bool,
    rule: &str,
) -> Result<String> {
    if arg.is_empty() || arg.len() > max || !arg.iter().all(|b| allowed(*b)) {
        return Err(bad(format!(
            "{name} '{}' is invalid: use 1 to {max} characters from {rule}",
            show(arg)
        )));
    }
    // Only ASCII bytes pass the check above.
    Ok(String::from_utf8_lossy(arg).into_owned())
}

pub fn is_node_id_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// A node id: 1 to 32 of `a-z 0-9 - _`.
pub fn node_id(arg: &[u8]) -> Result<String> {
    ident(
        "node id",
        arg,
        MAX_NODE_ID_BYTES,
        is_node_id_byte,
        "a-z, 0-9, '-' and '_'",
    )
}

/// A file id: 1 to 128 of `A-Z a-z 0-9 - _` (no ':' so key names stay unambiguous).
pub fn file_id(arg: &[u8]) -> Result<String> {
    ident(
        "file id",
        arg,
        MAX_FILE_ID_BYTES,
        |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
        "A-Z, a-z, 0-9, '-' and '_'",
    )
}

/// A chunk index below [`MAX_CHUNK_INDEX`].
pub fn chunk_index(arg: &[u8]) -> Result<u32> {
    let n = u64_arg("chunk index", arg)?;
    u32::try_from(n)
        .ok()
        .filter(|i| *i < MAX_CHUNK_INDEX)
        .ok_or_else(|| {
            bad(format!(
                "chunk index {n} is out of range 0..{MAX_CHUNK_INDEX}"
            ))
        })
}

/// A SHA-256 digest in hex, returned lowercase.
pub fn sha256(arg: &[u8]) -> Result<String> {
    parse_sha256_hex(arg).ok_or_else(|| {
        bad(format!(
            "sha256 must be 64 hex characters, got '{}'",
            show(arg)
        ))
    })
}

/// A CRC-32C in hex (8 characters), returned lowercase.
pub fn crc32c(arg: &[u8]) -> Result<String> {
    parse_crc32c_hex(arg).ok_or_else(|| {
        bad(format!(
            "crc32c must be 8 hex characters, got '{}'",
            show(arg)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(user_key(b"abc", 10).unwrap(), "abc");
        assert_eq!(user_key(b"", 10).unwrap_err().code, Code::BadArg);
        let e = user_key(b"abcdefghijk", 10).unwrap_err();
        assert_eq!(e.code, Code::TooLarge);
        assert!(e.message.contains("11 bytes") && e.message.contains("rcluster.max-key-bytes"));
        assert!(user_key(&[0xff, 0xfe], 10)
            .unwrap_err()
            .message
            .contains("UTF-8"));
    }

    #[test]
    fn numbers() {
        assert_eq!(u64_arg("version", b"42").unwrap(), 42);
        assert_eq!(
            u64_arg("version", b"18446744073709551615").unwrap(),
            u64::MAX
        );
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1.5",
            b"abc",
            b"18446744073709551616",
            b" 1",
        ] {
            let e = u64_arg("version", bad).unwrap_err();
            assert_eq!(e.code, Code::BadArg);
            assert!(e.message.starts_with("version must be"));
        }
    }

    #[test]
    fn identifiers() {
        assert_eq!(node_id(b"n-1_a").unwrap(), "n-1_a");
        assert!(node_id(b"N1").is_err());
        assert!(node_id(&[b'a'; 33]).is_err());
        assert_eq!(file_id(b"Ab-9_z").unwrap(), "Ab-9_z");
        assert!(file_id(b"a:b").is_err());
        assert!(file_id(b"../etc").is_err());
        assert_eq!(chunk_index(b"0").unwrap(), 0);
        assert!(chunk_index(b"1048576").is_err());
    }

    #[test]
    fn show_is_bounded_and_printable() {
        let long = vec![b'x'; 1000];
        assert!(show(&long).len() <= 90);
        assert_eq!(show(b"a\nb\xff"), "a\\x0ab\\xff");
    }
}
