//! Random-argument fuzzing of every `RC.*` command against a real `redis-server --loadmodule`:
//! whatever the arguments, each reply is well-formed or an error with a stable code, and Redis
//! neither panics nor crashes (plus `RC.DEBUG PANIC` proves a panic is caught and data survives).
//!
//! Reproduce a failure with the seed the test prints: `RC_FUZZ_SEED=<seed> cargo test -p
//! rcluster-tests --test module_fuzz -- --nocapture`.

use std::collections::BTreeMap;
use std::time::Instant;

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::{call, error_of, ping, Redis};
use redis::Value;

const DEFAULT_SEED: u64 = 0x5eed_c10c_2024_0001;
/// Command calls per run (the brief asks for at least 5,000).
const CALLS: usize = 20_000;
/// Arguments of 1 to 9 MiB per run.
const MAX_HUGE: usize = 20;
/// The stable error codes of the module's interface.
const STABLE_CODES: [&str; 8] = [
    "ERR",
    "BADARG",
    "TOOLARGE",
    "CHECKSUM",
    "WRONGTYPE",
    "CORRUPT",
    "CLOCKSKEW",
    "INTERNAL",
];

const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 8 << 20;
const MAX_CHUNK: usize = 5 << 20;
const MAX_NODE_ID: usize = 32;
const MAX_FILE_ID: usize = 128;
const MAX_CHUNK_INDEX: u64 = 1 << 20;
const MIB: usize = 1 << 20;

/// The module's commands as registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Put,
    Get,
    Del,
    ChunkPut,
    ChunkGet,
    ChunkList,
    ChunkDel,
    Clock,
    Debug,
}

impl Cmd {
    const ALL: [Cmd; 9] = [
        Cmd::Put,
        Cmd::Get,
        Cmd::Del,
        Cmd::ChunkPut,
        Cmd::ChunkGet,
        Cmd::ChunkList,
        Cmd::ChunkDel,
        Cmd::Clock,
        Cmd::Debug,
    ];

    fn name(self) -> &'static str {
        match self {
            Cmd::Put => "RC.REPLICA.PUT",
            Cmd::Get => "RC.REPLICA.GET",
            Cmd::Del => "RC.REPLICA.DEL",
            Cmd::ChunkPut => "RC.CHUNK.PUT",
            Cmd::ChunkGet => "RC.CHUNK.GET",
            Cmd::ChunkList => "RC.CHUNK.LIST",
            Cmd::ChunkDel => "RC.CHUNK.DEL",
            Cmd::Clock => "RC.CLOCK",
            Cmd::Debug => "RC.DEBUG",
        }
    }
}

/// xorshift64: tiny, seedable, good enough to pick arguments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below(hi_inclusive - lo + 1)
    }
    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn seed() -> u64 {
    match std::env::var("RC_FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| {
                panic!("RC_FUZZ_SEED must be a u64 (decimal or 0x hex), got '{s}'")
            })
        }
        Err(_) => DEFAULT_SEED,
    }
}

// Pools of valid identifiers, small so that writes collide (duplicate, stale, overwrite). Some
// name keys prepared with the wrong type or a corrupt layout before the run.
const KEYS: [&str; 9] = [
    "k", "a", "b", "wt", "corrupt", "corrupt2", "ключ", "k\0nul", "sp ace",
];
const NODES: [&str; 6] = ["n1", "n2", "n-3", "node_4", "z", "0"];
const FILES: [&str; 7] = ["f1", "F-2", "f_3", "fwt", "fwt2", "fcor", "9"];
const DIGITS: [&str; 22] = [
    "0",
    "1",
    "7",
    "007",
    "00",
    "42",
    "-1",
    "-0",
    "+1",
    "1.5",
    " 1",
    "1 ",
    "1e3",
    "0x10",
    "1048575",
    "1048576",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999999",
];

