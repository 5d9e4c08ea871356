//! Versioned registers on one Redis (the replica level under the quorum commands):
//!
//! `RC.REPLICA.PUT key value version origin` stores if (version, origin) is newer than what is
//! held; `RC.REPLICA.DEL key version origin` does the same with a tombstone; both reply
//! `[applied|duplicate|stale, version, origin]` with the version now held ([`WriteReply`]).
//! `RC.REPLICA.GET key` returns `[value|nil, version, origin, tombstone]` or nil ([`HeldReply`]);
//! `RC.REPLICA.PURGE key version origin` removes a tombstone of exactly that version and
//! `RC.REPLICA.DROP key version origin` a copy of exactly that version (1 or 0).
//! [`ack_of`] and [`is_ack`] say what a reply to a replica write means to its sender.

use std::borrow::Cow;
use std::ops::Deref;

use crate::codes::CodedError;
use crate::quorum::Held;
use crate::validate;
use crate::version::{PutOutcome, Version};

use super::kv::{check_key, check_value};
use super::reply::{outcome_of, version_of, Build, Read};
use super::{Command, Decimal, Limits, Request};

/// `version origin` arguments.
fn version_args<'a>(ts: &[u8], origin: &[u8]) -> Result<Cow<'a, Version>, CodedError> {
    let ts = validate::u64_arg("version", ts)?;
    let node = validate::node_id(origin)?;
    Ok(Cow::Owned(Version::new(ts, node)))
}

fn each_version(version: &Version, f: &mut dyn FnMut(&[u8])) {
    f(Decimal::new(version.ts).as_bytes());
    f(version.node.as_bytes());
}

/// `RC.REPLICA.PUT key value version origin` (a value) or `RC.REPLICA.DEL key version origin`
/// (a tombstone): put-if-newer on one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaWrite<'a> {
    pub key: &'a [u8],
    /// `None` writes a tombstone.
    pub value: Option<&'a [u8]>,
    pub version: Cow<'a, Version>,
}

impl<'a> ReplicaWrite<'a> {
    /// Parses `RC.REPLICA.PUT`.
    pub fn parse_put<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<ReplicaWrite<'a>, CodedError> {
        Command::ReplicaPut.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        check_value(&args[2], limits)?;
        Ok(ReplicaWrite {
            key: &args[1],
            value: Some(&args[2]),
            version: version_args(&args[3], &args[4])?,
        })
    }

    /// Parses `RC.REPLICA.DEL`.
    pub fn parse_del<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<ReplicaWrite<'a>, CodedError> {
        Command::ReplicaDel.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        Ok(ReplicaWrite {
            key: &args[1],
            value: None,
            version: version_args(&args[2], &args[3])?,
        })
    }
}

impl Request for ReplicaWrite<'_> {
    fn command(&self) -> Command {
        match self.value {
            Some(_) => Command::ReplicaPut,
            None => Command::ReplicaDel,
        }
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
        if let Some(v) = self.value {
            f(v);
        }
        each_version(&self.version, f);
    }
}

/// `RC.REPLICA.GET key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaGet<'a> {
    pub key: &'a [u8],
}

impl<'a> ReplicaGet<'a> {
    /// Checks the arity only: the handler checks the key where it reads it.
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<ReplicaGet<'a>, CodedError> {
        Command::ReplicaGet.check_arity(args.len())?;
        Ok(ReplicaGet { key: &args[1] })
    }
}

impl Request for ReplicaGet<'_> {
    fn command(&self) -> Command {
        Command::ReplicaGet
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
    }
}

/// `RC.REPLICA.PURGE key version origin` (a tombstone) or `RC.REPLICA.DROP key version origin`
/// (any copy): deletes the register only if it still holds exactly that version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRemove<'a> {
    /// Whether only a tombstone goes (`PURGE`), or any copy (`DROP`).
    pub tombstone_only: bool,
    pub key: &'a [u8],
    pub version: Cow<'a, Version>,
}

impl<'a> ReplicaRemove<'a> {
    /// Parses `RC.REPLICA.PURGE` or `RC.REPLICA.DROP` (`tombstone_only` picks which).
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
        tombstone_only: bool,
    ) -> Result<ReplicaRemove<'a>, CodedError> {
        let command = if tombstone_only {
            Command::ReplicaPurge
        } else {
            Command::ReplicaDrop
        };
        command.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        Ok(ReplicaRemove {
            tombstone_only,
            key: &args[1],
            version: version_args(&args[2], &args[3])?,
        })
    }
}

impl Request for ReplicaRemove<'_> {
    fn command(&self) -> Command {
        if self.tombstone_only {
            Command::ReplicaPurge
        } else {
            Command::ReplicaDrop
        }
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
        each_version(&self.version, f);
    }
}

