//! Random-argument fuzzing of every `RC.*` command against a real 3-node cluster (three
//! `redis-server --loadmodule` processes wired by a pushed topology, as `TestCluster` does):
//! each call goes to a random node, so the quorum commands really write locally, fan out to the
//! other replicas and block their client. Whatever the arguments, each reply is well-formed or an
//! error with a stable code, no Redis panics or crashes, and the cluster still serves afterwards
//! (plus `RC.DEBUG PANIC` on a single Redis proves a panic is caught and data survives).
//!
//! Reproduce a failure with the seed the test prints: `RC_FUZZ_SEED=<seed> cargo test -p
//! rcluster-tests --test module_fuzz -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rcluster_domain::checksum::sha256_hex;
// The module's commands: the contract's table (the module registers exactly these).
use rcluster_domain::rc::Command as Cmd;
use rcluster_domain::topology::Topology;
use rcluster_tests::{call, error_of, ping, Redis, TestCluster};
use redis::Value;
use serde_json::{json, Value as Json};

const DEFAULT_SEED: u64 = 0x5eed_c10c_2024_0001;
/// Command calls per run (at least 5,000; sized so a debug build stays well under a minute).
const CALLS: usize = 40_000;
/// Cluster size; every key has all of them as replicas (N = 3).
const NODES_IN_CLUSTER: usize = 3;
/// The cluster's default request timeout (ms).
const REQUEST_TIMEOUT_MS: u64 = 300;
/// Arguments of 1 to 9 MiB per run.
const MAX_HUGE: usize = 20;
/// Topology pushes of megabytes (or absurd depth) per run.
const MAX_HUGE_TOPOLOGIES: usize = 6;
/// A call slower than this is reported: every replica is up, so even `TIMEOUT 60000` answers
/// quickly.
const SLOW_CALL: Duration = Duration::from_secs(5);
/// The stable error codes of the module's interface.
const STABLE_CODES: [&str; 10] = [
    "ERR",
    "BADARG",
    "TOOLARGE",
    "CHECKSUM",
    "WRONGTYPE",
    "CORRUPT",
    "CLOCKSKEW",
    "NOQUORUM",
    "NOTREADY",
    "INTERNAL",
];

const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 8 << 20;
const MAX_CHUNK: usize = 5 << 20;
const MAX_NODE_ID: usize = 32;
const MAX_FILE_ID: usize = 128;
const MAX_CHUNK_INDEX: u64 = 1 << 20;
const MIB: usize = 1 << 20;

/// The commands of the table this test does not call, and why: dropping a copy, marking a member
/// down, writing metadata, injecting faults or moving whole chunks through the quorum would
/// change the cluster the rest of the run relies on (module_chunks, quorum_chunks and rebalance
/// cover them; tests/faults.rs covers RC.FAULT).
const NOT_FUZZED: [Cmd; 6] = [
    Cmd::ReplicaDrop,
    Cmd::ClusterNodeState,
    Cmd::ChunkSet,
    Cmd::ChunkFetch,
    Cmd::Meta,
    Cmd::Fault,
];

/// The commands this test calls: every row of the table but [`NOT_FUZZED`].
fn fuzzed() -> Vec<Cmd> {
    Cmd::ALL
        .into_iter()
        .filter(|c| !NOT_FUZZED.contains(c))
        .collect()
}

/// The `INFO rcluster` field counting `cmd`'s calls.
fn info_field(cmd: Cmd) -> String {
    format!("cmd_{}", cmd.name().to_ascii_lowercase().replace('.', "_"))
}

/// Whether the modules also send `cmd` to each other (fan-out, read repair, hints, tombstone
/// purge), so a node may count more calls than the test made.
fn also_internal(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::ReplicaPut
            | Cmd::ReplicaGet
            | Cmd::ReplicaDel
            | Cmd::ReplicaPurge
            | Cmd::HintPut
            | Cmd::HintDone
    )
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
/// Origins of versions: the members and other valid ids.
const NODES: [&str; 8] = ["n1", "n2", "n3", "n-3", "node_4", "z", "0", "n9"];
/// Nodes a hint is held for: members (replayed to them), valid ids outside the cluster (kept
/// forever), ids with a planted bad `hint:<id>` key, and invalid ids.
const HINT_NODES: [&str; 14] = [
    "n1", "n2", "n3", "n1", "n2", "n3", "n9", "ghost", "gone_4", "badhint", "N1", "n 1", "", "n1:",
];
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
/// Replica counts for `W`/`R`: valid (1..=3) and not (0, > N, not a number).
const COUNTS: [&str; 16] = [
    "1", "2", "3", "1", "2", "3", "0", "4", "99", "256", "-1", "01", "3 ", "", "1.0", "٣",
];
/// Timeouts: valid (1..=60000) and not.
const TIMEOUTS: [&str; 16] = [
    "1",
    "2",
    "50",
    "300",
    "1000",
    "2000",
    "60000",
    "0",
    "60001",
    "-5",
    "1e3",
    "",
    "00100",
    "18446744073709551615",
    "18446744073709551616",
    "300ms",
];
/// Option names that are none of `W`, `R`, `TIMEOUT`.
const BAD_OPTIONS: [&str; 9] = ["", "WW", "TIMEOUTS", "N", "W\0", "-W", "TIME OUT", "Q", "ÿ"];
/// Tombstone flags of `RC.HINT.PUT`: only 0 and 1 are valid.
const FLAGS: [&str; 10] = ["0", "1", "2", "0", "1", "", "00", "true", "-1", "1 "];

