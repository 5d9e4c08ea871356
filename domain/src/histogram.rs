//! The one latency histogram layout the module records and the node process exports: bucket
//! bounds in microseconds, and the `INFO rcluster` form of one histogram (`count=..,sum_us=..,
//! b<i>=..` with only the non-empty buckets), parsed back into cumulative Prometheus buckets.

/// Upper bounds (µs) of the buckets; one more bucket counts everything above the last.
pub const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets of one histogram: one per bound plus the one above the last.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// The bucket a duration of `us` microseconds falls in.
pub fn bucket_of(us: u64) -> usize {
    BOUNDS_US.partition_point(|b| *b < us)
}

/// One histogram's counts: per bucket (not cumulative) and the sum of the durations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl Snapshot {
    /// Observations in all buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `INFO` form: `count=3,sum_us=1200,b3=2,b5=1` (empty buckets left out).
    pub fn encode(&self) -> String {
        let mut out = format!("count={},sum_us={}", self.count(), self.sum_us);
        for (i, n) in self.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
            out.push_str(&format!(",b{i}={n}"));
        }
        out
    }

    /// Reads [`Snapshot::encode`]'s form; `None` when a part is malformed or `count` disagrees
    /// with the buckets.
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut s = Snapshot::default();
        let mut count = None;
        for pair in text.trim().split(',') {
            let (name, value) = pair.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match name {
                "count" => count = Some(value),
                "sum_us" => s.sum_us = value,
                b => {
                    let i: usize = b.strip_prefix('b')?.parse().ok()?;
                    *s.buckets.get_mut(i)? = value;
                }
            }
        }
        (count? == s.count()).then_some(s)
    }

    /// Cumulative counts at each bound in seconds (the last is +Inf), as Prometheus's
    /// `_bucket{le=..}` series show them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                total += n;
                let le = BOUNDS_US
                    .get(i)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (le, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_at_or_above_them() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(100), 0);
        assert_eq!(bucket_of(101), 1);
        assert_eq!(bucket_of(1_000), 3);
        assert_eq!(bucket_of(10_000_000), 15);
        assert_eq!(bucket_of(10_000_001), 16);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_info_form_round_trips_and_is_cumulative() {
        let mut s = Snapshot::default();
        s.buckets[3] = 2;
        s.buckets[16] = 1;
        s.sum_us = 12_000_000;
        assert_eq!(s.encode(), "count=3,sum_us=12000000,b3=2,b16=1");
        assert_eq!(Snapshot::parse(&s.encode()), Some(s.clone()));
        let c = s.cumulative();
        assert_eq!(c.len(), BUCKETS);
        assert_eq!(c[2], (0.0005, 0));
        assert_eq!(c[3], (0.001, 2));
        assert_eq!(c[15], (10.0, 2));
        assert!(c[16].0.is_infinite());
        assert_eq!(c[16].1, 3);
    }

    #[test]
    fn malformed_forms_are_refused() {
        for bad in [
            "",
            "count=2,sum_us=1,b0=1",
            "count=1,sum_us=1,b17=1",
            "count=1,sum_us=x,b0=1",
            "count=1,b0=1,bx=0",
            "sum_us=1,b0=1",
        ] {
            assert_eq!(Snapshot::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Snapshot::parse("count=0,sum_us=0"),
            Some(Snapshot::default())
        );
    }
}
