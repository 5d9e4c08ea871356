//! Hinted handoff storage on one Redis: writes held for a node that was down.
//!
//! `RC.HINT.PUT node key version origin tombstone value` keeps the write in `hint:<node>` (field
//! = key) unless a hint at least as new is already held; replies `applied|duplicate|stale`.
//! `RC.HINT.DONE node key version origin` drops the hint after delivery, only if it is still that
//! version (a newer hint stays); replies 1 or 0.

use std::borrow::Cow;
use std::ops::Deref;

use crate::codes::{Code, CodedError};
use crate::validate;
use crate::version::Version;

use super::kv::{check_key, check_value};
use super::{ascii, Command, Decimal, Limits, Request};

/// `RC.HINT.PUT node key version origin tombstone value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintPut<'a> {
    /// The node the write is held for.
    pub node: &'a str,
    pub key: &'a [u8],
    pub version: Cow<'a, Version>,
    pub tombstone: bool,
    /// Empty for a tombstone.
    pub value: &'a [u8],
}

impl<'a> HintPut<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<HintPut<'a>, CodedError> {
        Command::HintPut.check_arity(args.len())?;
        let HintDone { node, key, version } = head(args, limits)?;
        let tombstone = match &*args[5] {
            b"0" => false,
            b"1" => true,
            other => {
                return Err(CodedError::new(
                    Code::BadArg,
                    format!(
                        "tombstone flag must be 0 or 1, got '{}'",
                        validate::show(other)
                    ),
                ))
            }
        };
        check_value(&args[6], limits)?;
        Ok(HintPut {
            node,
            key,
            version,
            tombstone,
            value: &args[6],
        })
    }
}

impl Request for HintPut<'_> {
    fn command(&self) -> Command {
        Command::HintPut
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        let head = HintDone {
            node: self.node,
            key: self.key,
            version: Cow::Borrowed(&self.version),
        };
        head.each_arg(f);
        f(if self.tombstone { b"1" } else { b"0" });
        f(self.value);
    }
}

/// `RC.HINT.DONE node key version origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintDone<'a> {
    pub node: &'a str,
    pub key: &'a [u8],
    pub version: Cow<'a, Version>,
}

impl<'a> HintDone<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<HintDone<'a>, CodedError> {
        Command::HintDone.check_arity(args.len())?;
        head(args, limits)
    }
}

/// `node key version origin`, the arguments both commands start with.
fn head<'a, A: Deref<Target = [u8]>>(
    args: &'a [A],
    limits: &Limits,
) -> Result<HintDone<'a>, CodedError> {
    validate::node_id(&args[1])?;
    check_key(&args[2], limits)?;
    let ts = validate::u64_arg("version", &args[3])?;
    let origin = validate::node_id(&args[4])?;
    Ok(HintDone {
        node: ascii(&args[1]),
        key: &args[2],
        version: Cow::Owned(Version::new(ts, origin)),
    })
}

impl Request for HintDone<'_> {
    fn command(&self) -> Command {
        Command::HintDone
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.node.as_bytes());
        f(self.key);
        f(Decimal::new(self.version.ts).as_bytes());
        f(self.version.node.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::reply::{outcome_of, Build, Value};
    use crate::rc::testing::{args, error, LIMITS};
    use crate::version::PutOutcome;

    #[test]
    fn round_trips() {
        let v = Version::new(12, "n1");
        for (tombstone, value) in [(false, &b"a b"[..]), (true, &b""[..])] {
            let put = HintPut {
                node: "n2",
                key: b"k",
                version: Cow::Borrowed(&v),
                tombstone,
                value,
            };
            assert_eq!(HintPut::parse(&put.encode(), &LIMITS).unwrap(), put);
        }
        let done = HintDone {
            node: "n2",
            key: b"k",
            version: Cow::Borrowed(&v),
        };
        let wire = done.encode();
        assert_eq!(wire, args(&[b"RC.HINT.DONE", b"n2", b"k", b"12", b"n1"]));
        assert_eq!(HintDone::parse(&wire, &LIMITS).unwrap(), done);
        let status = Value::status(PutOutcome::Stale.as_str());
        assert_eq!(outcome_of(&status), Some(PutOutcome::Stale));
    }

    #[test]
    fn errors() {
        assert!(
            error(HintPut::parse(&args(&[b"RC.HINT.PUT"]), &LIMITS)).contains(
                "usage: RC.HINT.PUT <node> <key> <version> <origin> <0|1 tombstone> <value>"
            )
        );
        assert_eq!(
            error(HintPut::parse(
                &args(&[b"RC.HINT.PUT", b"n1", b"k", b"1", b"n1", b"2", b"v"]),
                &LIMITS
            )),
            "BADARG tombstone flag must be 0 or 1, got '2'"
        );
        assert!(error(HintPut::parse(
            &args(&[b"RC.HINT.PUT", b"N 1", b"k", b"1", b"n1", b"2", b"v"]),
            &LIMITS
        ))
        .starts_with("BADARG node id 'N 1'"));
        assert!(error(HintDone::parse(
            &args(&[b"RC.HINT.DONE", b"n1", b"k", b"-1", b"n1"]),
            &LIMITS
        ))
        .starts_with("BADARG version must be"));
    }
}
