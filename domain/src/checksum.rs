//! Checksums for chunk and file integrity: SHA-256 (a chunk's and a file's identity, checked when
//! a chunk is first stored) and CRC-32C (the cheap check of a stored chunk's bytes on every read
//! and copy), hashing and parsing their hex forms.

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

/// CRC-32C (Castagnoli) of `data` as 8 lowercase hex digits. Hardware-accelerated (SSE 4.2),
/// about ten times the speed of SHA-256: it catches accidental damage (bit flips, truncation, a
/// field overwritten by hand), not forgery, which is what a check on every read needs; SHA-256
/// stays the digest a chunk is named and first checked by.
pub fn crc32c_hex(data: &[u8]) -> String {
    format!("{:08x}", crc32c::crc32c(data))
}

/// Parses an 8-character hex CRC-32C (either case) into its lowercase form.
pub fn parse_crc32c_hex(text: &[u8]) -> Option<String> {
    if text.len() != 8 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
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
    fn known_crc32c() {
        // The check value of CRC-32C (RFC 3720, appendix B.4).
        assert_eq!(crc32c_hex(b"123456789"), "e3069283");
        assert_eq!(crc32c_hex(b""), "00000000");
        assert_eq!(parse_crc32c_hex(b"E3069283").as_deref(), Some("e3069283"));
        assert!(parse_crc32c_hex(b"e306928").is_none());
        assert!(parse_crc32c_hex(b"e306928g").is_none());
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
