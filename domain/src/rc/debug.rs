//! `RC.DEBUG PANIC`: panics inside a handler on purpose, to prove that a panic is caught and
//! Redis keeps running (refused unless the module was loaded with `enable-debug-command yes`).

use std::ops::Deref;

use crate::codes::{Code, CodedError};

use super::{Command, Request};

/// `RC.DEBUG PANIC`. Parsing checks the arity only: a disabled command says so before it judges
/// its argument ([`Debug::check_panic`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debug<'a> {
    pub sub: &'a [u8],
}

impl<'a> Debug<'a> {
    pub const PANIC: Debug<'static> = Debug { sub: b"PANIC" };

    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<Debug<'a>, CodedError> {
        Command::Debug.check_arity(args.len())?;
        Ok(Debug { sub: &args[1] })
    }

    /// `BADARG usage: ...` unless the subcommand is `PANIC`.
    pub fn check_panic(&self) -> Result<(), CodedError> {
        if self.sub.eq_ignore_ascii_case(b"PANIC") {
            return Ok(());
        }
        Err(CodedError::new(
            Code::BadArg,
            format!("usage: {}", Command::Debug.usage()),
        ))
    }
}

impl Request for Debug<'_> {
    fn command(&self) -> Command {
        Command::Debug
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.sub);
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
        assert!(d.check_panic().is_ok());
        assert!(Debug::parse(&args(&[b"rc.debug", b"panic"]))
            .unwrap()
            .check_panic()
            .is_ok());
        assert_eq!(
            error(
                Debug::parse(&args(&[b"RC.DEBUG", b"x"]))
                    .unwrap()
                    .check_panic()
            ),
            "BADARG usage: RC.DEBUG PANIC"
        );
        assert_eq!(
            error(Debug::parse(&args(&[b"RC.DEBUG"]))),
            "ERR wrong number of arguments for 'RC.DEBUG' command; usage: RC.DEBUG PANIC"
        );
    }
}
