//! Quorum decisions, free of I/O: parsing a request's `W`/`R`/`TIMEOUT` options, picking the
//! newest of the replicas' answers, and finding the replicas a read must repair (a round's
//! `NOQUORUM` wording is in `round`, which knows who answered).

use crate::codes::{Code, CodedError};
use crate::validate;
use crate::version::Version;

/// Longest request timeout a client may ask for.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Per-request overrides of the cluster defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub count: Option<u8>,
    pub timeout_ms: Option<u64>,
}

/// Parses `[<count_name> n] [TIMEOUT ms]` (names case-insensitive, each at most once).
/// `count_name` is `W` for writes, `R` for reads, `None` when only TIMEOUT is allowed; `n` is the
/// replica count of the cluster.
pub fn parse_options(
    args: &[&[u8]],
    count_name: Option<&str>,
    n: u8,
) -> Result<Options, CodedError> {
    let bad = |m: String| CodedError::new(Code::BadArg, m);
    let expected = match count_name {
        Some(c) => format!("{c} or TIMEOUT"),
        None => "TIMEOUT".to_string(),
    };
    if !args.len().is_multiple_of(2) {
        return Err(bad(format!(
            "options come in pairs ({expected} <value>), got '{}' without a value",
            validate::show(args[args.len() - 1])
        )));
    }
    let mut opts = Options::default();
    for pair in args.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        if let Some(count_name) = count_name.filter(|c| name.eq_ignore_ascii_case(c.as_bytes())) {
            if opts.count.is_some() {
                return Err(bad(format!("{count_name} given twice")));
            }
            let v = validate::u64_arg(count_name, value)?;
            if v == 0 || v > u64::from(n) {
                return Err(bad(format!(
                    "{count_name} must be between 1 and N={n}, got {v}"
                )));
            }
            opts.count = u8::try_from(v).ok();
        } else if name.eq_ignore_ascii_case(b"TIMEOUT") {
            if opts.timeout_ms.is_some() {
                return Err(bad("TIMEOUT given twice".into()));
            }
            let v = validate::u64_arg("TIMEOUT", value)?;
            if v == 0 || v > MAX_TIMEOUT_MS {
                return Err(bad(format!(
                    "TIMEOUT must be between 1 and {MAX_TIMEOUT_MS} ms, got {v}"
                )));
            }
            opts.timeout_ms = Some(v);
        } else {
            return Err(bad(format!(
                "unknown option '{}'; expected {expected}",
                validate::show(name)
            )));
        }
    }
    Ok(opts)
}

/// What one replica holds for a key (`None`: nothing, not even a tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub version: Version,
    pub tombstone: bool,
    pub value: Vec<u8>,
}

/// The newest of the answers (by version; tombstones included).
pub fn newest<'a>(answers: impl IntoIterator<Item = &'a Option<Held>>) -> Option<&'a Held> {
    answers
        .into_iter()
        .flatten()
        .max_by(|a, b| a.version.cmp(&b.version))
}

/// Whether a replica that answered `held` needs the `newest` record written to it.
pub fn needs_repair(held: &Option<Held>, newest: &Held) -> bool {
    match held {
        None => true,
        Some(h) => h.version < newest.version,
    }
}

/// Why a request answered `NOQUORUM`, for the metric of those answers by reason: a closed list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoQuorumReason {
    /// A replica did not answer in time.
    Timeout = 0,
    /// Replicas could not be reached (refused, lost, marked down by the failure detector).
    Unreachable = 1,
    /// A replica answered with an error.
    ErrorReply = 2,
    /// Too few replicas could be asked at all (no failure to name).
    TooFewReplicas = 3,
    /// A chunk had no intact replica.
    Damaged = 4,
    /// The request's time ran out before it was decided (Redis's block timeout, a slow check).
    Deadline = 5,
}