/// Builds random argument vectors; remembers recent data so checksums pair up with their data.
struct Gen {
    rng: Rng,
    huge_left: usize,
    data_pool: Vec<Vec<u8>>,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: Rng::new(seed),
            huge_left: MAX_HUGE,
            data_pool: vec![Vec::new(), b"abc".to_vec(), b"\0\xff\xfe".to_vec()],
        }
    }

    fn remember(&mut self, data: &[u8]) {
        if data.len() <= 64 * 1024 {
            if self.data_pool.len() >= 12 {
                let i = self.rng.below(self.data_pool.len());
                self.data_pool.swap_remove(i);
            }
            self.data_pool.push(data.to_vec());
        }
    }

    fn name(&mut self, cmd: Cmd) -> String {
        let name = cmd.name();
        match self.rng.below(3) {
            0 => name.to_string(),
            1 => name.to_ascii_lowercase(),
            _ => name
                .chars()
                .map(|c| {
                    if self.rng.chance(1, 2) {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect(),
        }
    }

    fn short_ascii(&mut self) -> Vec<u8> {
        let n = self.rng.range(1, 16);
        (0..n).map(|_| b' ' + self.rng.below(95) as u8).collect()
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let n = self.rng.range(0, 64);
        let mut b = self.rng.bytes(n);
        if !b.is_empty() && self.rng.chance(1, 2) {
            let i = self.rng.below(b.len());
            b[i] = *self.rng.pick(&[0u8, 0xff, 0xc3, 0x80]);
        }
        b
    }

    fn digits(&mut self) -> Vec<u8> {
        match self.rng.below(4) {
            0 => {
                let n = self.rng.range(1, 40);
                (0..n).map(|_| b'0' + self.rng.below(10) as u8).collect()
            }
            1 => self.rng.next().to_string().into_bytes(),
            _ => self.rng.pick(&DIGITS).as_bytes().to_vec(),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        self.rng.pick(&KEYS).as_bytes().to_vec()
    }
    fn node(&mut self) -> Vec<u8> {
        self.rng.pick(&NODES).as_bytes().to_vec()
    }
    fn file(&mut self) -> Vec<u8> {
        self.rng.pick(&FILES).as_bytes().to_vec()
    }
    fn index(&mut self) -> Vec<u8> {
        match self.rng.below(20) {
            0 => b"007".to_vec(),
            1 => (MAX_CHUNK_INDEX - 1).to_string().into_bytes(),
            2 => MAX_CHUNK_INDEX.to_string().into_bytes(),
            _ => self.rng.below(8).to_string().into_bytes(),
        }
    }
    fn version(&mut self) -> Vec<u8> {
        let now_ts = (now_ms() << 16) + self.rng.below(1000) as u64;
        match self.rng.below(6) {
            0 => now_ts.to_string().into_bytes(),
            1 => u64::MAX.to_string().into_bytes(),
            2 => self.digits(),
            _ => self.rng.below(20).to_string().into_bytes(),
        }
    }

    /// Some data: recent (so earlier checksums match), fresh small bytes, or a value near a limit.
    fn data(&mut self) -> Vec<u8> {
        match self.rng.below(4) {
            0 | 1 => {
                let i = self.rng.below(self.data_pool.len());
                self.data_pool[i].clone()
            }
            2 => {
                let n = self.rng.range(0, 4096);
                self.rng.bytes(n)
            }
            _ => self.short_ascii(),
        }
    }

    /// A hex SHA-256: usually of data we may send, sometimes uppercase or of nothing we hold.
    fn sha_of(&mut self, data: &[u8]) -> Vec<u8> {
        let hex = sha256_hex(data);
        match self.rng.below(10) {
            0 => hex.to_ascii_uppercase().into_bytes(),
            1 => hex.as_bytes()[..63].to_vec(),
            2 => format!("{hex}0").into_bytes(),
            _ => hex.into_bytes(),
        }
    }

    fn sha(&mut self) -> Vec<u8> {
        let data = self.data();
        self.sha_of(&data)
    }

    /// Strings at a limit or one past it.
    fn at_limit(&mut self) -> Vec<u8> {
        let over = self.rng.below(2);
        match self.rng.below(5) {
            0 => vec![b'k'; MAX_KEY + over],
            // Two-byte UTF-8 characters: 1024 bytes exactly, or one byte more (cut in half).
            1 => {
                let mut s = "é".repeat(MAX_KEY / 2).into_bytes();
                if over == 1 {
                    s.push(0xc3);
                }
                s
            }
            2 => vec![b'n'; MAX_NODE_ID + over],
            3 => vec![b'F'; MAX_FILE_ID + over],
            _ => (MAX_CHUNK_INDEX - 1 + over as u64).to_string().into_bytes(),
        }
    }

    /// One argument of 1 to 9 MiB, or `None` when this run's budget is spent. Some sit exactly at
    /// the value and chunk limits or one byte past them.
    fn huge(&mut self) -> Option<Vec<u8>> {
        if self.huge_left == 0 {
            return None;
        }
        self.huge_left -= 1;
        let len = match self.rng.below(6) {
            0 => MAX_CHUNK + self.rng.below(2),
            1 => MAX_VALUE + self.rng.below(2),
            _ => self.rng.range(MIB, 9 * MIB),
        };
        Some(if self.rng.chance(1, 2) {
            vec![b'x'; len]
        } else {
            self.rng.bytes(len)
        })
    }

    /// Any argument at all.
    fn any_arg(&mut self) -> Vec<u8> {
        if self.rng.chance(1, 4_000) {
            if let Some(h) = self.huge() {
                return h;
            }
        }
        match self.rng.below(11) {
            0 => Vec::new(),
            1 => self.short_ascii(),
            2 => self.random_bytes(),
            3 => self.digits(),
            4 => self.sha(),
            5 => self.data(),
            6 => self.key(),
            7 => self.node(),
            8 => self.file(),
            9 => self.index(),
            _ => self.at_limit(),
        }
    }

    /// Arguments of the right shape for `cmd` (mostly valid), to reach past the argument checks.
    fn typed_args(&mut self, cmd: Cmd) -> Vec<Vec<u8>> {
        match cmd {
            Cmd::Put => {
                let value = match self.rng.below(300) {
                    0 => self.huge().unwrap_or_default(),
                    1 => self.at_limit(),
                    _ => self.data(),
                };
                vec![self.key(), value, self.version(), self.node()]
            }
            Cmd::Get => vec![self.key()],
            Cmd::Del => vec![self.key(), self.version(), self.node()],
            Cmd::ChunkPut => {
                let data = match self.rng.below(300) {
                    0 => self.huge().unwrap_or_default(),
                    _ => self.data(),
                };
                let sha = match self.rng.below(10) {
                    0 => self.sha(),
                    1 => self.any_arg(),
                    _ => self.sha_of(&data),
                };
                self.remember(&data);
                vec![self.file(), self.index(), sha, data]
            }
            Cmd::ChunkGet => vec![self.file(), self.index()],
            Cmd::ChunkList => vec![self.file()],
            Cmd::ChunkDel => {
                if self.rng.chance(1, 2) {
                    vec![self.file()]
                } else {
                    vec![self.file(), self.index()]
                }
            }
            Cmd::Clock => match self.rng.below(3) {
                0 => Vec::new(),
                _ => {
                    let merge = if self.rng.chance(1, 2) {
                        "MERGE"
                    } else {
                        "merge"
                    };
                    let ahead_ms = *self.rng.pick(&[0u64, 1_000, 59_000, 61_000, 10_000_000]);
                    let ts = match self.rng.below(3) {
                        0 => self.digits(),
                        _ => ((now_ms() + ahead_ms) << 16).to_string().into_bytes(),
                    };
                    vec![merge.as_bytes().to_vec(), ts]
                }
            },
            Cmd::Debug => vec![if self.rng.chance(1, 2) {
                b"PANIC".to_vec()
            } else {
                b"panic".to_vec()
            }],
        }
    }

    /// A full argument vector (command name first).
    fn command(&mut self) -> (Cmd, Vec<Vec<u8>>) {
        let cmd = *self.rng.pick(&Cmd::ALL);
        let mut args = if self.rng.chance(1, 2) {
            let mut args = self.typed_args(cmd);
            for a in args.iter_mut() {
                if self.rng.chance(1, 10) {
                    *a = self.any_arg();
                }
            }
            if self.rng.chance(1, 20) {
                let extra = self.any_arg();
                args.push(extra);
            } else if !args.is_empty() && self.rng.chance(1, 20) {
                args.pop();
            }
            args
        } else {
            let n = self.rng.range(0, 8);
            (0..n).map(|_| self.any_arg()).collect()
        };
        args.insert(0, self.name(cmd).into_bytes());
        (cmd, args)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A short printable rendering of a command line for failure reports.
fn render(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| {
            if a.len() > 48 {
                format!("\"{}\"...({} bytes)", a[..24].escape_ascii(), a.len())
            } else {
                format!("\"{}\"", a.escape_ascii())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_u64_text(v: &Value) -> bool {
    matches!(v, Value::BulkString(b) if !b.is_empty()
        && b.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok()).is_some())
}

fn is_node_id(v: &Value) -> bool {
    matches!(v, Value::BulkString(b) if !b.is_empty() && b.len() <= MAX_NODE_ID
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_'))
}

fn is_sha_hex(b: &[u8]) -> bool {
    b.len() == 64
        && b.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Checks a successful reply against the shape its command documents.
fn check_reply(cmd: Cmd, reply: &Value) -> Result<(), String> {
    let ok = match (cmd, reply) {
        (Cmd::Put | Cmd::Del, Value::Array(items)) => {
            items.len() == 3
                && matches!(&items[0], Value::SimpleString(s) if ["applied", "duplicate", "stale"].contains(&s.as_str()))
                && is_u64_text(&items[1])
                && is_node_id(&items[2])
        }
        (Cmd::Get, Value::Nil) => true,
        (Cmd::Get, Value::Array(items)) => {
            items.len() == 4
                && is_u64_text(&items[1])
                && is_node_id(&items[2])
                && match (&items[0], &items[3]) {
                    (Value::BulkString(v), Value::Int(0)) => v.len() <= MAX_VALUE,
                    (Value::Nil, Value::Int(1)) => true,
                    _ => false,
                }
        }
        (Cmd::ChunkPut, Value::Okay) => true,
        (Cmd::ChunkGet, Value::Nil) => true,
        (Cmd::ChunkGet, Value::BulkString(data)) => data.len() <= MAX_CHUNK,
        (Cmd::ChunkList, Value::Array(rows)) => {
            let mut last: Option<i64> = None;
            rows.iter().all(|row| match row {
                Value::Array(cols) if cols.len() == 3 => match (&cols[0], &cols[1], &cols[2]) {
                    (Value::Int(i), Value::Int(len), Value::BulkString(sha)) => {
                        // Indexes ascend strictly: one row per chunk.
                        let ascending = !matches!(last, Some(l) if *i <= l);
                        last = Some(*i);
                        ascending
                            && (0..MAX_CHUNK_INDEX as i64).contains(i)
                            && (-1..=MAX_CHUNK as i64).contains(len)
                            && (sha.is_empty() || is_sha_hex(sha))
                    }
                    _ => false,
                },
                _ => false,
            })
        }
        (Cmd::ChunkDel, Value::Int(n)) => *n >= 0,
        (Cmd::Clock, Value::Array(items)) => {
            items.len() == 3
                && match (&items[0], &items[1], &items[2]) {
                    (Value::BulkString(ts), Value::Int(phys), Value::Int(logical)) => {
                        let ts = std::str::from_utf8(ts)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok());
                        *phys >= 0
                            && (0..=0xffff).contains(logical)
                            && ts == Some(((*phys as u64) << 16) | *logical as u64)
                    }
                    _ => false,
                }
        }
        // RC.DEBUG is disabled in this run: it must never succeed.
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let mut shown = format!("{reply:?}");
        if shown.len() > 300 {
            let mut cut = 300;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push_str("...");
        }
        Err(format!("malformed {} reply: {shown}", cmd.name()))
    }
}

/// Keys holding the wrong type or a damaged layout, so WRONGTYPE, CORRUPT and CHECKSUM paths run.
fn plant_bad_keys(c: &mut redis::Connection) {
    let bad_sha = sha256_hex(b"not the data");
    let plants: [&[&[u8]]; 8] = [
        &[b"SET", b"kv:wt", b"plain string"],
        &[b"HSET", b"kv:corrupt", b"value", b"x"],
        &[
            b"HSET",
            b"kv:corrupt2",
            b"value",
            b"x",
            b"version",
            b"5",
            b"origin",
            b"BAD!",
            b"tombstone",
            b"0",
        ],
        &[b"SET", b"chunk:fwt:0", b"plain string"],
        &[b"SET", b"file:fwt2:chunks", b"plain string"],
        &[
            b"HSET",
            b"chunk:fcor:0",
            b"sha256",
            bad_sha.as_bytes(),
            b"length",
            b"3",
            b"data",
            b"xyz",
        ],
        &[b"HSET", b"chunk:fcor:1", b"length", b"3", b"data", b"abc"],
        &[b"SADD", b"file:fcor:chunks", b"0", b"1"],
    ];
    for p in plants {
        call(c, p).unwrap_or_else(|e| {
            panic!(
                "planting {}: {e}",
                render(&p.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
            )
        });
    }
}

/// `INFO rcluster` as `field -> value`, without the `rcluster_` prefix.
fn info_rcluster(c: &mut redis::Connection) -> BTreeMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg("rcluster")
        .query(c)
        .expect("INFO rcluster");
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.trim_start_matches("rcluster_").to_string(), v.to_string()))
        .collect()
}

/// The log lines that show a crash or a panic.
fn crash_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            ["panicked", "crashed", "Guru Meditation"]
                .iter()
                .any(|w| l.contains(w))
        })
        .take(20)
        .collect()
}

#[test]
fn random_arguments_never_crash_and_only_return_stable_codes() {
    let seed = seed();
    println!("module_fuzz: seed {seed} (reproduce with RC_FUZZ_SEED={seed})");
    let started = Instant::now();
    let mut r = Redis::start(&[]);
    let mut c = r.conn();
    plant_bad_keys(&mut c);

    let mut g = Gen::new(seed);
    // code (or "malformed"/"client") -> (count, first example)
    let mut unexpected: BTreeMap<String, (usize, String)> = BTreeMap::new();
    // command -> outcome -> count, printed as a summary
    let mut outcomes: BTreeMap<(Cmd, String), usize> = BTreeMap::new();
    let mut calls = 0usize;
    let mut note = |what: String, example: String| {
        let entry = unexpected.entry(what).or_insert((0, example));
        entry.0 += 1;
    };

    for _ in 0..CALLS {
        let (cmd, args) = g.command();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let result = call(&mut c, &refs);
        calls += 1;
        let outcome = match &result {
            Ok(reply) => {
                if let Err(why) = check_reply(cmd, reply) {
                    note(
                        format!("malformed {}", cmd.name()),
                        format!("{} -> {why}", render(&args)),
                    );
                }
                "ok".to_string()
            }
            Err(e) => match e.code() {
                Some(code) if STABLE_CODES.contains(&code) => {
                    let detail = e.detail().unwrap_or("");
                    if code == "ERR" && !detail.contains("wrong number of arguments") {
                        note(
                            "ERR (not arity)".into(),
                            format!("{} -> {e}", render(&args)),
                        );
                    }
                    // RC.DEBUG is disabled here, so INTERNAL can only mean a handler panicked.
                    if code == "INTERNAL" {
                        note(
                            "INTERNAL (a caught panic)".into(),
                            format!("{} -> {e}", render(&args)),
                        );
                    }
                    code.to_string()
                }
                Some(code) => {
                    note(code.to_string(), format!("{} -> {e}", render(&args)));
                    code.to_string()
                }
                None => {
                    note(
                        "client/connection error".into(),
                        format!("{} -> {e}", render(&args)),
                    );
                    if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                        break; // Redis is gone or the connection is unusable; report below.
                    }
                    "client error".to_string()
                }
            },
        };
        *outcomes.entry((cmd, outcome)).or_insert(0) += 1;
    }

    let mut summary = String::new();
    for ((cmd, outcome), n) in &outcomes {
        summary.push_str(&format!("  {:<14} {:<10} {n}\n", cmd.name(), outcome));
    }
    println!(
        "module_fuzz: {calls} calls, {} huge args, {:.1?}\n{summary}",
        MAX_HUGE - g.huge_left,
        started.elapsed()
    );

    let mut failures = Vec::new();
    for (what, (n, example)) in &unexpected {
        failures.push(format!("{what}: {n}x, e.g. {example}"));
    }
    if calls < 5_000 {
        failures.push(format!("only {calls} calls were made"));
    }
    if !r.alive() {
        failures.push("redis-server exited".into());
    }
    if !ping(r.port) {
        failures.push("PING got no PONG".into());
    } else {
        let mut c = r.conn();
        let pong: String = redis::cmd("PING").query(&mut c).unwrap_or_default();
        if pong != "PONG" {
            failures.push(format!("PING answered '{pong}'"));
        }
        let info = info_rcluster(&mut c);
        if info.get("panics_caught").map(String::as_str) != Some("0") {
            failures.push(format!(
                "INFO rcluster panics_caught is {:?}",
                info.get("panics_caught")
            ));
        }
        // Every call reached the module's handlers and was counted once.
        let counted: usize = info
            .iter()
            .filter(|(k, _)| k.starts_with("cmd_"))
            .filter_map(|(_, v)| {
                v.strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        if counted != calls {
            failures.push(format!(
                "INFO rcluster counts {counted} calls, the test made {calls}"
            ));
        }
    }
    let log = r.log();
    let crashes = crash_lines(&log);
    if !crashes.is_empty() {
        failures.push(format!(
            "the Redis log shows a panic or crash:\n    {}",
            crashes.join("\n    ")
        ));
    }
    assert!(
        failures.is_empty(),
        "module fuzz (seed {seed}, reproduce with RC_FUZZ_SEED={seed}) found:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn a_panic_in_a_handler_is_caught_and_redis_keeps_its_data() {
    let mut r = Redis::start(&["enable-debug-command", "yes"]);
    let mut c = r.conn();
    let put = call(
        &mut c,
        &[b"RC.REPLICA.PUT", b"survivor", b"still here", b"100", b"n1"],
    )
    .expect("RC.REPLICA.PUT");
    assert_eq!(
        put,
        Value::Array(vec![
            Value::SimpleString("applied".into()),
            Value::BulkString(b"100".to_vec()),
            Value::BulkString(b"n1".to_vec()),
        ])
    );

    let (code, detail) = error_of(call(&mut c, &[b"RC.DEBUG", b"PANIC"]));
    assert_eq!(code, "INTERNAL", "RC.DEBUG PANIC replied {code} {detail}");

    assert!(r.alive(), "redis-server exited after a caught panic");
    let pong: String = redis::cmd("PING")
        .query(&mut c)
        .expect("PING after the panic");
    assert_eq!(pong, "PONG");
    let info = info_rcluster(&mut c);
    assert_eq!(
        info.get("panics_caught").map(String::as_str),
        Some("1"),
        "INFO rcluster: {info:?}"
    );
    let got =
        call(&mut c, &[b"RC.REPLICA.GET", b"survivor"]).expect("RC.REPLICA.GET after the panic");
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(b"still here".to_vec()),
            Value::BulkString(b"100".to_vec()),
            Value::BulkString(b"n1".to_vec()),
            Value::Int(0),
        ])
    );
    // The panic is logged as caught, and Redis did not crash.
    let log = r.log();
    assert!(
        log.contains("RC.DEBUG panicked"),
        "the caught panic is not in the log:\n{log}"
    );
    assert!(
        !log.contains("crashed") && !log.contains("Guru Meditation"),
        "Redis crashed:\n{log}"
    );
}
