//! The quorum register commands any client may call, and the argument checks of keys and values:
//!
//! `RC.SET key value [W n] [TIMEOUT ms] [TRACE [id]]` → OK once W replicas hold it;
//! `RC.GET key [R n] [TIMEOUT ms] [TRACE [id]]` → the newest value among R replicas, or nil;
//! `RC.DEL key [W n] [TIMEOUT ms] [TRACE [id]]` → OK once W replicas hold the tombstone;
//! (`TRACE`: the request is traced, under the id given or one the coordinator makes; see
//! [`super::trace`]; the reply is the same);
//! `RC.LOCATE key` → the key's preference list: `[[node, address, state], ...]`.

use std::ops::Deref;

use crate::codes::CodedError;
use crate::quorum::{parse_options, Options};
use crate::validate;

use super::reply::{Build, Read};
use super::trace::{self, TraceArg};
use super::{Command, Decimal, Limits, Request};

/// A user key: 1 to `max-key-bytes` bytes of UTF-8.
pub fn check_key<'a>(arg: &'a [u8], limits: &Limits) -> Result<&'a str, CodedError> {
    validate::user_key(arg, limits.max_key_bytes)
}

/// A value: at most `max-value-bytes`.
pub fn check_value(value: &[u8], limits: &Limits) -> Result<(), CodedError> {
    validate::check_size(
        "value",
        value.len(),
        limits.max_value_bytes,
        "rcluster.max-value-bytes",
    )
}

/// Option arguments after the fixed ones: at most this many (the arity bounds them).
pub const MAX_OPTION_ARGS: usize = 6;

/// A request's `W`/`R` and `TIMEOUT` options. As received they stay raw until the cluster's N
/// is known ([`QuorumOptions::check`]: a node without a topology answers `NOTREADY` before it
/// judges them); as built they are typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumOptions<'a> {
    Raw {
        args: [&'a [u8]; MAX_OPTION_ARGS],
        len: usize,
        /// `TRACE [id]`, taken out of `args` by [`QuorumOptions::traced`].
        trace: Option<TraceArg<'a>>,
    },
    Typed(Options),
}

impl<'a> QuorumOptions<'a> {
    /// None given.
    pub const NONE: QuorumOptions<'static> = QuorumOptions::Typed(Options {
        count: None,
        timeout_ms: None,
    });

    /// The option arguments as received (after the arity check: at most [`MAX_OPTION_ARGS`]).
    pub fn raw<A: Deref<Target = [u8]>>(args: &'a [A]) -> QuorumOptions<'a> {
        Self::packed(args.iter().map(|a| &**a), None)
    }

    /// At most [`MAX_OPTION_ARGS`] option arguments, kept raw.
    fn packed(args: impl Iterator<Item = &'a [u8]>, trace: Option<TraceArg<'a>>) -> Self {
        let mut out = [&[][..]; MAX_OPTION_ARGS];
        let mut len = 0;
        for (slot, a) in out.iter_mut().zip(args) {
            *slot = a;
            len += 1;
        }
        QuorumOptions::Raw {
            args: out,
            len,
            trace,
        }
    }

    /// The option arguments of `RC.SET`, `RC.GET` or `RC.DEL` as received, `TRACE [id]` taken
    /// out of them (a bad trace id is refused here).
    pub fn traced<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<QuorumOptions<'a>, CodedError> {
        let (rest, trace) = trace::split(args)?;
        Ok(Self::packed(rest.into_iter(), trace))
    }

    /// The `TRACE [id]` option, when given.
    pub fn trace(&self) -> Option<TraceArg<'a>> {
        match self {
            QuorumOptions::Raw { trace, .. } => *trace,
            QuorumOptions::Typed(_) => None,
        }
    }

    /// The options checked against the cluster's replica count `n`; `count_name` is `W` or `R`
    /// (`None`: only TIMEOUT is allowed).
    pub fn check(&self, count_name: Option<&str>, n: u8) -> Result<Options, CodedError> {
        match self {
            QuorumOptions::Raw { args, len, .. } => parse_options(&args[..*len], count_name, n),
            QuorumOptions::Typed(o) => Ok(*o),
        }
    }

    pub(crate) fn each_arg(&self, count_name: &str, f: &mut dyn FnMut(&[u8])) {
        match self {
            QuorumOptions::Raw { args, len, trace } => {
                args[..*len].iter().for_each(|a| f(a));
                if let Some(t) = trace {
                    t.each_arg(f);
                }
            }
            QuorumOptions::Typed(o) => {
                if let Some(c) = o.count {
                    f(count_name.as_bytes());
                    f(Decimal::new(u64::from(c)).as_bytes());
                }
                if let Some(ms) = o.timeout_ms {
                    f(b"TIMEOUT");
                    f(Decimal::new(ms).as_bytes());
                }
            }
        }
    }
}

