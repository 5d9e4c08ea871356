//! `RC.DEBUG`: `PANIC` panics inside a handler on purpose, to prove that a panic is caught and
//! Redis keeps running; `DROP-WRITES on|off` makes this node's replica acknowledge writes
//! without storing them, so the consistency checker can prove it catches lost writes. Both are
//! refused unless the module was loaded with `enable-debug-command yes`.

use std::ops::Deref;

use crate::codes::{Code, CodedError};

use super::{Command, Request};

/// What an `RC.DEBUG` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Panic,
    /// Acknowledge replica writes without storing them (`true`), or store them again.
    DropWrites(bool),
}

/// `RC.DEBUG PANIC` or `RC.DEBUG DROP-WRITES on|off`. Parsing checks the arity only: a disabled
/// command says so before it judges its arguments ([`Debug::action`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debug<'a> {
    pub sub: &'a [u8],
    pub arg: Option<&'a [u8]>,
}

impl<'a> Debug<'a> {
    pub const PANIC: Debug<'static> = Debug {
        sub: b"PANIC",
        arg: None,
    };

    /// `RC.DEBUG DROP-WRITES on|off`.
    pub fn drop_writes(on: bool) -> Debug<'static> {
        Debug {
            sub: b"DROP-WRITES",
            arg: Some(if on { b"on" } else { b"off" }),
        }
    }

    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<Debug<'a>, CodedError> {
        Command::Debug.check_arity(args.len())?;
        Ok(Debug {
            sub: &args[1],
            arg: args.get(2).map(|a| &a[..]),
        })
    }

    /// The action asked for; `BADARG usage: ...` for anything else.
    pub fn action(&self) -> Result<Action, CodedError> {
        let is = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        match self.arg {
            None if is(self.sub, b"PANIC") => Ok(Action::Panic),
            Some(a) if is(self.sub, b"DROP-WRITES") && is(a, b"on") => Ok(Action::DropWrites(true)),
            Some(a) if is(self.sub, b"DROP-WRITES") && is(a, b"off") => {
                Ok(Action::DropWrites(false))
            }
            _ => Err(CodedError::new(
                Code::BadArg,
                format!("usage: {}", Command::Debug.usage()),
            )),
        }
    }
}

impl Request for Debug<'_> {
    fn command(&self) -> Command {
        Command::Debug
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.sub);
        if let Some(a) = self.arg {
            f(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::testing::{args, error};

    #[test]
    fn round_trip_and_errors() {
        let wire = Debug::PANIC.encode();
        let d = Debug::parse(&wire).unwrap();
        assert_eq!(d, Debug::PANIC);
        assert_eq!(d.action(), Ok(Action::Panic));
        assert_eq!(
            Debug::parse(&args(&[b"rc.debug", b"panic"]))
                .unwrap()
                .action(),
            Ok(Action::Panic)
        );
        for on in [true, false] {
            let wire = Debug::drop_writes(on).encode();
            assert_eq!(
                Debug::parse(&wire).unwrap().action(),
                Ok(Action::DropWrites(on))
            );
        }
        assert_eq!(
            Debug::parse(&args(&[b"RC.DEBUG", b"drop-writes", b"ON"]))
                .unwrap()
                .action(),
            Ok(Action::DropWrites(true))
        );
        for bad in [
            &[b"RC.DEBUG".as_slice(), b"x"][..],
            &[b"RC.DEBUG", b"PANIC", b"on"],
            &[b"RC.DEBUG", b"DROP-WRITES"],
            &[b"RC.DEBUG", b"DROP-WRITES", b"maybe"],
        ] {
            assert_eq!(
                error(Debug::parse(&args(bad)).unwrap().action()),
                "BADARG usage: RC.DEBUG PANIC | DROP-WRITES on|off"
            );
        }
        assert_eq!(
            error(Debug::parse(&args(&[b"RC.DEBUG"]))),
            "ERR wrong number of arguments for 'RC.DEBUG' command; usage: RC.DEBUG PANIC | \
             DROP-WRITES on|off"
        );
    }
}