impl NoQuorumReason {
    pub const ALL: [NoQuorumReason; 6] = [
        NoQuorumReason::Timeout,
        NoQuorumReason::Unreachable,
        NoQuorumReason::ErrorReply,
        NoQuorumReason::TooFewReplicas,
        NoQuorumReason::Damaged,
        NoQuorumReason::Deadline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoQuorumReason::Timeout => "timeout",
            NoQuorumReason::Unreachable => "unreachable",
            NoQuorumReason::ErrorReply => "error_reply",
            NoQuorumReason::TooFewReplicas => "too_few_replicas",
            NoQuorumReason::Damaged => "damaged",
            NoQuorumReason::Deadline => "deadline",
        }
    }

    /// The reason of a `NOQUORUM` message (`crate::round`'s wording, `needed 3 got 1 (ok: n1;
    /// failed: n2 timeout, n3 connection refused; no answer yet: n4)`): a timeout first, then an
    /// error reply, then any other failure named (unreachable); none failed but some still to
    /// answer: a timeout; nobody named: too few replicas.
    pub fn of_shortfall(message: &str) -> NoQuorumReason {
        let part = |label: &str| {
            message
                .split_once(label)
                .map(|(_, rest)| rest.split([';', ')']).next().unwrap_or_default())
                .unwrap_or_default()
                .to_string()
        };
        let failed = part("failed: ");
        if failed.contains(" timeout") {
            NoQuorumReason::Timeout
        } else if failed.contains(" replied ") || failed.contains(" unexpected reply") {
            NoQuorumReason::ErrorReply
        } else if !failed.is_empty() {
            NoQuorumReason::Unreachable
        } else if !part("no answer yet: ").is_empty() {
            NoQuorumReason::Timeout
        } else {
            NoQuorumReason::TooFewReplicas
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noquorum_reasons_follow_the_shortfall() {
        let f = |m: &str| NoQuorumReason::of_shortfall(m).as_str();
        assert_eq!(
            f("needed 2 got 0 (failed: n2 connection refused, n3 timeout)"),
            "timeout"
        );
        assert_eq!(
            f("needed 2 got 0 (failed: n2 replied ERR x, n3 connection lost)"),
            "error_reply"
        );
        assert_eq!(
            f("needed 2 got 1 (ok: n1; failed: n2 down (failure detector))"),
            "unreachable"
        );
        assert_eq!(f("needed 2 got 1 (ok: n1; no answer yet: n3)"), "timeout");
        assert_eq!(f("needed 2 got 0"), "too_few_replicas");
    }

    #[test]
    fn options() {
        assert_eq!(
            parse_options(&[], Some("W"), 3).unwrap(),
            Options::default()
        );
        let o = parse_options(&[b"w", b"3", b"TIMEOUT", b"250"], Some("W"), 3).unwrap();
        assert_eq!(
            o,
            Options {
                count: Some(3),
                timeout_ms: Some(250)
            }
        );
        for (args, needle) in [
            (vec![&b"W"[..], b"0"], "between 1 and N=3"),
            (vec![b"W", b"4"], "between 1 and N=3"),
            (vec![b"W", b"x"], "W must be"),
            (vec![b"R", b"1"], "unknown option 'R'"),
            (vec![b"W"], "pairs"),
            (vec![b"TIMEOUT", b"0"], "TIMEOUT must be"),
            (vec![b"TIMEOUT", b"60001"], "TIMEOUT must be"),
            (vec![b"W", b"1", b"W", b"2"], "twice"),
        ] {
            let e = parse_options(&args, Some("W"), 3).unwrap_err();
            assert_eq!(e.code, Code::BadArg);
            assert!(e.message.contains(needle), "{:?}: {}", args, e.message);
        }
    }

    #[test]
    fn newest_and_repairs() {
        let h = |ts, node: &str, tomb| {
            Some(Held {
                version: Version::new(ts, node),
                tombstone: tomb,
                value: vec![],
            })
        };
        let answers = vec![h(5, "n1", false), None, h(7, "n2", true), h(7, "n1", false)];
        let best = newest(&answers).unwrap();
        assert_eq!(best.version, Version::new(7, "n2"));
        let repair: Vec<bool> = answers.iter().map(|a| needs_repair(a, best)).collect();
        assert_eq!(repair, [true, true, false, true]);
        assert!(newest(&[None, None]).is_none());
    }
}
