//! The `RC.*` contract: the one table of every module command (name, usage synopsis, arity,
//! Redis flags, whether the internal ACL user may call it) and, one file per command family, each
//! command's typed arguments (parsed from and encoded to the argument vector) and typed reply.
//! The module's handlers parse with it, its coordinator and the node process build commands and
//! read replies with it, and the module registers, counts and fuzzes commands from the table.

pub mod chunk;
pub mod clock;
pub mod cluster;
pub mod debug;
pub mod fault;
pub mod hint;
pub mod kv;
pub mod replica;
pub mod reply;
pub mod trace;

use crate::codes::{Code, CodedError};

/// Every command of the module, in table order (the index into [`COMMANDS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    Set,
    Get,
    Del,
    Locate,
    ReplicaPut,
    ReplicaGet,
    ReplicaDel,
    ReplicaPurge,
    ReplicaDrop,
    HintPut,
    HintDone,
    ChunkPut,
    ChunkGet,
    ChunkList,
    ChunkDel,
    Clock,
    ClusterSet,
    ClusterGet,
    ClusterNodeState,
    ClusterSettled,
    ChunkSet,
    ChunkFetch,
    Meta,
    Debug,
    Trace,
    Fault,
}

/// One row of the command table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub command: Command,
    /// The name as a client types it.
    pub name: &'static str,
    /// The synopsis shown in errors: the name and its arguments.
    pub usage: &'static str,
    /// Fewest and most arguments, the command name included (`usize::MAX`: no upper bound).
    pub min_args: usize,
    pub max_args: usize,
    /// Redis's command flags (`readonly`, `write`, `deny-oom`, `fast`).
    pub flags: &'static str,
    /// Whether the internal ACL user, which the modules use to reach each other, may call it.
    pub internal: bool,
}

/// A table row: the name is written once and starts the usage synopsis.
macro_rules! spec {
    ($cmd:ident, $name:literal, $synopsis:literal, $min:expr, $max:expr, $flags:literal, $internal:literal) => {
        Spec {
            command: Command::$cmd,
            name: $name,
            usage: if $synopsis.is_empty() {
                $name
            } else {
                concat!($name, " ", $synopsis)
            },
            min_args: $min,
            max_args: $max,
            flags: $flags,
            internal: $internal,
        }
    };
}

/// Every command: name, synopsis, arity (name included), Redis flags, internal user access.
/// Our commands derive their Redis keys from their arguments (`kv:<key>`, `chunk:<id>:<n>`), so
/// none declares key positions.
pub const COMMANDS: [Spec; 26] = [
    spec!(
        Set,
        "RC.SET",
        "<key> <value> [W <n>] [TIMEOUT <ms>] [TRACE [<id>]]",
        3,
        9,
        "write deny-oom",
        false
    ),
    spec!(
        Get,
        "RC.GET",
        "<key> [R <n>] [TIMEOUT <ms>] [TRACE [<id>]]",
        2,
        8,
        "readonly",
        false
    ),
    spec!(
        Del,
        "RC.DEL",
        "<key> [W <n>] [TIMEOUT <ms>] [TRACE [<id>]]",
        2,
        8,
        "write deny-oom",
        false
    ),
    spec!(Locate, "RC.LOCATE", "<key>", 2, 2, "readonly fast", false),
    spec!(
        ReplicaPut,
        "RC.REPLICA.PUT",
        "<key> <value> <version> <origin-node>",
        5,
        5,
        "write deny-oom",
        true
    ),
    spec!(
        ReplicaGet,
        "RC.REPLICA.GET",
        "<key>",
        2,
        2,
        "readonly",
        true
    ),
    spec!(
        ReplicaDel,
        "RC.REPLICA.DEL",
        "<key> <version> <origin-node>",
        4,
        4,
        "write deny-oom",
        true
    ),
    spec!(
        ReplicaPurge,
        "RC.REPLICA.PURGE",
        "<key> <version> <origin-node>",
        4,
        4,
        "write",
        true
    ),
    spec!(
        ReplicaDrop,
        "RC.REPLICA.DROP",
        "<key> <version> <origin-node>",
        4,
        4,
        "write",
        true
    ),
    spec!(
        HintPut,
        "RC.HINT.PUT",
        "<node> <key> <version> <origin> <0|1 tombstone> <value>",
        7,
        7,
        "write deny-oom",
        true
    ),
    spec!(
        HintDone,
        "RC.HINT.DONE",
        "<node> <key> <version> <origin>",
        5,
        5,
        "write",
        true
    ),
    spec!(
        ChunkPut,
        "RC.CHUNK.PUT",
        "<file-id> <index> <sha256-hex> <data> [CRC32C <crc32c-hex>]",
        5,
        7,
        "write deny-oom",
        true
    ),
    spec!(
        ChunkGet,
        "RC.CHUNK.GET",
        "<file-id> <index>",
        3,
        3,
        "readonly",
        true
    ),
    spec!(
        ChunkList,
        "RC.CHUNK.LIST",
        "<file-id>",
        2,
        2,
        "readonly",
        true
    ),
    spec!(
        ChunkDel,
        "RC.CHUNK.DEL",
        "<file-id> [index]",
        2,
        3,
        "write",
        true
    ),
    spec!(Clock, "RC.CLOCK", "[MERGE <timestamp>]", 1, 3, "fast", true),
    spec!(
        ClusterSet,
        "RC.CLUSTER.SET",
        "<topology-json>",
        2,
        2,
        "write",
        false
    ),
    spec!(ClusterGet, "RC.CLUSTER.GET", "", 1, 1, "readonly", false),
    spec!(
        ClusterNodeState,
        "RC.CLUSTER.NODESTATE",
        "<node> <alive|suspect|down> <ttl-ms>",
        4,
        4,
        "fast",
        false
    ),
    spec!(
        ClusterSettled,
        "RC.CLUSTER.SETTLED",
        "<epoch>",
        2,
        2,
        "fast",
        false
    ),
    spec!(
        ChunkSet,
        "RC.CHUNK.SET",
        "<file-id> <index> <sha256-hex|*> <data> [W <n>] [TIMEOUT <ms>]",
        5,
        9,
        "write deny-oom",
        false
    ),
    spec!(
        ChunkFetch,
        "RC.CHUNK.FETCH",
        "<file-id> <index> [SHA256 <sha256-hex>] [TIMEOUT <ms>]",
        3,
        7,
        "readonly",
        false
    ),
    spec!(
        Meta,
        "RC.META",
        "SET|DEL|RPUSH|HSET <cluster:*|node:* key> [args...]",
        3,
        usize::MAX,
        "write",
        false
    ),
    spec!(
        Debug,
        "RC.DEBUG",
        "PANIC | DROP-WRITES on|off",
        2,
        3,
        "",
        false
    ),
    spec!(
        Trace,
        "RC.TRACE",
        "GET <id> | LIST [<n>]",
        2,
        3,
        "readonly fast",
        false
    ),
    spec!(Fault, "RC.FAULT", "SET <json> | GET", 2, 3, "", false),
];

