//! The hybrid logical clock: physical milliseconds plus a logical counter, packed into one `u64`
//! so a version reads as a plain number. Wall time is passed in; the clock never goes backwards.

/// Bits of the packed timestamp given to the logical counter.
pub const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
/// Largest physical time (ms since the Unix epoch) a timestamp can carry (year 10889).
pub const MAX_PHYSICAL_MS: u64 = u64::MAX >> LOGICAL_BITS;

/// One hybrid timestamp: `physical_ms << 16 | logical`. Ordered as a plain integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn new(physical_ms: u64, logical: u16) -> Self {
        Timestamp((physical_ms.min(MAX_PHYSICAL_MS) << LOGICAL_BITS) | u64::from(logical))
    }
    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }
    pub fn logical(self) -> u16 {
        // Masked to 16 bits, so the conversion cannot fail.
        (self.0 & LOGICAL_MASK) as u16
    }
}

/// Why a remote timestamp was not merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// The remote physical time is further ahead of our wall clock than allowed.
    TooFarAhead { ahead_ms: u64, max_forward_ms: u64 },
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::TooFarAhead {
                ahead_ms,
                max_forward_ms,
            } => write!(
                f,
                "remote timestamp is {ahead_ms} ms ahead of the local clock (limit {max_forward_ms} ms)"
            ),
        }
    }
}

/// The clock state: the last timestamp handed out or observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hlc {
    last: Timestamp,
}

impl Hlc {
    /// A clock that has issued nothing yet (usable in a `static`).
    pub const ZERO: Hlc = Hlc { last: Timestamp(0) };

    pub fn new() -> Self {
        Hlc::ZERO
    }

    /// The last timestamp issued or merged (what `RC.CLOCK` shows without ticking).
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A new timestamp strictly greater than every earlier one, for a local event at `wall_ms`.
    /// When the wall clock steps back, the physical part holds and the logical part counts on.
    pub fn tick(&mut self, wall_ms: u64) -> Timestamp {
        self.advance_to(Timestamp::new(wall_ms, 0))
    }

    /// Lamport receive rule: the result is greater than both our last timestamp and `remote`.
    /// A remote time further than `max_forward_ms` ahead of `wall_ms` is refused, so one node
    /// with a broken clock cannot drag every other clock into the future.
    pub fn merge(
        &mut self,
        remote: Timestamp,
        wall_ms: u64,
        max_forward_ms: u64,
    ) -> Result<Timestamp, MergeError> {
        let ahead_ms = remote.physical_ms().saturating_sub(wall_ms);
        if ahead_ms > max_forward_ms {
            return Err(MergeError::TooFarAhead {
                ahead_ms,
                max_forward_ms,
            });
        }
        let floor = self.last.max(remote);
        self.last = floor;
        Ok(self.advance_to(Timestamp::new(wall_ms, 0)))
    }

    /// Moves past `max(last, candidate)`: the candidate if it is newer, else last + 1 logical
    /// step (overflowing the logical counter carries into the physical part).
    fn advance_to(&mut self, candidate: Timestamp) -> Timestamp {
        let next = if candidate > self.last {
            candidate
        } else {
            Timestamp(self.last.0.saturating_add(1))
        };
        self.last = next;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tick_follows_wall_clock() {
        let mut c = Hlc::new();
        assert_eq!(c.tick(1000), Timestamp::new(1000, 0));
        assert_eq!(c.tick(1005), Timestamp::new(1005, 0));
    }

    #[test]
    fn same_millisecond_counts_logically() {
        let mut c = Hlc::new();
        c.tick(1000);
        assert_eq!(c.tick(1000), Timestamp::new(1000, 1));
        assert_eq!(c.tick(1000), Timestamp::new(1000, 2));
    }

    #[test]
    fn wall_clock_stepping_back_never_moves_clock_back() {
        let mut c = Hlc::new();
        let a = c.tick(5000);
        let b = c.tick(1000);
        assert!(b > a);
        assert_eq!(b, Timestamp::new(5000, 1));
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let mut c = Hlc::new();
        c.last = Timestamp::new(7, u16::MAX);
        assert_eq!(c.tick(7), Timestamp::new(8, 0));
    }

    #[test]
    fn merge_moves_past_remote() {
        let mut c = Hlc::new();
        c.tick(1000);
        let got = c.merge(Timestamp::new(1500, 3), 1000, 60_000).unwrap();
        assert_eq!(got, Timestamp::new(1500, 4));
        assert!(c.tick(1000) > got);
    }

    #[test]
    fn merge_of_older_remote_still_ticks() {
        let mut c = Hlc::new();
        let a = c.tick(2000);
        let got = c.merge(Timestamp::new(10, 0), 2000, 60_000).unwrap();
        assert!(got > a);
    }

    #[test]
    fn merge_refuses_far_future() {
        let mut c = Hlc::new();
        let before = c.tick(1000);
        let err = c
            .merge(Timestamp::new(100_000, 0), 1000, 60_000)
            .unwrap_err();
        assert_eq!(
            err,
            MergeError::TooFarAhead {
                ahead_ms: 99_000,
                max_forward_ms: 60_000
            }
        );
        assert_eq!(c.last(), before, "a refused merge changes nothing");
    }

    proptest! {
        #[test]
        fn strictly_monotonic_under_any_wall_clock(
            steps in proptest::collection::vec((0u64..10_000, any::<bool>(), 0u64..20_000), 1..200)
        ) {
            let mut c = Hlc::new();
            let mut prev = Timestamp(0);
            for (wall, is_merge, remote) in steps {
                let t = if is_merge {
                    match c.merge(Timestamp::new(remote, 0), wall, 5_000) {
                        Ok(t) => t,
                        Err(_) => continue,
                    }
                } else {
                    c.tick(wall)
                };
                prop_assert!(t > prev);
                prev = t;
            }
        }

        #[test]
        fn packing_round_trips(p in 0u64..=MAX_PHYSICAL_MS, l in any::<u16>()) {
            let t = Timestamp::new(p, l);
            prop_assert_eq!(t.physical_ms(), p);
            prop_assert_eq!(t.logical(), l);
        }
    }
}