/// `RC.SET key value [W n] [TIMEOUT ms]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Set<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub options: QuorumOptions<'a>,
}

impl<'a> Set<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<Set<'a>, CodedError> {
        Command::Set.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        check_value(&args[2], limits)?;
        Ok(Set {
            key: &args[1],
            value: &args[2],
            options: QuorumOptions::traced(&args[3..])?,
        })
    }
}

impl Request for Set<'_> {
    fn command(&self) -> Command {
        Command::Set
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
        f(self.value);
        self.options.each_arg("W", f);
    }
}

/// `RC.GET key [R n] [TIMEOUT ms]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Get<'a> {
    pub key: &'a [u8],
    pub options: QuorumOptions<'a>,
}

impl<'a> Get<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<Get<'a>, CodedError> {
        Command::Get.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        Ok(Get {
            key: &args[1],
            options: QuorumOptions::traced(&args[2..])?,
        })
    }
}

impl Request for Get<'_> {
    fn command(&self) -> Command {
        Command::Get
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
        self.options.each_arg("R", f);
    }
}

/// `RC.DEL key [W n] [TIMEOUT ms]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Del<'a> {
    pub key: &'a [u8],
    pub options: QuorumOptions<'a>,
}

impl<'a> Del<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<Del<'a>, CodedError> {
        Command::Del.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        Ok(Del {
            key: &args[1],
            options: QuorumOptions::traced(&args[2..])?,
        })
    }
}

impl Request for Del<'_> {
    fn command(&self) -> Command {
        Command::Del
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
        self.options.each_arg("W", f);
    }
}

/// `RC.LOCATE key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locate<'a> {
    pub key: &'a [u8],
}

impl<'a> Locate<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<Locate<'a>, CodedError> {
        Command::Locate.check_arity(args.len())?;
        check_key(&args[1], limits)?;
        Ok(Locate { key: &args[1] })
    }
}

impl Request for Locate<'_> {
    fn command(&self) -> Command {
        Command::Locate
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.key);
    }
}

/// One row of an `RC.LOCATE` reply: a preference node, its Redis address (`host:port`, empty
/// when unknown) and its state as this node sees it, one of [`LOCATE_STATES`]: `self`; else
/// the failure detector's verdict the node process pushed (`alive`, `suspect`, `down`, the
/// states `/api/nodes` and `rcluster status` show); before any verdict, what this node's own
/// connection to it says (`alive` once it answered, `down` once it failed, `unknown` before
/// any call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocateRow {
    pub node: String,
    pub address: String,
    pub state: &'static str,
}

/// The states a locate row may show.
pub const LOCATE_STATES: [&str; 5] = ["self", "alive", "suspect", "down", "unknown"];

impl LocateRow {
    pub fn encode<B: Build>(rows: Vec<LocateRow>) -> B::Out {
        B::array(
            rows.into_iter()
                .map(|r| {
                    B::array(vec![
                        B::bulk(r.node.into_bytes()),
                        B::bulk(r.address.into_bytes()),
                        B::status(r.state),
                    ])
                })
                .collect(),
        )
    }