/// Random mixed case of an ASCII word.
fn mixed_case(rng: &mut Rng, word: &str) -> Vec<u8> {
    match rng.below(3) {
        0 => word.as_bytes().to_vec(),
        1 => word.to_ascii_lowercase().into_bytes(),
        _ => word
            .bytes()
            .map(|c| {
                if rng.chance(1, 2) {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}

/// Builds random argument vectors; remembers recent data so checksums pair up with their data.
struct Gen {
    rng: Rng,
    huge_left: usize,
    huge_topologies_left: usize,
    data_pool: Vec<Vec<u8>>,
    /// The topology the cluster was started with (its epoch is not used).
    topology: Topology,
    /// The epoch installed on the node the next command goes to.
    epoch: u64,
}

impl Gen {
    fn new(seed: u64, topology: Topology) -> Self {
        Gen {
            rng: Rng::new(seed),
            huge_left: MAX_HUGE,
            huge_topologies_left: MAX_HUGE_TOPOLOGIES,
            data_pool: vec![Vec::new(), b"abc".to_vec(), b"\0\xff\xfe".to_vec()],
            epoch: topology.epoch,
            topology,
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
        String::from_utf8(mixed_case(&mut self.rng, cmd.name())).expect("ASCII command name")
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
    fn hint_node(&mut self) -> Vec<u8> {
        if self.rng.chance(1, 30) {
            return vec![b'h'; MAX_NODE_ID + self.rng.below(2)];
        }
        self.rng.pick(&HINT_NODES).as_bytes().to_vec()
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

    /// A value for a write: usually small data, rarely huge or at a limit.
    fn value(&mut self) -> Vec<u8> {
        match self.rng.below(300) {
            0 => self.huge().unwrap_or_default(),
            1 => self.at_limit(),
            _ => self.data(),
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

    /// `[W n] [TIMEOUT ms]` for a quorum command (`count` is `W` or `R`): mostly well-formed,
    /// often with a value out of range, a wrong or repeated name, or an odd count.
    fn quorum_options(&mut self, count: &str) -> Vec<Vec<u8>> {
        let other = if count == "W" { "R" } else { "W" };
        let mut out = Vec::new();
        // Half the time well-formed options, so the quorum paths run with W/R 1..=N.
        if self.rng.chance(1, 2) {
            if self.rng.chance(2, 3) {
                out.push(mixed_case(&mut self.rng, count));
                out.push(self.rng.range(1, NODES_IN_CLUSTER).to_string().into_bytes());
            }
            if self.rng.chance(1, 2) {
                out.push(mixed_case(&mut self.rng, "TIMEOUT"));
                let ms = *self.rng.pick(&[1, 5, 50, 300, 1_000, 5_000, 60_000]);
                out.push(ms.to_string().into_bytes());
            }
            if out.len() == 4 && self.rng.chance(1, 2) {
                out.rotate_left(2); // TIMEOUT first
            }
            // Sometimes traced, with or without an id of our own.
            if self.rng.chance(1, 8) {
                out.push(mixed_case(&mut self.rng, "TRACE"));
                if self.rng.chance(1, 2) {
                    out.push(format!("fz-{}", self.rng.below(1000)).into_bytes());
                }
            }
            return out;
        }
        let pairs = *self.rng.pick(&[0usize, 0, 1, 1, 1, 2, 2, 3]);
        for _ in 0..pairs {
            let (name, is_timeout) = match self.rng.below(12) {
                0..=4 => (mixed_case(&mut self.rng, count), false),
                5..=8 => (mixed_case(&mut self.rng, "TIMEOUT"), true),
                9 => (other.as_bytes().to_vec(), false),
                10 => (self.rng.pick(&BAD_OPTIONS).as_bytes().to_vec(), false),
                _ => (self.any_arg(), self.rng.chance(1, 2)),
            };
            let value = match (is_timeout, self.rng.below(10)) {
                (_, 0) => self.digits(),
                (true, _) => self.rng.pick(&TIMEOUTS).as_bytes().to_vec(),
                (false, _) => self.rng.pick(&COUNTS).as_bytes().to_vec(),
            };
            out.push(name);
            out.push(value);
        }
        // Odd option counts: a name without its value, or a stray word.
        if !out.is_empty() && self.rng.chance(1, 10) {
            out.pop();
        } else if self.rng.chance(1, 20) {
            out.push(mixed_case(&mut self.rng, count));
        }
        out
    }

    /// An `RC.CLUSTER.SET` argument. Never a valid topology other than the one the cluster runs:
    /// either that one again (same or a slightly higher epoch, which must be accepted), or
    /// something the module must refuse (older epoch, invalid, not the expected JSON, huge).
    fn topology_json(&mut self) -> Vec<u8> {
        let mut t = self.topology.clone();
        t.epoch = self.epoch;
        match self.rng.below(20) {
            0 | 1 => {
                t.epoch = self.epoch + self.rng.below(3) as u64;
                t.to_json().into_bytes()
            }
            2..=4 => self.broken_json_text(&t),
            5 if self.huge_topologies_left > 0 => {
                self.huge_topologies_left -= 1;
                self.huge_topology(&t)
            }
            _ => {
                let mut v = serde_json::to_value(&t).expect("a topology serialises");
                for _ in 0..self.rng.below(3) {
                    self.neutral_tweak(&mut v);
                }
                for _ in 0..self.rng.range(1, 2) {
                    self.breaking_tweak(&mut v);
                }
                if self.rng.chance(1, 4) {
                    serde_json::to_vec_pretty(&v).expect("JSON serialises")
                } else {
                    serde_json::to_vec(&v).expect("JSON serialises")
                }
            }
        }
    }

    /// A change that keeps a topology valid (only ever combined with a breaking one).
    fn neutral_tweak(&mut self, v: &mut Json) {
        let members = v["members"].as_array().map_or(0, Vec::len);
        let m = format!("/members/{}", self.rng.below(members.max(1)));
        match self.rng.below(8) {
            0 => set_field(v, &m, "redis_port", json!(self.rng.range(1, 65_535))),
            1 => {
                let host = *self.rng.pick(&["localhost", "10.0.0.9", "::1"]);
                set_field(v, &m, "host", json!(host));
            }
            2 => set_field(v, "/quorum", "w", json!(self.rng.range(1, 3))),
            3 => set_field(
                v,
                "",
                "request_timeout_ms",
                json!(self.rng.range(1, 60_000)),
            ),
            4 => {
                if let Some(q) = v.pointer_mut("/quorum").and_then(Json::as_object_mut) {
                    q.remove("r"); // Defaults to 2.
                }
            }
            5 => {
                if let Some(m) = v.pointer_mut("/members").and_then(Json::as_array_mut) {
                    m.reverse();
                }
            }
            6 => {
                if let Some(m) = v.pointer_mut("/members").and_then(Json::as_array_mut) {
                    m.push(json!({"id": "n4", "host": "127.0.0.1", "redis_port": 1}));
                }
            }
            _ => set_field(v, "", "vnodes", json!(self.rng.range(1, 4096))),
        }
    }

    /// A change that makes the module refuse the topology.
    fn breaking_tweak(&mut self, v: &mut Json) {
        if !v.is_object() {
            return; // Already not a topology.
        }
        let members = v["members"].as_array().map_or(0, Vec::len);
        let m = format!("/members/{}", self.rng.below(members.max(1)));
        match self.rng.below(12) {
            0 | 1 => {
                let older = self.rng.below(self.epoch as usize) as u64;
                set_field(v, "", "epoch", json!(older));
            }
            2 => {
                let field = *self.rng.pick(&["w", "r"]);
                let bad = *self.rng.pick(&[0, 9, 99, 255]);
                set_field(v, "/quorum", field, json!(bad));
            }
            // Never 1 or 2: with w = r = 1 or 2 those would be valid.
            3 => {
                let bad = *self.rng.pick(&[0, 9, 99, 255, 256, -1]);
                set_field(v, "/quorum", "n", json!(bad));
            }
            4 => {
                let field = *self.rng.pick(&[
                    "epoch",
                    "members",
                    "vnodes",
                    "quorum",
                    "request_timeout_ms",
                    "hint_replay_ms",
                    "tombstone_grace_ms",
                ]);
                if let Some(o) = v.as_object_mut() {
                    o.remove(field);
                }
            }
            5 => match self.rng.below(3) {
                0 => set_field(v, "", "extra", json!(1)),
                1 => set_field(v, "/quorum", "x", json!(1)),
                _ => set_field(v, "/members/0", "weight", json!(1)),
            },
            6 => {
                if let Some(m) = v.pointer_mut("/members").and_then(Json::as_array_mut) {
                    let first = m.first().cloned().unwrap_or(json!({}));
                    m.push(first);
                }
            }
            7 => match self.rng.below(6) {
                0 => set_field(v, "", "members", json!([])),
                1 => {
                    let bad = *self.rng.pick(&[0, 65_536, -1]);
                    set_field(v, &m, "redis_port", json!(bad));
                }
                2 => set_field(v, &m, "host", json!("")),
                3 => {
                    let long = "n".repeat(MAX_NODE_ID + 1);
                    let bad = ["", "N1", "n 1", "n1:", "ünï", long.as_str()];
                    let id = *self.rng.pick(&bad);
                    set_field(v, &m, "id", json!(id));
                }
                4 => {
                    if let Some(o) = v.pointer_mut(&m).and_then(Json::as_object_mut) {
                        o.remove("host");
                    }
                }
                _ => set_field(v, "", "members", json!("n1,n2,n3")),
            },
            8 => {
                let bad = *self.rng.pick(&[0i64, 4097, 1 << 32, -1]);
                set_field(v, "", "vnodes", json!(bad));
            }
            9 => {
                let (field, bad) = *self.rng.pick(&[
                    ("request_timeout_ms", 0i64),
                    ("request_timeout_ms", 60_001),
                    ("hint_replay_ms", 9),
                    ("hint_replay_ms", 60_001),
                    ("tombstone_grace_ms", 0),
                    ("tombstone_grace_ms", 30 * 86_400_000 + 1),
                ]);
                set_field(v, "", field, json!(bad));
            }
            10 => match self.rng.below(6) {
                0 => set_field(v, "", "epoch", json!(self.epoch.to_string())),
                1 => set_field(v, "", "epoch", json!(1.5)),
                2 => set_field(v, "", "epoch", Json::Null),
                3 => set_field(v, "", "quorum", json!("3/2/2")),
                4 => set_field(v, "", "members", json!({})),
                _ => set_field(v, "", "vnodes", json!("16")),
            },
            _ => *v = json!([v.clone()]),
        }
    }

    /// The topology as text, broken at the text level.
    fn broken_json_text(&mut self, t: &Topology) -> Vec<u8> {
        let text = t.to_json();
        let epoch_field = format!("\"epoch\":{}", t.epoch);
        match self.rng.below(12) {
            0 => {
                let cut = self.rng.below(text.len());
                text.as_bytes()[..cut].to_vec()
            }
            1 => format!("{text}{}", self.rng.pick(&["x", "}", " {}", "\0", ","])).into_bytes(),
            // serde refuses a repeated field.
            2 => text
                .replacen(&epoch_field, &format!("{epoch_field},{epoch_field}"), 1)
                .into_bytes(),
            3 => {
                let bad = *self.rng.pick(&[
                    "18446744073709551616",
                    "-1",
                    "1e2",
                    "1.0",
                    "NaN",
                    "0x1",
                    "99999999999999999999999",
                ]);
                text.replacen(&epoch_field, &format!("\"epoch\":{bad}"), 1)
                    .into_bytes()
            }
            4 => {
                let mut b = text.into_bytes();
                let i = self.rng.below(b.len());
                b[i] = *self.rng.pick(&[0u8, 0xff, b'"', b'{', b'\\', b' ']);
                b
            }
            5 => text.replacen("127.0.0.1", "127.0.0.1\u{0}", 1).into_bytes(),
            6 => {
                let mut b = text.replacen("127.0.0.1", "127.0.0.\u{ff}", 1).into_bytes();
                // Invalid UTF-8 inside a string.
                if let Some(p) = b.windows(2).position(|w| w == [0xc3, 0xbf]) {
                    b[p] = 0xff;
                    b[p + 1] = b'1';
                }
                b
            }
            7 => format!("\u{feff}{text}").into_bytes(),
            8 => self
                .rng
                .pick(&[
                    "",
                    "{}",
                    "null",
                    "[]",
                    "\"\"",
                    "0",
                    "{\"epoch\":1}",
                    "{\"epoch\":",
                ])
                .as_bytes()
                .to_vec(),
            9 => {
                let depth = self.rng.range(100, 200);
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
            }
            10 => self.random_bytes(),
            _ => self.any_arg(),
        }
    }

    /// A topology push of megabytes, or nested past any parser's recursion limit.
    fn huge_topology(&mut self, t: &Topology) -> Vec<u8> {
        let mut v = serde_json::to_value(t).expect("a topology serialises");
        match self.rng.below(5) {
            // More members than a ring can index: refused for the older epoch, or by the ring
            // when the epoch is newer.
            0 => {
                let older = self.rng.chance(1, 2);
                v["epoch"] = json!(if older { 0 } else { self.epoch + 1 });
                let members: Vec<Json> = (0..70_000)
                    .map(|i| json!({"id": format!("m{i}"), "host": "127.0.0.1", "redis_port": 1}))
                    .collect();
                v["members"] = Json::Array(members);
                serde_json::to_vec(&v).expect("JSON serialises")
            }
            1 => {
                v["members"][0]["host"] = json!("h".repeat(self.rng.range(MIB, 4 * MIB)));
                v["quorum"]["w"] = json!(9);
                serde_json::to_vec(&v).expect("JSON serialises")
            }
            2 => {
                let depth = self.rng.range(MIB / 2, 2 * MIB);
                let open = self.rng.pick(&["[", "{\"a\":"]).as_bytes();
                open.repeat(depth)
            }
            3 => {
                v["epoch"] = json!(0);
                let mut b = vec![b' '; self.rng.range(MIB, 3 * MIB)];
                b.extend(serde_json::to_vec(&v).expect("JSON serialises"));
                b
            }
            _ => {
                v["extra"] = json!("x".repeat(self.rng.range(MIB, 4 * MIB)));
                serde_json::to_vec(&v).expect("JSON serialises")
            }
        }
    }

    /// Arguments of the right shape for `cmd` (mostly valid), to reach past the argument checks.
    fn typed_args(&mut self, cmd: Cmd) -> Vec<Vec<u8>> {
        match cmd {
            Cmd::Set => {
                let mut args = vec![self.key(), self.value()];
                args.extend(self.quorum_options("W"));
                args
            }
            Cmd::Get => {
                let mut args = vec![self.key()];
                args.extend(self.quorum_options("R"));
                args
            }
            Cmd::Del => {
                let mut args = vec![self.key()];
                args.extend(self.quorum_options("W"));
                args
            }
            Cmd::Locate => {
                let mut args = vec![self.key()];
                if self.rng.chance(1, 10) {
                    args.extend(self.quorum_options("R"));
                }
                args
            }
            Cmd::ReplicaPut => vec![self.key(), self.value(), self.version(), self.node()],
            Cmd::ReplicaGet => vec![self.key()],
            Cmd::ReplicaDel | Cmd::ReplicaPurge => vec![self.key(), self.version(), self.node()],
            Cmd::HintPut => {
                let flag = self.rng.pick(&FLAGS).as_bytes().to_vec();
                vec![
                    self.hint_node(),
                    self.key(),
                    self.version(),
                    self.node(),
                    flag,
                    self.value(),
                ]
            }
            Cmd::HintDone => vec![self.hint_node(), self.key(), self.version(), self.node()],
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
                    let merge = mixed_case(&mut self.rng, "MERGE");
                    let ahead_ms = *self.rng.pick(&[0u64, 1_000, 59_000, 61_000, 10_000_000]);
                    let ts = match self.rng.below(3) {
                        0 => self.digits(),
                        _ => ((now_ms() + ahead_ms) << 16).to_string().into_bytes(),
                    };
                    vec![merge, ts]
                }
            },
            Cmd::ClusterSet => vec![self.topology_json()],
            Cmd::ClusterGet => Vec::new(),
            Cmd::ClusterSettled => vec![self.digits()],
            Cmd::Debug => vec![mixed_case(&mut self.rng, "PANIC")],
            Cmd::Trace => match self.rng.below(3) {
                0 => vec![mixed_case(&mut self.rng, "GET"), self.any_arg()],
                1 => vec![mixed_case(&mut self.rng, "LIST")],
                _ => vec![mixed_case(&mut self.rng, "LIST"), self.digits()],
            },
            // Never picked.
            Cmd::ReplicaDrop
            | Cmd::ClusterNodeState
            | Cmd::ChunkSet
            | Cmd::ChunkFetch
            | Cmd::Meta
            | Cmd::Fault => Vec::new(),
        }
    }

    /// A full argument vector (command name first).
    fn command(&mut self) -> (Cmd, Vec<Vec<u8>>) {
        // The quorum commands (blocked clients, fan-out) get a larger share.
        let cmd = if self.rng.chance(1, 4) {
            *self.rng.pick(&[Cmd::Set, Cmd::Get, Cmd::Del])
        } else {
            *self.rng.pick(&fuzzed())
        };
        let mut args = if self.rng.chance(2, 3) {
            let mut args = self.typed_args(cmd);
            for a in args.iter_mut() {
                if self.rng.chance(1, 12) {
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

/// Sets `field` of the object (or index of the array) at JSON pointer `parent`; does nothing
/// when there is no such object or array (an earlier change may have removed it).
fn set_field(v: &mut Json, parent: &str, field: &str, value: Json) {
    match v.pointer_mut(parent) {
        Some(Json::Object(o)) => {
            o.insert(field.to_string(), value);
        }
        Some(Json::Array(a)) => {
            if let Some(slot) = field.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
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

/// What an `RC.CLUSTER.SET` of `json` does on a node running `epoch`, computed with the same
/// parser and checks the module uses.
#[derive(Debug, PartialEq, Eq)]
enum Push {
    /// Refused: not a valid topology, an older epoch, or no ring can be built from it.
    Refused,
    /// The cluster's own topology at this (same or newer) epoch: installed.
    Same(u64),
    /// A different valid topology: would be installed. Never sent.
    Different,
}

fn predict_push(json: &[u8], original: &Topology, epoch: u64) -> Push {
    let Ok(t) = Topology::parse(json) else {
        return Push::Refused;
    };
    if t.epoch < epoch || t.ring().is_err() {
        return Push::Refused;
    }
    let mut same = t.clone();
    same.epoch = original.epoch;
    if &same == original {
        Push::Same(t.epoch)
    } else {
        Push::Different
    }
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

fn is_status(v: &Value, allowed: &[&str]) -> bool {
    matches!(v, Value::SimpleString(s) if allowed.contains(&s.as_str()))
}

/// What a reply is checked against: the node that answered and the topology it runs.
struct Seen<'a> {
    me: &'a str,
    topology: &'a Topology,
    epoch: u64,
}

/// `RC.LOCATE`: the N members, each once, with its address; this node as `self`.
fn check_locate(rows: &[Value], seen: &Seen) -> bool {
    let t = seen.topology;
    let mut ids = BTreeSet::new();
    rows.len() == usize::from(t.quorum.n)
        && rows.iter().all(|row| match row {
            Value::Array(cols) if cols.len() == 3 => match (&cols[0], &cols[1], &cols[2]) {
                (Value::BulkString(id), Value::BulkString(addr), Value::SimpleString(state)) => {
                    let id = String::from_utf8_lossy(id).to_string();
                    let addr_ok = t.member(&id).is_some_and(|m| {
                        addr.as_slice() == format!("{}:{}", m.host, m.redis_port).as_bytes()
                    });
                    let state_ok = if id == seen.me {
                        state == "self"
                    } else {
                        ["alive", "down", "unknown"].contains(&state.as_str())
                    };
                    addr_ok && state_ok && ids.insert(id)
                }
                _ => false,
            },
            _ => false,
        })
}

/// Checks a successful reply against the shape its command documents.
fn check_reply(cmd: Cmd, reply: &Value, seen: &Seen) -> Result<(), String> {
    let ok = match (cmd, reply) {
        (Cmd::Set | Cmd::Del | Cmd::ChunkPut | Cmd::ClusterSet, Value::Okay) => true,
        (Cmd::Get | Cmd::ReplicaGet | Cmd::ChunkGet, Value::Nil) => true,
        (Cmd::Get, Value::BulkString(v)) => v.len() <= MAX_VALUE,
        (Cmd::Locate, Value::Array(rows)) => check_locate(rows, seen),
        (Cmd::ReplicaPut | Cmd::ReplicaDel, Value::Array(items)) => {
            items.len() == 3
                && is_status(&items[0], &["applied", "duplicate", "stale"])
                && is_u64_text(&items[1])
                && is_node_id(&items[2])
        }
        (Cmd::ReplicaGet, Value::Array(items)) => {
            items.len() == 4
                && is_u64_text(&items[1])
                && is_node_id(&items[2])
                && match (&items[0], &items[3]) {
                    (Value::BulkString(v), Value::Int(0)) => v.len() <= MAX_VALUE,
                    (Value::Nil, Value::Int(1)) => true,
                    _ => false,
                }
        }
        (Cmd::ReplicaPurge | Cmd::HintDone, Value::Int(n)) => *n == 0 || *n == 1,
        (Cmd::HintPut, status) => is_status(status, &["applied", "duplicate", "stale"]),
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
        // The topology this node runs: the cluster's, at the epoch last pushed to it.
        (Cmd::ClusterGet, Value::BulkString(json)) => {
            let mut expected = seen.topology.clone();
            expected.epoch = seen.epoch;
            Topology::parse(json).ok() == Some(expected)
        }
        // Whether a transition to that epoch was open here and now ends.
        (Cmd::ClusterSettled, Value::Int(n)) => *n == 0 || *n == 1,
        // A trace (or nil), and lists of trace summaries.
        (Cmd::Trace, Value::Nil) => true,
        (Cmd::Trace, Value::BulkString(json)) => {
            rcluster_domain::trace::Trace::from_json(json).is_some()
        }
        (Cmd::Trace, Value::Array(items)) => items.iter().all(|i| {
            matches!(i, Value::BulkString(json)
                if rcluster_domain::trace::Summary::from_json(json).is_some())
        }),
        // RC.DEBUG is disabled in this run: it must never succeed.
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "malformed {} reply: {}",
            cmd.name(),
            shorten(reply)
        ))
    }
}

fn shorten(reply: &Value) -> String {
    let mut shown = format!("{reply:?}");
    if shown.len() > 300 {
        let mut cut = 300;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    shown
}

/// Keys holding the wrong type or a damaged layout, so WRONGTYPE, CORRUPT and CHECKSUM paths run.
fn plant_bad_keys(c: &mut redis::Connection) {
    let bad_sha = sha256_hex(b"not the data");
    let plants: [&[&[u8]]; 10] = [
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
        // Hints for nodes outside the cluster: one of the wrong type, one undecodable.
        &[b"SET", b"hint:badhint", b"plain string"],
        &[
            b"HSET",
            b"hint:ghost",
            b"k",
            b"not a hint",
            b"a",
            b"1 n1 2 x",
        ],
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

/// The `calls=` count of an `INFO rcluster` command field.
fn info_calls(info: &BTreeMap<String, String>, cmd: Cmd) -> usize {
    info.get(&info_field(cmd))
        .and_then(|v| v.strip_prefix("calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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

/// Findings by kind: (count, first example).
#[derive(Default)]
struct Findings(BTreeMap<String, (usize, String)>);

impl Findings {
    fn note(&mut self, what: impl Into<String>, example: impl Into<String>) {
        let example = example.into();
        self.0.entry(what.into()).or_insert((0, example)).0 += 1;
    }
}

#[test]
fn random_arguments_never_crash_and_only_return_stable_codes() {
    let seed = seed();
    println!("module_fuzz: seed {seed} (reproduce with RC_FUZZ_SEED={seed})");
    let started = Instant::now();
    let mut cluster = TestCluster::start(NODES_IN_CLUSTER, |t| {
        t.request_timeout_ms = REQUEST_TIMEOUT_MS
    });
    let original = cluster.topology.clone();
    let ids: Vec<String> = original.members.iter().map(|m| m.id.clone()).collect();
    let mut conns: Vec<redis::Connection> = (0..NODES_IN_CLUSTER)
        .map(|i| {
            let mut c = cluster.conn(i);
            // A blocked client is answered within its TIMEOUT (at most 60 s) plus Redis's margin.
            c.set_read_timeout(Some(Duration::from_secs(70)))
                .expect("read timeout");
            plant_bad_keys(&mut c);
            c
        })
        .collect();
    // The epoch installed on each node (TestCluster pushed the topology once to each).
    let mut epochs = vec![original.epoch; NODES_IN_CLUSTER];
    let setup = started.elapsed();

    let mut g = Gen::new(seed, original.clone());
    let mut found = Findings::default();
    // command -> outcome -> count, printed as a summary
    let mut outcomes: BTreeMap<(Cmd, String), usize> = BTreeMap::new();
    // calls made per command (for the INFO counters) and their total time
    let mut made: BTreeMap<Cmd, (usize, Duration)> = BTreeMap::new();
    let mut calls = 0usize;
    let (mut pushes_accepted, mut neutralised, mut slowest) = (0usize, 0usize, Duration::ZERO);
    let loop_started = Instant::now();

    for _ in 0..CALLS {
        let node = g.rng.below(NODES_IN_CLUSTER);
        g.epoch = epochs[node];
        let (cmd, mut args) = g.command();
        // Never let a push install another topology: the rest of the run needs this cluster.
        let mut push = Push::Refused;
        if cmd == Cmd::ClusterSet && args.len() == 2 {
            push = predict_push(&args[1], &original, epochs[node]);
            if push == Push::Different {
                neutralised += 1;
                args[1] = b"{}".to_vec();
                push = Push::Refused;
            }
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let call_started = Instant::now();
        let result = call(&mut conns[node], &refs);
        let took = call_started.elapsed();
        calls += 1;
        let entry = made.entry(cmd).or_default();
        entry.0 += 1;
        entry.1 += took;
        slowest = slowest.max(took);
        let shown = || format!("node {} <- {}", ids[node], render(&args));
        if took > SLOW_CALL {
            found.note(
                format!("slow {} (> {SLOW_CALL:?})", cmd.name()),
                format!("{} took {took:?}", shown()),
            );
        }
        if cmd == Cmd::ClusterSet {
            match (&push, &result) {
                (Push::Same(epoch), Ok(Value::Okay)) => {
                    epochs[node] = *epoch;
                    pushes_accepted += 1;
                }
                (Push::Same(_), _) => found.note(
                    "RC.CLUSTER.SET refused the cluster's own topology",
                    format!("{} -> {result:?}", shown()),
                ),
                (_, Ok(reply)) => found.note(
                    "RC.CLUSTER.SET accepted a topology it must refuse",
                    format!("{} -> {}", shown(), shorten(reply)),
                ),
                _ => {}
            }
        }
        let seen = Seen {
            me: &ids[node],
            topology: &original,
            epoch: epochs[node],
        };
        let outcome = match &result {
            Ok(reply) => {
                if let Err(why) = check_reply(cmd, reply, &seen) {
                    found.note(
                        format!("malformed {}", cmd.name()),
                        format!("{} -> {why}", shown()),
                    );
                }
                "ok".to_string()
            }
            Err(e) => match e.code() {
                Some(code) if STABLE_CODES.contains(&code) => {
                    let detail = e.detail().unwrap_or("");
                    if code == "ERR" && !detail.contains("wrong number of arguments") {
                        found.note("ERR (not arity)", format!("{} -> {e}", shown()));
                    }
                    // RC.DEBUG is disabled here, so INTERNAL can only mean a handler panicked.
                    if code == "INTERNAL" {
                        found.note("INTERNAL (a caught panic)", format!("{} -> {e}", shown()));
                    }
                    // Every node holds the topology and is a member: never "not ready".
                    if code == "NOTREADY" {
                        found.note("NOTREADY in a ready cluster", format!("{} -> {e}", shown()));
                    }
                    code.to_string()
                }
                Some(code) => {
                    found.note(code.to_string(), format!("{} -> {e}", shown()));
                    code.to_string()
                }
                None => {
                    found.note("client/connection error", format!("{} -> {e}", shown()));
                    if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                        break; // A Redis is gone or the connection is unusable; report below.
                    }
                    "client error".to_string()
                }
            },
        };
        *outcomes.entry((cmd, outcome)).or_insert(0) += 1;
    }
    let loop_time = loop_started.elapsed();

    let mut summary = String::new();
    for ((cmd, outcome), n) in &outcomes {
        summary.push_str(&format!("  {:<16} {:<10} {n}\n", cmd.name(), outcome));
    }
    let mut timing = String::new();
    for (cmd, (n, total)) in &made {
        timing.push_str(&format!(
            "  {:<16} {n:>5} calls, {:>8.2?} each\n",
            cmd.name(),
            *total / u32::try_from(*n).unwrap_or(u32::MAX).max(1)
        ));
    }
    println!(
        "module_fuzz: {calls} calls on {NODES_IN_CLUSTER} nodes in {loop_time:.1?} (setup \
         {setup:.1?}, slowest call {slowest:.1?}), {} huge args, {} huge topologies, \
         {pushes_accepted} topology re-pushes accepted (epochs now {epochs:?}), \
         {neutralised} pushes neutralised\n{summary}{timing}",
        MAX_HUGE - g.huge_left,
        MAX_HUGE_TOPOLOGIES - g.huge_topologies_left,
    );

    let mut failures = Vec::new();
    for (what, (n, example)) in &found.0 {
        failures.push(format!("{what}: {n}x, e.g. {example}"));
    }
    if calls < 5_000 {
        failures.push(format!("only {calls} calls were made"));
    }

    // Every node: alive, answering, no panic caught, counters that match the calls made.
    let mut counted: BTreeMap<Cmd, usize> = BTreeMap::new();
    let mut all_up = true;
    for (i, id) in ids.iter().enumerate() {
        if !cluster.nodes[i].alive() {
            failures.push(format!("{id}: redis-server exited"));
            all_up = false;
            continue;
        }
        if !ping(cluster.nodes[i].port) {
            failures.push(format!("{id}: PING got no PONG"));
            all_up = false;
            continue;
        }
        let mut c = cluster.conn(i);
        let pong: String = redis::cmd("PING").query(&mut c).unwrap_or_default();
        if pong != "PONG" {
            failures.push(format!("{id}: PING answered '{pong}'"));
        }
        let info = info_rcluster(&mut c);
        if info.get("panics_caught").map(String::as_str) != Some("0") {
            failures.push(format!(
                "{id}: INFO rcluster panics_caught is {:?}",
                info.get("panics_caught")
            ));
        }
        for cmd in fuzzed() {
            *counted.entry(cmd).or_default() += info_calls(&info, cmd);
        }
        // What the quorum machinery did on this node (coverage, not checked).
        let activity: Vec<String> = [
            "quorum_set",
            "quorum_get",
            "quorum_del",
            "replica_failures",
            "read_repairs",
            "hints_stored",
            "hints_replayed",
            "tombstones_purged",
        ]
        .iter()
        .map(|f| format!("{f}={}", info.get(*f).map_or("?", String::as_str)))
        .collect();
        println!("module_fuzz: {id}: {}", activity.join(" "));
        let log = cluster.nodes[i].log();
        let crashes = crash_lines(&log);
        if !crashes.is_empty() {
            failures.push(format!(
                "{id}: the Redis log shows a panic or crash:\n    {}",
                crashes.join("\n    ")
            ));
        }
    }
    // Each call reached a handler and was counted once; the modules also call some commands on
    // each other, and TestCluster pushed the topology once to each node.
    if all_up {
        for cmd in fuzzed() {
            let ours = made.get(&cmd).map_or(0, |m| m.0)
                + if cmd == Cmd::ClusterSet {
                    NODES_IN_CLUSTER
                } else {
                    0
                };
            let theirs = counted.get(&cmd).copied().unwrap_or(0);
            let consistent = if also_internal(cmd) {
                theirs >= ours
            } else {
                theirs == ours
            };
            if !consistent {
                failures.push(format!(
                    "INFO rcluster counts {theirs} {} calls on all nodes, the test made {ours}",
                    cmd.name()
                ));
            }
        }
    }

    // The cluster still works: every node runs its topology, and a quorum write on one node is
    // read back through another.
    if all_up {
        for (i, id) in ids.iter().enumerate() {
            let mut c = cluster.conn(i);
            let seen = Seen {
                me: id,
                topology: &original,
                epoch: epochs[i],
            };
            match call(&mut c, &[b"RC.CLUSTER.GET"]) {
                Ok(reply) => {
                    if let Err(why) = check_reply(Cmd::ClusterGet, &reply, &seen) {
                        failures.push(format!("{id}: after the run, {why}"));
                    }
                }
                Err(e) => failures.push(format!("{id}: RC.CLUSTER.GET after the run: {e}")),
            }
        }
        let writer = g.rng.below(NODES_IN_CLUSTER);
        let reader = (writer + 1 + g.rng.below(NODES_IN_CLUSTER - 1)) % NODES_IN_CLUSTER;
        let set = call(&mut cluster.conn(writer), &[b"RC.SET", b"fuzz-final", b"v"]);
        let get = call(&mut cluster.conn(reader), &[b"RC.GET", b"fuzz-final"]);
        if !matches!(set, Ok(Value::Okay)) || get != Ok(Value::BulkString(b"v".to_vec())) {
            failures.push(format!(
                "the cluster no longer serves: RC.SET fuzz-final v on {} -> {set:?}, RC.GET \
                 fuzz-final on {} -> {get:?}",
                ids[writer], ids[reader]
            ));
        }
    }
    drop(conns);
    println!("module_fuzz: total {:.1?}", started.elapsed());
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
