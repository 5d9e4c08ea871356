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

#[cfg(test)]
mod tests {
    use super::*;

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
