//! SHA-256 helpers for chunk and file integrity: hashing and parsing hex digests.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Parses a 64-character hex digest (either case) into its lowercase form.
pub fn parse_sha256_hex(text: &[u8]) -> Option<String> {
    if text.len() != 64 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // All bytes are ASCII hex digits, so this is valid UTF-8.
    std::str::from_utf8(text).ok().map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_accepts_upper_and_rejects_bad() {
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(
            parse_sha256_hex(upper.as_bytes()).unwrap(),
            sha256_hex(b"abc")
        );
        assert!(parse_sha256_hex(b"abc").is_none());
        assert!(parse_sha256_hex(&[b'z'; 64]).is_none());
    }
}