/// The reply to a replica write: what happened and the version held afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteReply {
    pub outcome: PutOutcome,
    pub held: Version,
}

impl WriteReply {
    pub fn encode<B: Build>(&self) -> B::Out {
        B::array(vec![
            B::status(self.outcome.as_str()),
            B::number(self.held.ts),
            B::bulk(self.held.node.as_bytes().to_vec()),
        ])
    }

    pub fn decode<'a>(reply: impl Read<'a>) -> Option<WriteReply> {
        let outcome = outcome_of(reply.item(0)?)?;
        let held = version_of(reply.item(1)?, reply.item(2)?)?;
        Some(WriteReply { outcome, held })
    }
}

/// The reply to `RC.REPLICA.GET`: what the replica holds, `None` when nothing.
pub struct HeldReply;

impl HeldReply {
    pub fn encode<B: Build>(held: Option<Held>) -> B::Out {
        match held {
            None => B::nil(),
            Some(h) => B::array(vec![
                if h.tombstone {
                    B::nil()
                } else {
                    B::bulk(h.value)
                },
                B::number(h.version.ts),
                B::bulk(h.version.node.into_bytes()),
                B::int(i64::from(h.tombstone)),
            ]),
        }
    }

    /// `None` when the reply is not an `RC.REPLICA.GET` reply.
    pub fn decode<'a>(reply: impl Read<'a>) -> Option<Option<Held>> {
        if reply.is_nil() {
            return Some(None);
        }
        if reply.array_len()? != 4 {
            return None;
        }
        let item = |i| reply.item(i);
        let version = version_of(item(1)?, item(2)?)?;
        let tombstone = item(3)?.int() == Some(1);
        let value = item(0)?.bulk().map(<[u8]>::to_vec).unwrap_or_default();
        Some(Some(Held {
            version,
            tombstone,
            value,
        }))
    }
}

/// What a replica's reply to a client's write means.
#[derive(Debug, PartialEq)]
pub enum Ack {
    Yes,
    /// The replica holds a newer version than this write's: one this coordinator had not seen
    /// (written through another node within the same clock tick, or stamped by a clock ahead of
    /// this one). The write must not count there: with W over N/2 any quorum after a finished
    /// write meets a replica that holds it, so a write that is really later is re-issued with a
    /// version past it instead of being silently lost.
    Newer(Version),
    No,
}

/// The meaning of `reply` to a write of `ours` (chunks have no version: any ack is yes).
pub fn ack_of<'a>(reply: impl Read<'a>, ours: Option<&Version>) -> Ack {
    if let Some(ours) = ours {
        if let Some(WriteReply {
            outcome: PutOutcome::Stale,
            held,
        }) = WriteReply::decode(reply)
        {
            if held > *ours {
                return Ack::Newer(held);
            }
        }
    }
    if is_ack(reply) {
        Ack::Yes
    } else {
        Ack::No
    }
}

/// A write reply (`[applied|duplicate|stale, ...]`, a bare status as `RC.HINT.PUT` gives, or a
/// chunk's `OK`) means the replica holds this version or a newer one: an acknowledgement (for
/// hint replay, repairs and moves, which carry versions on, not for a client's new write: see
/// [`ack_of`]).
pub fn is_ack<'a>(reply: impl Read<'a>) -> bool {
    match reply.array_len() {
        Some(_) => reply.item(0).and_then(outcome_of).is_some(),
        None => reply.is_status("OK") || outcome_of(reply).is_some(),
    }
}

