//! The arithmetic of the guided scenarios' verdicts (`rcluster demo`): latency percentiles,
//! the share of replica copies a joining node takes against the ideal 1/(n+1), the seconds a
//! client saw no answer, lost acknowledged writes, and the trade-off table. Pure: the runner
//! in the node process measures, this decides and draws.

use serde::Serialize;

/// Latency of a set of requests, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The `p`-th percentile (0..=100) of `sorted` (ascending) by the nearest-rank rule; 0 when
/// empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Latency {
    /// The summary of `samples_us` (any order).
    pub fn of(samples_us: &[u64]) -> Latency {
        let mut s = samples_us.to_vec();
        s.sort_unstable();
        Latency {
            count: s.len() as u64,
            p50_us: percentile(&s, 50.0),
            p99_us: percentile(&s, 99.0),
            max_us: s.last().copied().unwrap_or(0),
        }
    }
}

/// How much data a node that joined took, against the ideal: with `n_before` members, a new
/// member should end up with 1/(n_before+1) of every replica copy, whatever N is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Moved {
    /// Replica copies the new node holds.
    pub moved: u64,
    /// Replica copies in the whole cluster after the join.
    pub total: u64,
    pub fraction: f64,
    pub ideal: f64,
    /// `fraction` within [`MOVE_TOLERANCE`] times the ideal (above or below).
    pub near_ideal: bool,
}

/// How far from the ideal share a join may land and still be called near it: virtual nodes
/// place a handful of keys unevenly, so a factor of two either way.
pub const MOVE_TOLERANCE: f64 = 2.0;

/// The ideal share of copies a node joining `n_before` members takes: 1/(n+1).
pub fn ideal_share(n_before: usize) -> f64 {
    1.0 / (n_before as f64 + 1.0)
}

impl Moved {
    pub fn of(moved: u64, total: u64, n_before: usize) -> Moved {
        let ideal = ideal_share(n_before);
        let fraction = if total == 0 {
            0.0
        } else {
            moved as f64 / total as f64
        };
        Moved {
            moved,
            total,
            fraction,
            ideal,
            near_ideal: total > 0
                && fraction <= ideal * MOVE_TOLERANCE
                && fraction >= ideal / MOVE_TOLERANCE,
        }
    }
}

/// One request a client made: which client, when it started (ms from the scenario's start),
/// how long it took, and whether it got an answer it could use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub client: u32,
    pub at_ms: u64,
    pub took_ms: u64,
    pub ok: bool,
}

/// The milliseconds clients saw no answer: a client is without one from the start of its first
/// failed request to the end of its next successful one (or of its last request when none
/// followed); the union of those windows over every client.
pub fn unavailable_ms(attempts: &[Attempt]) -> u64 {
    let mut sorted = attempts.to_vec();
    sorted.sort_by_key(|a| (a.client, a.at_ms));
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut open: Option<(u32, u64)> = None;
    let mut last_end = 0;
    for (i, a) in sorted.iter().enumerate() {
        let end = a.at_ms + a.took_ms;
        match (a.ok, open) {
            (false, None) => open = Some((a.client, a.at_ms)),
            (true, Some((_, start))) => {
                windows.push((start, end));
                open = None;
            }
            _ => {}
        }
        last_end = last_end.max(end);
        // A client's last request: close its window there.
        let last_of_client = sorted.get(i + 1).is_none_or(|n| n.client != a.client);
        if last_of_client {
            if let Some((_, start)) = open.take() {
                windows.push((start, last_end));
            }
            last_end = 0;
        }
    }
    windows.sort_unstable();
    let (mut total, mut reach) = (0, 0);
    for (start, end) in windows {
        let start = start.max(reach);
        if end > start {
            total += end - start;
            reach = end;
        }
    }
    total
}

/// Acknowledged writes lost: those whose value read back (`None`: not found) is not the
/// acknowledged one. Each pair is (acknowledged value, value read back).
pub fn lost<'a>(pairs: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> u64 {
    pairs
        .into_iter()
        .filter(|(acked, read)| *read != Some(*acked))
        .count() as u64
}

/// One row of the trade-off table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TradeRow {
    /// What was varied, e.g. `W/R 2/2` or `chunk 64 KiB`.
    pub setting: String,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU the Redis servers used during the run, in percent of one core (summed).
    pub cpu_percent: f64,
    /// Memory the Redis servers used at the end (summed).
    pub memory_bytes: u64,
    /// Stale reads the checker's register workload found (`None`: not checked).
    pub stale_reads: Option<u64>,
}

