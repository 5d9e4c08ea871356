//! Handling secrets (API keys, passwords): compare without leaking content through timing, and
//! show only a short prefix in logs and errors.

/// Whether `a` and `b` are equal, in time that does not depend on their content.
///
/// Every byte position up to the longer length is XORed into one accumulator (missing bytes count
/// as 0, and the length difference is folded in too), with no early exit, so the time depends
/// only on `max(a.len(), b.len())`. Lengths are not treated as secret: the time reveals the
/// longer length, which for a short guess is the secret's length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut acc: usize = a.len() ^ b.len();
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        acc |= usize::from(x ^ y);
    }
    // Keep the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(acc) == 0
}

/// A loggable stand-in for `key`: its first 4 characters and "…". Short keys show at most half
/// their characters (a key of 8 characters or fewer would otherwise be mostly or fully shown), so
/// a key of 1 character or none shows only "…".
pub fn redact(key: &str) -> String {
    let shown = (key.chars().count() / 2).min(4);
    let mut out: String = key.chars().take(shown).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_and_unequal() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key", b"secret-kez"));
        assert!(!constant_time_eq(b"secret-key", b"Secret-key"));
        assert!(!constant_time_eq(b"secret", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        // A shorter input padded with zeros is still different.
        assert!(!constant_time_eq(b"ab", b"ab\0"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn redact_shows_a_prefix_only() {
        assert_eq!(redact("rk_live_0123456789abcdef"), "rk_l…");
        assert_eq!(redact("abcdefgh"), "abcd…");
        assert_eq!(redact("abcd"), "ab…");
        assert_eq!(redact("a"), "…");
        assert_eq!(redact(""), "…");
        // Characters, not bytes: never splits a UTF-8 sequence.
        assert_eq!(redact("ключ-секрет"), "ключ…");
    }

    proptest! {
        #[test]
        fn matches_slice_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                  b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            prop_assert!(constant_time_eq(&a, &a.clone()));
        }

        #[test]
        fn redact_never_reveals_more_than_half(key in ".{0,40}") {
            let r = redact(&key);
            let shown = r.chars().count() - 1;
            prop_assert!(r.ends_with('…'));
            prop_assert!(shown <= 4 && shown * 2 <= key.chars().count());
            prop_assert!(key.starts_with(r.trim_end_matches('…')) || shown == 0);
        }
    }
}
