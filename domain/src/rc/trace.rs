//! Request traces on the wire: the `TRACE [id]` option of `RC.SET`, `RC.GET` and `RC.DEL` (found
//! among their options, the rest left for the quorum options), a request built with it
//! ([`Traced`]), and the command that reads a node's ring of traces:
//!
//! `RC.TRACE GET id` → the trace's JSON ([`crate::trace::Trace`]), or nil;
//! `RC.TRACE LIST [n]` → the `n` (default 10) newest traces' summaries, newest first, one JSON
//! bulk string each.

use std::ops::Deref;

use crate::codes::CodedError;
use crate::trace::{check_id, Summary, Trace};
use crate::validate;

use super::reply::{Build, Read};
use super::{Command, Decimal, Request};

/// `TRACE` with its optional client-chosen id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceArg<'a> {
    pub id: Option<&'a str>,
}

/// The option names that take a value: a word after `TRACE` that is one of these (or `TRACE`)
/// starts the next option instead of being the trace id.
const VALUED: [&[u8]; 3] = [b"W", b"R", b"TIMEOUT"];

fn is_option_name(arg: &[u8]) -> bool {
    VALUED
        .iter()
        .chain([&&b"TRACE"[..]])
        .any(|n| n.eq_ignore_ascii_case(arg))
}

/// Splits `TRACE [id]` out of a quorum command's options; the other options come back in order
/// (each valued option with its value, judged later). `TRACE` given twice is refused.
pub fn split<'a, A: Deref<Target = [u8]>>(
    args: &'a [A],
) -> Result<(Vec<&'a [u8]>, Option<TraceArg<'a>>), CodedError> {
    let mut rest = Vec::with_capacity(args.len());
    let mut trace = None;
    let mut i = 0;
    while i < args.len() {
        let a: &[u8] = &args[i];
        if a.eq_ignore_ascii_case(b"TRACE") {
            if trace.is_some() {
                return Err(CodedError::new(
                    crate::codes::Code::BadArg,
                    "TRACE given twice",
                ));
            }
            let id = match args.get(i + 1) {
                Some(next) if !is_option_name(next) => {
                    i += 1;
                    Some(check_id(next)?)
                }
                _ => None,
            };
            trace = Some(TraceArg { id });
        } else if VALUED.iter().any(|n| n.eq_ignore_ascii_case(a)) && i + 1 < args.len() {
            rest.push(a);
            rest.push(&args[i + 1]);
            i += 1;
        } else {
            rest.push(a);
        }
        i += 1;
    }
    Ok((rest, trace))
}

impl TraceArg<'_> {
    pub(crate) fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(b"TRACE");
        if let Some(id) = self.id {
            f(id.as_bytes());
        }
    }
}

/// A quorum request built with `TRACE [id]` after its own arguments.
pub struct Traced<'a, R: Request> {
    pub request: &'a R,
    pub trace: TraceArg<'a>,
}

impl<R: Request> Request for Traced<'_, R> {
    fn command(&self) -> Command {
        self.request.command()
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        self.request.each_arg(f);
        self.trace.each_arg(f);
    }
}

/// How many summaries `RC.TRACE LIST` gives without `n`, and at most.
pub const DEFAULT_LIST: usize = 10;
pub const MAX_LIST: usize = 10_000;

/// `RC.TRACE GET id` or `RC.TRACE LIST [n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceCmd<'a> {
    Get { id: &'a str },
    List { n: usize },
}

impl<'a> TraceCmd<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<TraceCmd<'a>, CodedError> {
        let cmd = Command::Trace;
        cmd.check_arity(args.len())?;
        let sub: &[u8] = &args[1];
        if sub.eq_ignore_ascii_case(b"GET") {
            match args.get(2) {
                Some(id) if args.len() == 3 => Ok(TraceCmd::Get { id: check_id(id)? }),
                _ => Err(cmd.usage_error("GET takes one trace id")),
            }
        } else if sub.eq_ignore_ascii_case(b"LIST") {
            let n = match args.get(2) {
                None => DEFAULT_LIST,
                Some(n) => {
                    let n = validate::u64_arg("n", n)?;
                    if n == 0 || n > MAX_LIST as u64 {
                        return Err(cmd
                            .usage_error(&format!("n must be between 1 and {MAX_LIST}, got {n}")));
                    }
                    n as usize
                }
            };
            Ok(TraceCmd::List { n })
        } else {
            Err(cmd.usage_error(&format!("unknown subcommand '{}'", validate::show(sub))))
        }
    }
}