/// How many commands the module has.
pub const COUNT: usize = COMMANDS.len();

/// The plain Redis commands the internal user needs besides the internal `RC.*` ones: liveness,
/// the background duties' scans of their own Redis, and the audit's version reads.
pub const PLAIN_INTERNAL_COMMANDS: [&str; 5] = ["ping", "info", "scan", "hscan", "hmget"];

impl Command {
    /// Every command in table order.
    pub const ALL: [Command; COUNT] = {
        let mut out = [Command::Set; COUNT];
        let mut i = 0;
        while i < COUNT {
            out[i] = COMMANDS[i].command;
            i += 1;
        }
        out
    };

    pub const fn spec(self) -> &'static Spec {
        &COMMANDS[self as usize]
    }

    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    pub const fn usage(self) -> &'static str {
        self.spec().usage
    }

    /// The command a client's first argument names (case-insensitive, as Redis matches).
    pub fn from_name(name: &[u8]) -> Option<Command> {
        COMMANDS
            .iter()
            .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
            .map(|s| s.command)
    }

    /// Checks the argument count (command name included) against the table, with Redis's own
    /// wording and code.
    pub fn check_arity(self, argc: usize) -> Result<(), CodedError> {
        let s = self.spec();
        if argc < s.min_args || argc > s.max_args {
            return Err(CodedError::new(
                Code::Arity,
                format!(
                    "wrong number of arguments for '{}' command; usage: {}",
                    s.name, s.usage
                ),
            ));
        }
        Ok(())
    }

    /// `BADARG <what>; usage: <synopsis>`.
    pub fn usage_error(self, what: &str) -> CodedError {
        CodedError::new(Code::BadArg, format!("{what}; usage: {}", self.usage()))
    }
}

/// What the internal ACL user may run, lowercase: the plain commands, then every internal `RC.*`
/// command of the table. Module commands belong to no ACL category on Redis 7.0, so each is named.
pub fn internal_commands() -> Vec<String> {
    PLAIN_INTERNAL_COMMANDS
        .iter()
        .map(|c| c.to_string())
        .chain(
            COMMANDS
                .iter()
                .filter(|s| s.internal)
                .map(|s| s.name.to_ascii_lowercase()),
        )
        .collect()
}

/// The configured size limits the argument checks apply (`rcluster.max-*-bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
    pub max_chunk_bytes: u64,
}

impl Limits {
    /// No limit: for decoding what another node sent.
    pub const NONE: Limits = Limits {
        max_key_bytes: u64::MAX,
        max_value_bytes: u64::MAX,
        max_chunk_bytes: u64::MAX,
    };
}

/// A command built by a caller: its name, then each argument in wire order.
pub trait Request {
    fn command(&self) -> Command;

    /// Calls `f` with each argument after the command name, in order.
    fn each_arg(&self, f: &mut dyn FnMut(&[u8]));