impl TradeRow {
    /// A row from the raw measures: `ops` successes with their latencies in µs over
    /// `elapsed_ms`.
    pub fn of(setting: &str, samples_us: &[u64], errors: u64, elapsed_ms: u64) -> TradeRow {
        let l = Latency::of(samples_us);
        TradeRow {
            setting: setting.to_string(),
            ops: l.count,
            errors,
            ops_per_s: if elapsed_ms == 0 {
                0.0
            } else {
                l.count as f64 * 1000.0 / elapsed_ms as f64
            },
            p50_ms: l.p50_us as f64 / 1000.0,
            p99_ms: l.p99_us as f64 / 1000.0,
            cpu_percent: 0.0,
            memory_bytes: 0,
            stale_reads: None,
        }
    }
}

/// The trade-off table as the terminal shows it.
pub fn trade_table(rows: &[TradeRow]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7} {:>9} {:>6}\n",
        "setting", "ops", "errors", "ops/s", "p50 ms", "p99 ms", "cpu %", "mem MiB", "stale"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:>8} {:>7} {:>9.0} {:>9.2} {:>9.2} {:>7.1} {:>9.1} {:>6}\n",
            r.setting,
            r.ops,
            r.errors,
            r.ops_per_s,
            r.p50_ms,
            r.p99_ms,
            r.cpu_percent,
            r.memory_bytes as f64 / (1 << 20) as f64,
            r.stale_reads
                .map_or_else(|| "-".to_string(), |s| s.to_string()),
        ));
    }
    out
}

/// Whether reads through W/R can miss an acknowledged write: only when R + W <= N.
pub fn may_read_stale(n: u8, w: u8, r: u8) -> bool {
    u16::from(w) + u16::from(r) <= u16::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
        let l = Latency::of(&[30, 10, 20]);
        assert_eq!((l.count, l.p50_us, l.p99_us, l.max_us), (3, 20, 30, 30));
    }

    #[test]
    fn a_join_is_judged_against_one_over_n_plus_one() {
        assert!((ideal_share(3) - 0.25).abs() < 1e-9);
        let m = Moved::of(250, 1000, 3);
        assert!(m.near_ideal && (m.fraction - 0.25).abs() < 1e-9);
        assert!(Moved::of(140, 1000, 3).near_ideal);
        assert!(!Moved::of(100, 1000, 3).near_ideal, "far below the ideal");
        assert!(!Moved::of(600, 1000, 3).near_ideal, "far above the ideal");
        assert!(!Moved::of(0, 0, 3).near_ideal);
    }

    #[test]
    fn unavailability_is_the_union_of_each_clients_runs_without_an_answer() {
        let a = |client, at_ms, took_ms, ok| Attempt {
            client,
            at_ms,
            took_ms,
            ok,
        };
        assert_eq!(unavailable_ms(&[a(0, 0, 5, true), a(0, 10, 5, true)]), 0);
        // Client 0 fails at 100 and 200, succeeds at 300 ending at 310: 210 ms.
        let one = [
            a(0, 0, 5, true),
            a(0, 200, 50, false),
            a(0, 100, 50, false),
            a(0, 300, 10, true),
        ];
        assert_eq!(unavailable_ms(&one), 210);
        // Client 1 without an answer from 250 to 400 overlaps: the union is 100..400.
        let mut two = one.to_vec();
        two.extend([a(1, 250, 10, false), a(1, 390, 10, true)]);
        assert_eq!(unavailable_ms(&two), 300);
        // Another client's success does not end a client's own window.
        let three = [a(0, 0, 10, false), a(1, 5, 1, true), a(0, 20, 10, true)];
        assert_eq!(unavailable_ms(&three), 30);
        // A failure with nothing after it counts to its own end.
        assert_eq!(unavailable_ms(&[a(0, 0, 5, true), a(0, 50, 20, false)]), 20);
    }

    #[test]
    fn lost_counts_missing_and_different_values() {
        let pairs: Vec<(&[u8], Option<&[u8]>)> =
            vec![(b"a", Some(b"a")), (b"b", None), (b"c", Some(b"old"))];
        assert_eq!(lost(pairs), 2);
    }

    #[test]
    fn the_table_shows_every_row_and_unchecked_stale_reads_as_a_dash() {
        let mut r = TradeRow::of("W/R 2/2", &[1000, 2000, 3000], 1, 1000);
        assert_eq!(r.ops, 3);
        assert!((r.ops_per_s - 3.0).abs() < 1e-9 && (r.p50_ms - 2.0).abs() < 1e-9);
        r.stale_reads = Some(0);
        let other = TradeRow::of("W/R 1/1", &[], 0, 0);
        let t = trade_table(&[r, other]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].starts_with("W/R 2/2") && lines[1].trim_end().ends_with('0'),
            "{t}"
        );
        assert!(lines[2].trim_end().ends_with('-'), "{t}");
    }

    #[test]
    fn stale_reads_are_possible_only_without_overlap() {
        assert!(may_read_stale(3, 1, 1));
        assert!(!may_read_stale(3, 2, 2));
        assert!(!may_read_stale(3, 3, 1));
        assert!(!may_read_stale(3, 1, 3));
    }
}
