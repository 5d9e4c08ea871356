//! Token-bucket rate limiting per key (client, peer, ...), with a bounded number of keys. Times
//! are passed in (ms); a refusal says how long to wait before retrying.

use std::collections::{BTreeMap, HashMap};

/// Slack for float rounding, so a caller retrying exactly at the advertised time is admitted.
const EPSILON: f64 = 1e-9;

/// One bucket: holds up to `capacity` tokens, refilled continuously; a request takes one.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_ms: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket admitting `burst` requests at once (0 is taken as 1) and `rate_per_s`
    /// sustained. With `rate_per_s` 0 it never refills.
    pub fn new(rate_per_s: u32, burst: u32, now_ms: u64) -> Self {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            refill_per_ms: f64::from(rate_per_s) / 1000.0,
            tokens: capacity,
            last_ms: now_ms,
        }
    }

    /// Takes a token at `now_ms`, or says how many ms until one is available (at least 1;
    /// `u64::MAX` if the bucket never refills). A `now_ms` earlier than a previous call adds
    /// nothing (time going backwards earns no tokens).
    pub fn try_take(&mut self, now_ms: u64) -> Result<(), u64> {
        if now_ms > self.last_ms {
            let earned = (now_ms - self.last_ms) as f64 * self.refill_per_ms;
            self.tokens = (self.tokens + earned).min(self.capacity);
            self.last_ms = now_ms;
        }
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        if self.refill_per_ms <= 0.0 {
            return Err(u64::MAX);
        }
        // Half the slack: waiting this long always reaches the admission threshold, and float
        // noise in `1 - tokens` (0.0100000000009 for 0.01) does not add a millisecond.
        // `as` saturates for huge values.
        let needed = 1.0 - EPSILON / 2.0 - self.tokens;
        let wait = (needed / self.refill_per_ms).ceil() as u64;
        Err(wait.max(1))
    }

    /// Whether a request at `now_ms` would be admitted, taking nothing (the same answer as
    /// [`TokenBucket::try_take`]).
    pub fn peek(&self, now_ms: u64) -> Result<(), u64> {
        self.clone().try_take(now_ms)
    }

    /// Tokens available as of the last call (for tests and metrics).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// Buckets for many keys sharing one rate and burst. At most `max_keys` buckets are kept; adding
/// one more evicts the least recently used. An evicted key starts again with a full bucket, so
/// `max_keys` should exceed the number of keys active within a refill period.
#[derive(Clone, Debug)]
pub struct Limiter {
    buckets: HashMap<String, Entry>,
    /// Last-use stamp -> key; the first entry is the least recently used.
    by_use: BTreeMap<u64, String>,
    next_use: u64,
    rate: u32,
    burst: u32,
    max_keys: usize,
}

#[derive(Clone, Debug)]
struct Entry {
    bucket: TokenBucket,
    used: u64,
}

impl Limiter {
    /// `rate_per_s` and `burst` for every key; `max_keys` buckets at most (0 is taken as 1).
    pub fn new(rate_per_s: u32, burst: u32, max_keys: usize) -> Self {
        Limiter {
            buckets: HashMap::new(),
            by_use: BTreeMap::new(),
            next_use: 0,
            rate: rate_per_s,
            burst,
            max_keys: max_keys.max(1),
        }
    }

    /// Admits one request for `key` at `now_ms`, or returns the ms to wait (at least 1).
    pub fn check(&mut self, key: &str, now_ms: u64) -> Result<(), u64> {
        let used = self.next_use;
        self.next_use += 1;
        if let Some(entry) = self.buckets.get_mut(key) {
            self.by_use.remove(&entry.used);
            entry.used = used;
            self.by_use.insert(used, key.to_owned());
            return entry.bucket.try_take(now_ms);
        }
        while self.buckets.len() >= self.max_keys {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.buckets.remove(&oldest);
        }
        let mut bucket = TokenBucket::new(self.rate, self.burst, now_ms);
        let verdict = bucket.try_take(now_ms);
        self.buckets.insert(key.to_owned(), Entry { bucket, used });
        self.by_use.insert(used, key.to_owned());
        verdict
    }

