//! The node's hybrid logical clock.
//!
//! `RC.CLOCK` issues a new timestamp: `[timestamp, physical_ms, logical]` ([`ClockReply`]).
//! `RC.CLOCK MERGE <timestamp>` merges a timestamp seen from another node (Lamport rule) and
//! returns the new local one; a timestamp too far ahead of the local wall clock is refused with
//! `CLOCKSKEW`.

use std::ops::Deref;

use crate::codes::{Code, CodedError};
use crate::hlc::Timestamp;
use crate::validate;

use super::reply::{u64_of, Build, Read};
use super::{Command, Decimal, Request};

/// `RC.CLOCK [MERGE timestamp]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// A remote timestamp to merge; `None` issues a new one.
    pub merge: Option<u64>,
}

impl Clock {
    pub fn parse<A: Deref<Target = [u8]>>(args: &[A]) -> Result<Clock, CodedError> {
        Command::Clock.check_arity(args.len())?;
        let Some(sub) = args.get(1) else {
            return Ok(Clock { merge: None });
        };
        if sub.eq_ignore_ascii_case(b"MERGE") && args.len() == 3 {
            return Ok(Clock {
                merge: Some(validate::u64_arg("timestamp", &args[2])?),
            });
        }
        let given: Vec<&[u8]> = args[1..].iter().map(|a| &**a).collect();
        Err(CodedError::new(
            Code::BadArg,
            format!(
                "unknown form of RC.CLOCK '{}'; usage: {}",
                validate::show(&given.join(&b' ')),
                Command::Clock.usage()
            ),
        ))
    }
}

impl Request for Clock {
    fn command(&self) -> Command {
        Command::Clock
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        if let Some(ts) = self.merge {
            f(b"MERGE");
            f(Decimal::new(ts).as_bytes());
        }
    }
}

/// The reply: the timestamp, and its physical and logical parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReply(pub Timestamp);

impl ClockReply {
    pub fn encode<B: Build>(&self) -> B::Out {
        let t = self.0;
        B::array(vec![
            B::number(t.0),
            B::int(i64::try_from(t.physical_ms()).unwrap_or(i64::MAX)),
            B::int(i64::from(t.logical())),
        ])
    }

    /// `None` when the parts do not agree with the timestamp.
    pub fn decode<'a>(reply: impl Read<'a>) -> Option<ClockReply> {
        let mut items = reply.items_of(3)?;
        let t = Timestamp(u64_of(items.next()?)?);
        let physical = u64::try_from(items.next()?.int()?).ok()?;
        let logical = u64::try_from(items.next()?.int()?).ok()?;
        (t.physical_ms() == physical && u64::from(t.logical()) == logical).then_some(ClockReply(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::reply::Value;
    use crate::rc::testing::{args, error};

    #[test]
    fn round_trips() {
        for c in [
            Clock { merge: None },
            Clock {
                merge: Some(123 << 16),
            },
        ] {
            assert_eq!(Clock::parse(&c.encode()).unwrap(), c);
        }
        assert_eq!(
            Clock::parse(&args(&[b"rc.clock", b"merge", b"5"])).unwrap(),
            Clock { merge: Some(5) }
        );
        let r = ClockReply(Timestamp((1_700_000_000_000 << 16) | 3));
        assert_eq!(ClockReply::decode(&r.encode::<Value>()), Some(r));
        assert_eq!(
            ClockReply::decode(&Value::Array(vec![
                Value::Bulk(b"65536".to_vec()),
                Value::Int(2),
                Value::Int(0)
            ])),
            None
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            error(Clock::parse(&args(&[b"RC.CLOCK", b"MERGE"]))),
            "BADARG unknown form of RC.CLOCK 'MERGE'; usage: RC.CLOCK [MERGE <timestamp>]"
        );
        assert_eq!(
            error(Clock::parse(&args(&[b"RC.CLOCK", b"NOW", b"x\n"]))),
            "BADARG unknown form of RC.CLOCK 'NOW x\\x0a'; usage: RC.CLOCK [MERGE <timestamp>]"
        );
        assert!(error(Clock::parse(&args(&[b"RC.CLOCK", b"MERGE", b"-1"])))
            .starts_with("BADARG timestamp must be"));
        assert!(error(Clock::parse(&args(&[b"RC.CLOCK", b"a", b"b", b"c"])))
            .starts_with("ERR wrong number of arguments for 'RC.CLOCK'"));
    }
}