impl Request for TraceCmd<'_> {
    fn command(&self) -> Command {
        Command::Trace
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        match self {
            TraceCmd::Get { id } => {
                f(b"GET");
                f(id.as_bytes());
            }
            TraceCmd::List { n } => {
                f(b"LIST");
                f(Decimal::new(*n as u64).as_bytes());
            }
        }
    }
}

/// The reply to `RC.TRACE GET`: the trace's JSON, or nil.
pub fn encode_get<B: Build>(json: Option<&str>) -> B::Out {
    match json {
        Some(j) => B::bulk(j.as_bytes().to_vec()),
        None => B::nil(),
    }
}

pub fn decode_get<'a>(reply: impl Read<'a>) -> Option<Option<Trace>> {
    if reply.is_nil() {
        return Some(None);
    }
    Trace::from_json(reply.bulk()?).map(Some)
}

/// The reply to `RC.TRACE LIST`: one JSON summary per trace, newest first.
pub fn encode_list<B: Build>(summaries: &[&Summary]) -> B::Out {
    B::array(
        summaries
            .iter()
            .map(|s| B::bulk(s.to_json().into_bytes()))
            .collect(),
    )
}

pub fn decode_list<'a>(reply: impl Read<'a>) -> Option<Vec<Summary>> {
    (0..reply.array_len()?)
        .map(|i| Summary::from_json(reply.item(i)?.bulk()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::kv::Set;
    use crate::rc::reply::Value;
    use crate::rc::testing::{args, error};
    use crate::trace::What;

    #[test]
    fn trace_is_split_out_with_or_without_an_id() {
        let a = args(&[b"W", b"2", b"trace", b"my-id", b"TIMEOUT", b"5"]);
        let (rest, t) = split(&a).unwrap();
        assert_eq!(rest, [&b"W"[..], b"2", b"TIMEOUT", b"5"]);
        assert_eq!(t, Some(TraceArg { id: Some("my-id") }));
        let a = args(&[b"TRACE", b"R", b"1"]);
        let (rest, t) = split(&a).unwrap();
        assert_eq!(rest, [&b"R"[..], b"1"]);
        assert_eq!(t, Some(TraceArg { id: None }));
        let a = args(&[b"TIMEOUT", b"TRACE"]);
        // A valued option's value is never taken for TRACE.
        let (rest, t) = split(&a).unwrap();
        assert_eq!((rest.len(), t), (2, None));
        assert!(error(split(&args(&[b"TRACE", b"TRACE"]))).contains("twice"));
        assert!(error(split(&args(&[b"TRACE", b"a b"]))).contains("trace id"));
        let a = args(&[b"W", b"1"]);
        let (rest, t) = split(&a).unwrap();
        assert_eq!((rest.len(), t), (2, None));
    }

    #[test]
    fn traced_requests_append_the_option() {
        let set = Set {
            key: b"k",
            value: b"v",
            options: crate::rc::kv::QuorumOptions::NONE,
        };
        let t = Traced {
            request: &set,
            trace: TraceArg { id: Some("abc") },
        };
        assert_eq!(t.encode(), args(&[b"RC.SET", b"k", b"v", b"TRACE", b"abc"]));
    }

    #[test]
    fn trace_command_round_trips_and_checks() {
        for c in [TraceCmd::Get { id: "n1-7" }, TraceCmd::List { n: 3 }] {
            assert_eq!(TraceCmd::parse(&c.encode()).unwrap(), c);
        }
        assert_eq!(
            TraceCmd::parse(&args(&[b"rc.trace", b"list"])).unwrap(),
            TraceCmd::List { n: DEFAULT_LIST }
        );
        assert!(error(TraceCmd::parse(&args(&[b"RC.TRACE", b"LIST", b"0"]))).contains("n must"));
        assert!(error(TraceCmd::parse(&args(&[b"RC.TRACE", b"GET"]))).contains("one trace id"));
        assert!(error(TraceCmd::parse(&args(&[b"RC.TRACE", b"NOPE"]))).contains("'NOPE'"));
        assert!(error(TraceCmd::parse(&args(&[b"RC.TRACE"]))).contains("wrong number"));
    }

    #[test]
    fn replies_round_trip() {
        let mut t = Trace::new("x".into(), "RC.GET", "k", "n1", 5);
        t.push(3, "n2", What::Timeout);
        let json = t.to_json();
        let v = encode_get::<Value>(Some(&json));
        assert_eq!(decode_get(&v), Some(Some(t.clone())));
        assert_eq!(decode_get(&encode_get::<Value>(None)), Some(None));
        let s = t.summary();
        let v = encode_list::<Value>(&[&s, &s]);
        assert_eq!(decode_list(&v), Some(vec![s.clone(), s]));
    }
}