    /// Whether a request for `key` at `now_ms` would be admitted, taking nothing and touching
    /// no recency (a key not tracked has a full bucket).
    pub fn peek(&self, key: &str, now_ms: u64) -> Result<(), u64> {
        self.buckets
            .get(key)
            .map_or(Ok(()), |entry| entry.bucket.peek(now_ms))
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_refusal_with_retry_after() {
        // 10/s = one token per 100 ms, burst 3.
        let mut b = TokenBucket::new(10, 3, 1_000);
        for _ in 0..3 {
            assert_eq!(b.try_take(1_000), Ok(()));
        }
        assert_eq!(b.try_take(1_000), Err(100));
        assert_eq!(b.try_take(1_040), Err(60));
        assert_eq!(b.try_take(1_099), Err(1));
        assert_eq!(b.try_take(1_100), Ok(()));
        assert_eq!(b.try_take(1_100), Err(100));
    }

    #[test]
    fn retry_at_advertised_time_is_admitted() {
        // Rates that do not divide 1000 evenly.
        for rate in [3, 7, 13, 999, 1001] {
            let mut b = TokenBucket::new(rate, 1, 0);
            let mut now = 0;
            assert_eq!(b.try_take(now), Ok(()));
            for _ in 0..200 {
                let wait = b.try_take(now).unwrap_err();
                assert!(wait >= 1);
                now += wait;
                assert_eq!(b.try_take(now), Ok(()), "rate {rate} at {now}");
            }
        }
    }

    #[test]
    fn refill_over_time_caps_at_burst() {
        let mut b = TokenBucket::new(5, 2, 0);
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(0), Err(200));
        // An hour later only the burst is available.
        assert_eq!(b.try_take(3_600_000), Ok(()));
        assert_eq!(b.try_take(3_600_000), Ok(()));
        assert!(b.try_take(3_600_000).is_err());
        // Time going backwards earns nothing.
        assert!(b.try_take(0).is_err());
    }

    #[test]
    fn zero_rate_and_zero_burst() {
        let mut b = TokenBucket::new(0, 0, 0);
        assert_eq!(b.try_take(0), Ok(()));
        assert_eq!(b.try_take(1_000_000), Err(u64::MAX));
    }

    #[test]
    fn keys_are_independent() {
        let mut l = Limiter::new(1, 1, 100);
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.check("a", 0), Err(1000));
        assert_eq!(l.check("b", 0), Ok(()));
        assert_eq!(l.check("a", 1000), Ok(()));
        assert_eq!(l.check("b", 500), Err(500));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn peek_takes_nothing() {
        let mut l = Limiter::new(1, 2, 10);
        assert_eq!(l.peek("a", 0), Ok(()));
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.peek("a", 0), Ok(()));
        assert_eq!(l.peek("a", 0), Ok(()));
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.peek("a", 0), Err(1000));
        assert_eq!(l.peek("a", 1000), Ok(()));
        assert_eq!(l.check("a", 1000), Ok(()));
        assert_eq!(l.check("a", 1000), Err(1000));
    }

    #[test]
    fn bounded_size_evicts_least_recently_used() {
        let mut l = Limiter::new(1, 1, 2);
        assert!(l.is_empty());
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.check("b", 0), Ok(()));
        assert!(l.check("a", 1).is_err()); // touches a: b is now the oldest
        assert_eq!(l.check("c", 2), Ok(())); // evicts b
        assert_eq!(l.len(), 2);
        assert!(l.check("a", 3).is_err()); // a kept its (empty) bucket
        assert_eq!(l.check("b", 4), Ok(())); // b starts fresh
        for i in 0..10_000 {
            let _ = l.check(&format!("k{i}"), 5);
        }
        assert_eq!(l.len(), 2);
        assert_eq!(l.by_use.len(), 2);
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_refill(
            rate in 1u32..100,
            burst in 1u32..20,
            steps in proptest::collection::vec(0u64..50, 1..500),
        ) {
            let mut b = TokenBucket::new(rate, burst, 0);
            let mut now = 0;
            let mut admitted = 0u64;
            for s in steps {
                now += s;
                if b.try_take(now).is_ok() {
                    admitted += 1;
                }
            }
            let limit = u64::from(burst) + (now * u64::from(rate)) / 1000 + 1;
            prop_assert!(admitted <= limit, "{admitted} > {limit}");
        }

        #[test]
        fn limiter_stays_bounded(
            keys in proptest::collection::vec(0u8..50, 1..300),
            max in 1usize..10,
        ) {
            let mut l = Limiter::new(10, 2, max);
            for (t, k) in keys.iter().enumerate() {
                let _ = l.check(&k.to_string(), t as u64);
                prop_assert!(l.len() <= max);
                prop_assert_eq!(l.len(), l.by_use.len());
            }
        }
    }
}