    pub fn decode<'a>(reply: impl Read<'a>) -> Option<Vec<LocateRow>> {
        (0..reply.array_len()?)
            .map(|i| {
                let mut cols = reply.item(i)?.items_of(3)?;
                let node = String::from_utf8(cols.next()?.bulk()?.to_vec()).ok()?;
                let address = String::from_utf8(cols.next()?.bulk()?.to_vec()).ok()?;
                let shown = cols.next()?.status()?;
                let state = LOCATE_STATES.into_iter().find(|s| *s == shown)?;
                Some(LocateRow {
                    node,
                    address,
                    state,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Code;
    use crate::rc::reply::Value;
    use crate::rc::testing::{args, error, LIMITS};

    #[test]
    fn set_round_trips_and_keeps_raw_options_for_later() {
        let built = Set {
            key: b"k",
            value: b"v a l",
            options: QuorumOptions::Typed(Options {
                count: Some(2),
                timeout_ms: Some(250),
            }),
        };
        let wire = built.encode();
        assert_eq!(
            wire,
            args(&[b"RC.SET", b"k", b"v a l", b"W", b"2", b"TIMEOUT", b"250"])
        );
        let parsed = Set::parse(&wire, &LIMITS).unwrap();
        assert_eq!((parsed.key, parsed.value), (built.key, built.value));
        assert_eq!(
            parsed.options.check(Some("W"), 3),
            built.options.check(Some("W"), 3)
        );
        assert_eq!(parsed.encode(), wire);
        assert_eq!(parsed.options.trace(), None);
        let wire = args(&[b"RC.SET", b"k", b"v", b"TRACE", b"t-1", b"W", b"2"]);
        let traced = Set::parse(&wire, &LIMITS).unwrap();
        assert_eq!(traced.options.trace().and_then(|t| t.id), Some("t-1"));
        assert_eq!(traced.options.check(Some("W"), 3).unwrap().count, Some(2));
        assert_eq!(
            traced.encode(),
            args(&[b"RC.SET", b"k", b"v", b"W", b"2", b"TRACE", b"t-1"])
        );
        let wire = args(&[b"rc.set", b"k", b"v"]);
        let plain = Set::parse(&wire, &LIMITS).unwrap();
        assert_eq!(
            plain.options.check(Some("W"), 3).unwrap(),
            Options::default()
        );
    }

    #[test]
    fn set_errors_are_the_validation_errors_in_order() {
        assert_eq!(
            error(Set::parse(&args(&[b"RC.SET", b"k"]), &LIMITS)),
            "ERR wrong number of arguments for 'RC.SET' command; usage: RC.SET <key> <value> [W <n>] [TIMEOUT <ms>] [TRACE [<id>]]"
        );
        assert_eq!(
            error(Set::parse(&args(&[b"RC.SET", b"", b"v"]), &LIMITS)),
            "BADARG key must not be empty"
        );
        // The key is judged before the value.
        let e = Set::parse(&args(&[b"RC.SET", b"123456789", &[0; 99]]), &LIMITS).unwrap_err();
        assert_eq!(e.code, Code::TooLarge);
        assert!(e.message.starts_with("key is 9 bytes, the limit is 8"));
        let e = Set::parse(&args(&[b"RC.SET", b"k", &[0; 17]]), &LIMITS).unwrap_err();
        assert_eq!(
            e.message,
            "value is 17 bytes, the limit is 16 (rcluster.max-value-bytes)"
        );
        // Options are judged only once N is known.
        let wire = args(&[b"RC.SET", b"k", b"v", b"W", b"9"]);
        let bad = Set::parse(&wire, &LIMITS).unwrap();
        assert_eq!(
            error(bad.options.check(Some("W"), 3)),
            "BADARG W must be between 1 and N=3, got 9"
        );
    }

    #[test]
    fn get_del_locate_round_trip() {
        let g = Get {
            key: b"k",
            options: QuorumOptions::Typed(Options {
                count: Some(1),
                timeout_ms: None,
            }),
        };
        let wire = g.encode();
        assert_eq!(wire, args(&[b"RC.GET", b"k", b"R", b"1"]));
        let p = Get::parse(&wire, &LIMITS).unwrap();
        assert_eq!(p.options.check(Some("R"), 3).unwrap().count, Some(1));
        assert!(Get::parse(&args(&[b"RC.GET", &[0xff]]), &LIMITS).is_err());

        let d = Del {
            key: b"k",
            options: QuorumOptions::NONE,
        };
        assert_eq!(d.encode(), args(&[b"RC.DEL", b"k"]));
        assert_eq!(Del::parse(&d.encode(), &LIMITS).unwrap().key, b"k");
        assert!(error(Del::parse(&args(&[b"RC.DEL"]), &LIMITS)).contains("'RC.DEL'"));

        let l = Locate { key: b"k" };
        assert_eq!(Locate::parse(&l.encode(), &LIMITS).unwrap(), l);
        assert!(error(Locate::parse(
            &args(&[b"RC.LOCATE", b"k", b"R", b"1"]),
            &LIMITS
        ))
        .contains("usage: RC.LOCATE <key>"));
    }

    #[test]
    fn locate_reply_round_trips() {
        let rows = vec![
            LocateRow {
                node: "n1".into(),
                address: "127.0.0.1:7001".into(),
                state: "self",
            },
            LocateRow {
                node: "n2".into(),
                address: String::new(),
                state: "unknown",
            },
        ];
        let v = LocateRow::encode::<Value>(rows.clone());
        assert_eq!(LocateRow::decode(&v), Some(rows));
        assert_eq!(LocateRow::decode(&Value::Int(1)), None);
        // One vocabulary with /api/nodes: a connection that answered is `alive`, never `up`.
        let up = vec![LocateRow {
            node: "n2".into(),
            address: String::new(),
            state: "up",
        }];
        assert_eq!(LocateRow::decode(&LocateRow::encode::<Value>(up)), None);
    }
}