    /// The whole argument vector, command name first.
    fn encode(&self) -> Vec<Vec<u8>> {
        let mut out = vec![self.command().name().as_bytes().to_vec()];
        self.each_arg(&mut |a| out.push(a.to_vec()));
        out
    }

    /// Appends the command to `out` as a RESP request (an array of bulk strings), the bytes a
    /// client sends.
    fn write_resp(&self, out: &mut Vec<u8>) {
        let bulk_len = |n: usize| 1 + Decimal::new(n as u64).as_bytes().len() + 2 + n + 2;
        let name = self.command().name().as_bytes();
        let (mut count, mut bytes) = (1, bulk_len(name.len()));
        self.each_arg(&mut |a| {
            count += 1;
            bytes += bulk_len(a.len());
        });
        out.reserve(bytes + 1 + Decimal::new(count as u64).as_bytes().len() + 2);
        push_header(out, b'*', count);
        let mut bulk = |a: &[u8]| {
            push_header(out, b'$', a.len());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        };
        bulk(name);
        self.each_arg(&mut bulk);
    }
}

fn push_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(Decimal::new(n as u64).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A u64 in decimal on the stack (arguments carry versions and indexes as text).
pub struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(mut n: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// An argument checked to be ASCII (ids and digests) as text.
fn ascii(arg: &[u8]) -> &str {
    std::str::from_utf8(arg).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the families' tests.
    use super::*;

    /// Small limits, to reach the size checks.
    pub const LIMITS: Limits = Limits {
        max_key_bytes: 8,
        max_value_bytes: 16,
        max_chunk_bytes: 32,
    };

    /// An argument vector from text pieces.
    pub fn args(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    /// The error an argument vector gives, as `CODE message`.
    pub fn error<T: std::fmt::Debug>(r: Result<T, CodedError>) -> String {
        r.expect_err("expected an error").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order_and_names_are_unique() {
        for (i, s) in COMMANDS.iter().enumerate() {
            assert_eq!(s.command as usize, i, "{}", s.name);
            assert_eq!(Command::ALL[i], s.command);
            assert!(s.name.starts_with("RC."));
            assert!(
                s.usage == s.name || s.usage.starts_with(&format!("{} ", s.name)),
                "{}",
                s.usage
            );
            assert!(s.min_args >= 1 && s.min_args <= s.max_args);
            assert_eq!(
                Command::from_name(s.name.to_ascii_lowercase().as_bytes()),
                Some(s.command)
            );
            for flag in s.flags.split_whitespace() {
                assert!(
                    ["readonly", "write", "deny-oom", "fast"].contains(&flag),
                    "{flag}"
                );
            }
        }
        let mut names: Vec<&str> = COMMANDS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT);
        assert_eq!(Command::from_name(b"RC.NOPE"), None);
    }

    #[test]
    fn arity_errors_name_the_command_and_its_usage() {
        assert!(Command::Set.check_arity(3).is_ok());
        assert!(Command::Set.check_arity(9).is_ok());
        assert!(Command::Set.check_arity(10).is_err());
        let e = Command::Set.check_arity(2).unwrap_err();
        assert_eq!(e.code, Code::Arity);
        assert_eq!(
            e.to_string(),
            "ERR wrong number of arguments for 'RC.SET' command; usage: RC.SET <key> <value> [W <n>] [TIMEOUT <ms>] [TRACE [<id>]]"
        );
        assert_eq!(
            Command::ClusterGet.check_arity(2).unwrap_err().message,
            "wrong number of arguments for 'RC.CLUSTER.GET' command; usage: RC.CLUSTER.GET"
        );
        assert!(Command::Meta.check_arity(1000).is_ok());
        assert!(Command::Meta.check_arity(2).is_err());
    }

    #[test]
    fn internal_commands_are_the_plain_ones_and_the_internal_rows() {
        let all = internal_commands();
        assert_eq!(
            all,
            [
                "ping",
                "info",
                "scan",
                "hscan",
                "hmget",
                "rc.replica.put",
                "rc.replica.get",
                "rc.replica.del",
                "rc.replica.purge",
                "rc.replica.drop",
                "rc.hint.put",
                "rc.hint.done",
                "rc.chunk.put",
                "rc.chunk.get",
                "rc.chunk.list",
                "rc.chunk.del",
                "rc.clock",
            ]
        );
    }

    #[test]
    fn decimals_and_resp_requests() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes());
        }
        let get = replica::ReplicaGet { key: b"k\r\n" };
        let mut out = Vec::new();
        get.write_resp(&mut out);
        assert_eq!(out, b"*2\r\n$14\r\nRC.REPLICA.GET\r\n$3\r\nk\r\n\r\n");
        assert_eq!(out.capacity(), out.len());
        assert_eq!(
            get.encode(),
            [b"RC.REPLICA.GET".to_vec(), b"k\r\n".to_vec()]
        );
    }
}
