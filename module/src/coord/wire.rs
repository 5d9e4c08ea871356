//! The contract's commands and replies on the `redis` crate's types: a request as a `redis::Cmd`
//! for the coordinator's connections, and a received `redis::Value` read through the contract's
//! reply decoders.

use rcluster_domain::quorum::Held;
use rcluster_domain::rc::replica::HeldReply;
use rcluster_domain::rc::reply::Read;
use rcluster_domain::rc::Request;
use redis::Value;

use crate::coord::peers::Failure;

/// The command `req` as the `redis` crate sends it.
pub fn cmd(req: &impl Request) -> redis::Cmd {
    let mut c = redis::cmd(req.command().name());
    req.each_arg(&mut |a| {
        c.arg(a);
    });
    c
}

/// What an `RC.REPLICA.GET` reply says the replica holds; a reply of another shape is a failure.
pub fn held_reply(reply: &Value) -> Result<Option<Held>, Failure> {
    HeldReply::decode(V(reply)).ok_or_else(|| {
        Failure::Replied(format!(
            "unexpected {} reply {reply:?}",
            rcluster_domain::rc::Command::ReplicaGet.name()
        ))
    })
}

/// A received reply, as the contract's decoders read it.
#[derive(Clone, Copy, Debug)]
pub struct V<'a>(pub &'a Value);

impl<'a> Read<'a> for V<'a> {
    fn is_nil(self) -> bool {
        matches!(self.0, Value::Nil)
    }
    fn int(self) -> Option<i64> {
        match self.0 {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn bulk(self) -> Option<&'a [u8]> {
        match self.0 {
            Value::BulkString(b) => Some(b),
            _ => None,
        }
    }
    fn status(self) -> Option<&'a str> {
        match self.0 {
            Value::SimpleString(s) => Some(s),
            Value::Okay => Some("OK"),
            _ => None,
        }
    }
    fn array_len(self) -> Option<usize> {
        match self.0 {
            Value::Array(items) => Some(items.len()),
            _ => None,
        }
    }
    fn item(self, i: usize) -> Option<Self> {
        match self.0 {
            Value::Array(items) => items.get(i).map(V),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rcluster_domain::rc::replica::ReplicaWrite;
    use rcluster_domain::version::Version;

    use super::*;

    #[test]
    fn a_request_packs_as_the_contract_writes_it() {
        let version = Version::new(u64::MAX, "n1");
        let req = ReplicaWrite {
            key: b"k",
            value: Some(b"v\r\n"),
            version: Cow::Borrowed(&version),
        };
        let mut resp = Vec::new();
        req.write_resp(&mut resp);
        assert_eq!(cmd(&req).get_packed_command(), resp);
    }

    #[test]
    fn replies_read_as_the_redis_crate_parses_them() {
        let reply = Value::Array(vec![
            Value::BulkString(b"v".to_vec()),
            Value::BulkString(b"42".to_vec()),
            Value::BulkString(b"n2".to_vec()),
            Value::Int(0),
        ]);
        assert_eq!(
            HeldReply::decode(V(&reply)),
            Some(Some(Held {
                version: Version::new(42, "n2"),
                tombstone: false,
                value: b"v".to_vec(),
            }))
        );
        assert_eq!(held_reply(&Value::Nil), Ok(None));
        assert!(held_reply(&Value::Int(3)).is_err());
        assert!(V(&Value::Okay).is_status("OK"));
    }
}