/// A replica write that changed the target (not a duplicate or stale copy).
pub fn applied<'a>(reply: impl Read<'a>) -> bool {
    reply.array_len().is_some() && reply.item(0).and_then(outcome_of) == Some(PutOutcome::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Code;
    use crate::rc::reply::Value;
    use crate::rc::testing::{args, error, LIMITS};

    fn v(ts: u64, node: &str) -> Cow<'static, Version> {
        Cow::Owned(Version::new(ts, node))
    }

    #[test]
    fn writes_round_trip() {
        let put = ReplicaWrite {
            key: b"k",
            value: Some(b"\0v\r\n"),
            version: v(42, "n1"),
        };
        let wire = put.encode();
        assert_eq!(
            wire,
            args(&[b"RC.REPLICA.PUT", b"k", b"\0v\r\n", b"42", b"n1"])
        );
        assert_eq!(ReplicaWrite::parse_put(&wire, &LIMITS).unwrap(), put);
        let del = ReplicaWrite {
            key: b"k",
            value: None,
            version: v(u64::MAX, "n-2_x"),
        };
        let wire = del.encode();
        assert_eq!(wire[0], b"RC.REPLICA.DEL");
        assert_eq!(ReplicaWrite::parse_del(&wire, &LIMITS).unwrap(), del);
        let get = ReplicaGet { key: b"k" };
        assert_eq!(ReplicaGet::parse(&get.encode()).unwrap(), get);
        for tombstone_only in [true, false] {
            let r = ReplicaRemove {
                tombstone_only,
                key: b"k",
                version: v(7, "n3"),
            };
            assert_eq!(
                ReplicaRemove::parse(&r.encode(), &LIMITS, tombstone_only).unwrap(),
                r
            );
        }
    }

    #[test]
    fn write_errors_keep_their_order_and_wording() {
        assert_eq!(
            error(ReplicaWrite::parse_put(&args(&[b"RC.REPLICA.PUT", b"k"]), &LIMITS)),
            "ERR wrong number of arguments for 'RC.REPLICA.PUT' command; usage: RC.REPLICA.PUT <key> <value> <version> <origin-node>"
        );
        let e = ReplicaWrite::parse_put(
            &args(&[b"RC.REPLICA.PUT", b"k", &[0; 17], b"x", b"N1"]),
            &LIMITS,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::TooLarge);
        assert_eq!(
            error(ReplicaWrite::parse_put(
                &args(&[b"RC.REPLICA.PUT", b"k", b"v", b"x", b"N1"]),
                &LIMITS
            )),
            "BADARG version must be an unsigned 64-bit integer, got 'x'"
        );
        assert!(error(ReplicaWrite::parse_del(
            &args(&[b"RC.REPLICA.DEL", b"k", b"1", b"N1"]),
            &LIMITS
        ))
        .starts_with("BADARG node id 'N1' is invalid"));
        assert!(error(ReplicaRemove::parse(
            &args(&[b"RC.REPLICA.DROP", b"k", b"1"]),
            &LIMITS,
            false
        ))
        .contains("usage: RC.REPLICA.DROP <key> <version> <origin-node>"));
        assert!(error(ReplicaRemove::parse(
            &args(&[b"RC.REPLICA.PURGE", b"k", b"1"]),
            &LIMITS,
            true
        ))
        .contains("'RC.REPLICA.PURGE'"));
    }

    #[test]
    fn replies_round_trip() {
        let w = WriteReply {
            outcome: PutOutcome::Duplicate,
            held: Version::new(9, "n2"),
        };
        assert_eq!(WriteReply::decode(&w.encode::<Value>()), Some(w));
        for held in [
            None,
            Some(Held {
                version: Version::new(5, "n1"),
                tombstone: false,
                value: b"abc".to_vec(),
            }),
            Some(Held {
                version: Version::new(6, "n1"),
                tombstone: true,
                value: Vec::new(),
            }),
        ] {
            let v = HeldReply::encode::<Value>(held.clone());
            assert_eq!(HeldReply::decode(&v), Some(held));
        }
        assert_eq!(HeldReply::decode(&Value::Int(1)), None);
        assert_eq!(HeldReply::decode(&Value::Array(vec![Value::Nil])), None);
    }

    fn reply(status: &str, ts: u64, origin: &str) -> Value {
        Value::Array(vec![
            Value::Status(status.into()),
            Value::Bulk(ts.to_string().into_bytes()),
            Value::Bulk(origin.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn a_newer_version_held_is_not_an_acknowledgement_of_a_new_write() {
        let ours = Version::new(100, "n2");
        assert_eq!(ack_of(&reply("applied", 100, "n2"), Some(&ours)), Ack::Yes);
        assert_eq!(
            ack_of(&reply("duplicate", 100, "n2"), Some(&ours)),
            Ack::Yes
        );
        assert_eq!(
            ack_of(&reply("stale", 100, "n3"), Some(&ours)),
            Ack::Newer(Version::new(100, "n3"))
        );
        assert_eq!(
            ack_of(&reply("stale", 250, "n1"), Some(&ours)),
            Ack::Newer(Version::new(250, "n1"))
        );
        // Carrying a version on (hints, repairs): stale is done.
        assert!(is_ack(&reply("stale", 250, "n1")));
        assert_eq!(ack_of(&reply("stale", 250, "n1"), None), Ack::Yes);
        assert_eq!(ack_of(&Value::Status("OK".into()), None), Ack::Yes);
        assert_eq!(ack_of(&Value::Status("nope".into()), Some(&ours)), Ack::No);
        assert!(is_ack(&Value::Status("duplicate".into())));
        assert!(!is_ack(&Value::Array(vec![])));
        assert!(applied(&reply("applied", 1, "n1")));
        assert!(!applied(&reply("stale", 1, "n1")));
        assert!(!applied(&Value::Status("applied".into())));
    }
}
