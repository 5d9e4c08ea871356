//! `RC.FAULT SET <json>` and `RC.FAULT GET`: the node process pushes the faults that concern its
//! node into its module (the whole table each time, as a JSON array of
//! [`Held`](crate::fault::Held): each fault with the time it has left), and reads back what the
//! module holds. The module ends each fault by itself at its deadline, also when the node
//! process is gone.

use std::ops::Deref;

use crate::codes::{Code, CodedError};
use crate::fault::Held;

use super::{Command, Request};

/// `RC.FAULT SET <json>` or `RC.FAULT GET`.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultCmd {
    Set(Vec<Held>),
    Get,
}

impl FaultCmd {
    pub fn parse<A: Deref<Target = [u8]>>(args: &[A]) -> Result<FaultCmd, CodedError> {
        Command::Fault.check_arity(args.len())?;
        let sub = &args[1];
        if sub.eq_ignore_ascii_case(b"GET") && args.len() == 2 {
            return Ok(FaultCmd::Get);
        }
        if sub.eq_ignore_ascii_case(b"SET") && args.len() == 3 {
            return serde_json::from_slice(&args[2])
                .map(FaultCmd::Set)
                .map_err(|e| {
                    CodedError::new(Code::BadArg, format!("faults are not valid JSON: {e}"))
                });
        }
        Err(Command::Fault.usage_error("unknown form of RC.FAULT"))
    }

    /// The JSON form of a table (what `SET` takes and `GET` answers).
    pub fn json(held: &[Held]) -> Vec<u8> {
        serde_json::to_vec(held).unwrap_or_else(|_| b"[]".to_vec())
    }
}

impl Request for FaultCmd {
    fn command(&self) -> Command {
        Command::Fault
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        match self {
            FaultCmd::Get => f(b"GET"),
            FaultCmd::Set(held) => {
                f(b"SET");
                f(&FaultCmd::json(held));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Fault, Spec};
    use crate::rc::testing::{args, error};

    #[test]
    fn round_trips_and_errors() {
        let held = vec![Held {
            fault: Fault {
                id: "f-1".into(),
                spec: Spec::Skew {
                    targets: vec!["n3".into()],
                    ms: -5,
                },
                ttl_ms: 10,
            },
            expires_in_ms: 7,
        }];
        for c in [FaultCmd::Get, FaultCmd::Set(held), FaultCmd::Set(vec![])] {
            assert_eq!(FaultCmd::parse(&c.encode()).unwrap(), c);
        }
        assert!(error(FaultCmd::parse(&args(&[b"RC.FAULT", b"SET", b"{"])))
            .starts_with("BADARG faults are not valid JSON"));
        assert_eq!(
            error(FaultCmd::parse(&args(&[b"RC.FAULT", b"NOW"]))),
            "BADARG unknown form of RC.FAULT; usage: RC.FAULT SET <json> | GET"
        );
    }
}
