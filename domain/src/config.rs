//! Cluster configuration: the types, parsing them from YAML text, and validating them.
//!
//! Pure: [`parse`] takes the YAML as a `&str`; reading the file and resolving the relative
//! paths (`data_dir`, `redis_conf`, relative to the config file's folder) is the caller's job.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// One mebibyte, in bytes.
pub const MIB: u64 = 1024 * 1024;

/// Allowed `chunk_size_bytes`: 1 MiB ..= 5 MiB.
pub const CHUNK_SIZE_RANGE: RangeInclusive<u64> = MIB..=5 * MIB;
/// Allowed `intervals.heartbeat_ms`.
pub const HEARTBEAT_MS_RANGE: RangeInclusive<u64> = 100..=30_000;
/// Allowed `intervals.raft_tick_ms` (0: follow the heartbeat interval).
pub const RAFT_TICK_MS_RANGE: RangeInclusive<u64> = 0..=1_000;
/// Allowed `intervals.request_timeout_ms`.
pub const REQUEST_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 10..=60_000;
/// Allowed `limits.max_key_bytes`.
pub const MAX_KEY_BYTES_RANGE: RangeInclusive<u64> = 1..=65_536;
/// Allowed `limits.max_value_bytes`: 1 byte ..= 512 MiB.
pub const MAX_VALUE_BYTES_RANGE: RangeInclusive<u64> = 1..=512 * MIB;
/// Allowed `limits.max_hint_bytes_per_node`: 1 KiB ..= 64 GiB.
pub const MAX_HINT_BYTES_PER_NODE_RANGE: RangeInclusive<u64> = 1024..=65_536 * MIB;
/// Default `limits.max_hint_bytes_per_node`: 32 MiB (a node of the default 256 MB holds hints
/// for at most two others without crowding out client writes).
pub const DEFAULT_MAX_HINT_BYTES_PER_NODE: u64 = 32 * MIB;
/// Allowed `intervals.hint_replay_ms`.
pub const HINT_REPLAY_MS_RANGE: RangeInclusive<u64> = 50..=60_000;
/// Allowed `intervals.tombstone_grace_ms`: one second to 30 days.
pub const TOMBSTONE_GRACE_MS_RANGE: RangeInclusive<u64> = 1_000..=30 * 86_400_000;
/// Allowed `intervals.anti_entropy_ms`: never (0) ..= once a day.
pub const ANTI_ENTROPY_MS_RANGE: RangeInclusive<u64> = 0..=86_400_000;
/// Allowed `vnodes` (virtual nodes per node on the hash ring; 1 = none).
pub const VNODES_RANGE: RangeInclusive<u64> = 1..=4096;
/// Allowed length of `internal_password`.
pub const INTERNAL_PASSWORD_LEN_RANGE: RangeInclusive<u64> = 8..=128;
/// Allowed `redis_maxmemory_mb`.
pub const REDIS_MAXMEMORY_MB_RANGE: RangeInclusive<u64> = 16..=65_536;

/// The whole cluster: shared settings plus the list of nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub cluster_name: String,
    /// Data folder, relative to the config file's folder.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Redis config file, relative to the config file's folder.
    #[serde(default = "default_redis_conf")]
    pub redis_conf: String,
    #[serde(default)]
    pub quorum: Quorum,
    #[serde(default = "default_chunk_size_bytes")]
    pub chunk_size_bytes: u64,
    #[serde(default)]
    pub intervals: Intervals,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "default_redis_maxmemory_mb")]
    pub redis_maxmemory_mb: u64,
    /// Virtual nodes per node on the hash ring (1 = no virtual nodes).
    #[serde(default = "default_vnodes")]
    pub vnodes: u32,
    /// Password of the internal Redis user the modules use to reach each other. Unset: derived
    /// from the cluster secret (`peers.secret_file`), so every node of a cluster agrees on it
    /// and no well-known value is ever used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_password: Option<String>,
    /// Password of each node's Redis default user (`requirepass`); the node process and its
    /// peers authenticate with it. Unset: no password, allowed only while every port listens on
    /// loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password: Option<String>,
    /// The node processes' log level: error, warn, info, debug or trace (`RCLUSTER_LOG` or
    /// `RUST_LOG` in the environment win).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Load every node's module with `enable-debug-command yes`, allowing `RC.DEBUG` (`PANIC`,
    /// `DROP-WRITES`): for tests of the store and of the checker only, never in production.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug_commands: bool,
    /// HTTP API: keys, rate limits, body and time limits.
    #[serde(default)]
    pub api: crate::node_config::ApiConfig,
    /// Restarting a node's Redis after a crash.
    #[serde(default)]
    pub supervision: crate::node_config::Supervision,
    /// NTP servers and drift limits.
    #[serde(default)]
    pub time: crate::node_config::TimeConfig,
    /// File uploads and downloads.
    #[serde(default)]
    pub files: crate::node_config::FilesConfig,
    /// Messages between node processes: the cluster secret's source and limits.
    #[serde(default)]
    pub peers: crate::node_config::PeersConfig,
    /// Request traces: sampling and each node's ring.
    #[serde(default)]
    pub trace: crate::node_config::TraceConfig,
    /// The read-only Redis user for Redis Insight.
    #[serde(default)]
    pub insight: crate::node_config::InsightConfig,
    /// What `/metrics` shows.
    #[serde(default)]
    pub metrics: crate::node_config::MetricsConfig,
    /// Injected faults: the longest and the default time to live.
    #[serde(default)]
    pub faults: crate::fault::FaultsConfig,
    pub nodes: Vec<NodeConfig>,
}

/// Replication factor `n`, write quorum `w`, read quorum `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quorum {
    pub n: u8,
    pub w: u8,
    pub r: u8,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum { n: 3, w: 2, r: 2 }
    }
}

impl Quorum {
    /// Checks `1 <= w, r <= n <= nodes` (the cluster config's, and a quorum change's, rule);
    /// returns the first problem found.
    pub fn check(self, nodes: usize) -> Result<(), ConfigError> {
        let Quorum { n, w, r } = self;
        if n == 0 {
            return Err(ConfigError::QuorumZero { field: "n" });
        }
        if usize::from(n) > nodes {
            return Err(ConfigError::NotEnoughNodes { n, nodes });
        }
        for (field, value) in [("w", w), ("r", r)] {
            if value == 0 {
                return Err(ConfigError::QuorumZero { field });
            }
            if value > n {
                return Err(ConfigError::QuorumAboveN { field, value, n });
            }
        }
        Ok(())
    }
}

/// Timer settings, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intervals {
    pub heartbeat_ms: u64,
    pub request_timeout_ms: u64,
    /// How often a node retries delivering the hints it holds for nodes that were down.
    pub hint_replay_ms: u64,
    /// How long a delete's tombstone is kept before it is purged.
    pub tombstone_grace_ms: u64,
    /// How often each node checks that the next owner of every key it owns holds it (anti-entropy;
    /// 0 = never).
    pub anti_entropy_ms: u64,
    /// One Raft tick: elections wait 15 to 30 ticks, the leader's heartbeat goes every 5. 0: 10 ms
    /// per started second of `heartbeat_ms` (10 to 100). Links slower than about a third of the
    /// shortest election need more (docs/faults.md).
    pub raft_tick_ms: u64,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            heartbeat_ms: 1000,
            request_timeout_ms: 2000,
            hint_replay_ms: 1000,
            tombstone_grace_ms: 86_400_000,
            anti_entropy_ms: 600_000,
            raft_tick_ms: 0,
        }
    }
}

/// Size limits on keys and values, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
    /// Hint bytes (key plus stored hint) a node keeps for one other node; a hint past it is
    /// refused and counted, and the write counts as failed for that replica.
    pub max_hint_bytes_per_node: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 1024,
            max_value_bytes: 8 * MIB,
            max_hint_bytes_per_node: DEFAULT_MAX_HINT_BYTES_PER_NODE,
        }
    }
}

/// One node: its id, the address peers and clients use, the address it binds, and its three ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: String,
    /// The address peers and clients use to reach the node (an IP address or a name they
    /// resolve, such as a container's service name).
    #[serde(default = "default_host")]
    pub host: String,
    /// The address the node binds its ports on (e.g. `0.0.0.0` in a container); unset: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_host: Option<String>,
    pub redis_port: u16,
    pub http_port: u16,
    pub peer_port: u16,
}

fn default_data_dir() -> String {
    "../data".to_owned()
}

fn default_redis_conf() -> String {
    "../redis.conf".to_owned()
}

fn default_chunk_size_bytes() -> u64 {
    MIB
}

fn default_redis_maxmemory_mb() -> u64 {
    256
}

fn default_vnodes() -> u32 {
    crate::ring::DEFAULT_VNODES
}

/// The internal password every cluster used before it was derived from the cluster secret: a
/// configured `internal_password` equal to it is refused beyond loopback.
pub const WELL_KNOWN_INTERNAL_PASSWORD: &str = "rcluster-internal-dev";

/// The accepted `log_level` values.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

fn default_log_level() -> String {
    "info".to_owned()
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

/// Why a configuration was rejected; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The YAML parser's message (syntax error, unknown or missing field, wrong type),
    /// including line and column where the parser gives them.
    #[error("{0}")]
    Yaml(String),
    #[error("no nodes configured")]
    NoNodes,
    #[error("node id {0:?} is invalid: use 1 to 32 characters from a-z, 0-9, '-' and '_'")]
    InvalidNodeId(String),
    #[error("duplicate node id {0:?}")]
    DuplicateNodeId(String),
    #[error("port 0 is invalid ({node} {field})")]
    InvalidPort { node: String, field: &'static str },
    #[error("duplicate port {port} ({first_node} {first_field} and {second_node} {second_field})")]
    DuplicatePort {
        port: u16,
        first_node: String,
        first_field: &'static str,
        second_node: String,
        second_field: &'static str,
    },
    #[error("quorum: {field} must be at least 1")]
    QuorumZero { field: &'static str },
    #[error("quorum: {field}={value} is greater than n={n}")]
    QuorumAboveN {
        field: &'static str,
        value: u8,
        n: u8,
    },
    #[error(
        "quorum: n={n} but only {nodes} {} configured",
        if *nodes == 1 { "node is" } else { "nodes are" }
    )]
    NotEnoughNodes { n: u8, nodes: usize },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} must be printable ASCII without spaces")]
    BadPassword(&'static str),
    #[error(
        "the config refers to ${{{0}}} but the environment variable {0} is not set (or not \
         valid UTF-8)"
    )]
    MissingVar(String),
    #[error("{0}")]
    BadVarReference(String),
    #[error("{field} {value} is out of range {}..={}", range.start(), range.end())]
    OutOfRange {
        field: &'static str,
        value: u64,
        range: RangeInclusive<u64>,
    },
}

/// `text` with every `${NAME}` (NAME of `A-Z`, `0-9` and `_`) replaced by `lookup(NAME)`: how a
/// container passes secrets and addresses into one shared config file. Comment lines are left
/// as they are. An unset variable is an error naming it, never an empty string.
pub fn expand_vars(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            expand_line(line, &lookup, &mut out)?;
        }
    }
    Ok(out)
}

fn expand_line(
    line: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ConfigError> {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::BadVarReference(
                "\"${\" without a closing \"}\"".to_owned(),
            ));
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(ConfigError::BadVarReference(format!(
                "${{{name}}}: a variable name is made of A-Z, 0-9 and _"
            )));
        }
        out.push_str(&lookup(name).ok_or_else(|| ConfigError::MissingVar(name.to_owned()))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Parses YAML text into a [`ClusterConfig`], fills in defaults, and validates it.
pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    let config: ClusterConfig =
        serde_norway::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    config.validate()?;
    Ok(config)
}

fn is_valid_node_id(id: &str) -> bool {
    crate::validate::node_id(id.as_bytes()).is_ok()
}

pub(crate) fn check_range(
    field: &'static str,
    value: u64,
    range: RangeInclusive<u64>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            range,
        })
    }
}

/// A Redis password: 8 to 128 printable ASCII characters without spaces.
pub fn check_password(
    field: &'static str,
    length_field: &'static str,
    pw: &str,
) -> Result<(), ConfigError> {
    check_range(length_field, pw.len() as u64, INTERNAL_PASSWORD_LEN_RANGE)?;
    if !pw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::BadPassword(field));
    }
    Ok(())
}

impl NodeConfig {
    /// The address the node binds: `listen_host`, else `host`.
    pub fn listen(&self) -> &str {
        self.listen_host.as_deref().unwrap_or(&self.host)
    }

    /// The address the node's own processes use to reach its ports: the bound address, or
    /// loopback when it binds every address (`0.0.0.0`, `::`).
    pub fn local_host(&self) -> &str {
        match self.listen() {
            "0.0.0.0" => "127.0.0.1",
            "::" | "[::]" => "::1",
            bound => bound,
        }
    }

    /// The node's ports, each with its field name.
    fn named_ports(&self) -> [(&'static str, u16); 3] {
        [
            ("redis_port", self.redis_port),
            ("http_port", self.http_port),
            ("peer_port", self.peer_port),
        ]
    }
}

impl ClusterConfig {
    /// Checks every rule; returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_nodes()?;
        self.quorum.check(self.nodes.len())?;
        check_range("chunk_size_bytes", self.chunk_size_bytes, CHUNK_SIZE_RANGE)?;
        check_range(
            "intervals.heartbeat_ms",
            self.intervals.heartbeat_ms,
            HEARTBEAT_MS_RANGE,
        )?;
        check_range(
            "intervals.raft_tick_ms",
            self.intervals.raft_tick_ms,
            RAFT_TICK_MS_RANGE,
        )?;
        check_range(
            "intervals.request_timeout_ms",
            self.intervals.request_timeout_ms,
            REQUEST_TIMEOUT_MS_RANGE,
        )?;
        check_range(
            "limits.max_key_bytes",
            self.limits.max_key_bytes,
            MAX_KEY_BYTES_RANGE,
        )?;
        check_range(
            "limits.max_value_bytes",
            self.limits.max_value_bytes,
            MAX_VALUE_BYTES_RANGE,
        )?;
        check_range(
            "limits.max_hint_bytes_per_node",
            self.limits.max_hint_bytes_per_node,
            MAX_HINT_BYTES_PER_NODE_RANGE,
        )?;
        check_range(
            "redis_maxmemory_mb",
            self.redis_maxmemory_mb,
            REDIS_MAXMEMORY_MB_RANGE,
        )?;
        check_range(
            "intervals.hint_replay_ms",
            self.intervals.hint_replay_ms,
            HINT_REPLAY_MS_RANGE,
        )?;
        check_range(
            "intervals.tombstone_grace_ms",
            self.intervals.tombstone_grace_ms,
            TOMBSTONE_GRACE_MS_RANGE,
        )?;
        check_range(
            "intervals.anti_entropy_ms",
            self.intervals.anti_entropy_ms,
            ANTI_ENTROPY_MS_RANGE,
        )?;
        check_range("vnodes", u64::from(self.vnodes), VNODES_RANGE)?;
        for (field, length_field, pw) in [
            (
                "internal_password",
                "internal_password length",
                &self.internal_password,
            ),
            (
                "redis_password",
                "redis_password length",
                &self.redis_password,
            ),
        ] {
            let Some(pw) = pw else { continue };
            check_password(field, length_field, pw)?;
        }
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            return Err(ConfigError::Invalid {
                field: "log_level".into(),
                message: format!(
                    "{:?} is not one of {}",
                    self.log_level,
                    LOG_LEVELS.join(", ")
                ),
            });
        }
        self.api.validate()?;
        self.supervision.validate()?;
        self.files.validate()?;
        self.peers.validate()?;
        self.trace.validate()?;
        self.insight.validate()?;
        self.time.validate()
    }

    fn validate_nodes(&self) -> Result<(), ConfigError> {
        check_nodes(&self.nodes)
    }

    /// How many times slower than the default (10 ms ticks, 150-300 ms elections) Raft runs:
    /// it follows the heartbeat setting, so `--low-resource` (10x heartbeats) also slows Raft.
    pub fn raft_tick_scale(&self) -> u64 {
        (self.intervals.heartbeat_ms / 1000).clamp(1, 10)
    }

    /// The length of one Raft tick in ms: `intervals.raft_tick_ms`, else 10 ms times
    /// [`ClusterConfig::raft_tick_scale`].
    pub fn raft_tick_ms(&self) -> u64 {
        match self.intervals.raft_tick_ms {
            0 => 10 * self.raft_tick_scale(),
            ms => ms,
        }
    }

    /// Why `node` may not start as configured: each of its ports that listens beyond loopback
    /// (a `host` that is not `localhost`, `127.0.0.0/8` or `::1`) makes every development
    /// default a refusal, named with what to change. Empty: it may start.
    pub fn exposure_problems(&self, node: &NodeConfig) -> Vec<String> {
        if is_loopback_host(&node.host) && is_loopback_host(node.listen()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let dev = self.api.dev_keys_in_use();
        if !dev.is_empty() {
            out.push(format!(
                "api.keys holds the development key(s) {} (the default when api.keys is not \
                 set): configure your own keys",
                dev.join(", ")
            ));
        }
        if self.redis_password.is_none() {
            out.push(
                "redis_password is not set, so Redis's default user has no password: set \
                 redis_password (8 to 128 printable characters)"
                    .to_string(),
            );
        }
        if self.internal_password.as_deref() == Some(WELL_KNOWN_INTERNAL_PASSWORD) {
            out.push(format!(
                "internal_password is the well-known {WELL_KNOWN_INTERNAL_PASSWORD:?}: remove it \
                 (it is then derived from the cluster secret) or choose another"
            ));
        }
        out
    }

    /// The node with this id, if any.
    pub fn node(&self, id: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// A copy tuned for a small machine: half the Redis memory (never below 16 MB) and half the
    /// hint backlog per node (never below its minimum),
    /// heartbeats and hint replay 10x slower (at most 30000 / 60000 ms), request timeout doubled
    /// (at most 60000 ms), and no virtual nodes on the ring.
    pub fn low_resource(&self) -> ClusterConfig {
        let mut config = self.clone();
        config.redis_maxmemory_mb =
            (self.redis_maxmemory_mb / 2).max(*REDIS_MAXMEMORY_MB_RANGE.start());
        config.limits.max_hint_bytes_per_node =
            (self.limits.max_hint_bytes_per_node / 2).max(*MAX_HINT_BYTES_PER_NODE_RANGE.start());
        config.intervals.heartbeat_ms = self
            .intervals
            .heartbeat_ms
            .saturating_mul(10)
            .min(*HEARTBEAT_MS_RANGE.end());
        config.intervals.request_timeout_ms = self
            .intervals
            .request_timeout_ms
            .saturating_mul(2)
            .min(*REQUEST_TIMEOUT_MS_RANGE.end());
        config.intervals.hint_replay_ms = self
            .intervals
            .hint_replay_ms
            .saturating_mul(10)
            .min(*HINT_REPLAY_MS_RANGE.end());
        config.time.ntp_interval_ms = self.time.ntp_interval_ms.saturating_mul(10).min(86_400_000);
        // Anti-entropy passes six times rarer (0, off, stays off).
        config.intervals.anti_entropy_ms = self
            .intervals
            .anti_entropy_ms
            .saturating_mul(6)
            .min(*ANTI_ENTROPY_MS_RANGE.end());
        // No virtual nodes: the smallest ring (at the price of an uneven spread beyond N nodes).
        config.vnodes = 1;
        // No series per peer in /metrics (their count grows with the square of the nodes).
        config.metrics.per_peer = false;
        config
    }
}

/// True when `host` names a loopback address: `localhost`, `127.0.0.0/8` or `::1` (brackets
/// allowed). Any other name counts as reachable from other machines.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let octets: Vec<&str> = host.split('.').collect();
    let ipv4_loopback = octets.len() == 4
        && octets.iter().all(|o| o.parse::<u8>().is_ok())
        && octets[0].parse::<u8>() == Ok(127);
    host.eq_ignore_ascii_case("localhost")
        || ipv4_loopback
        || host == "::1"
        || host == "0:0:0:0:0:0:0:1"
}

/// Checks a member list: at least one node, valid and unique ids, non-zero ports, and no port
/// used twice on one host (the config's `nodes`, and the member list after a node joins).
pub fn check_nodes(nodes: &[NodeConfig]) -> Result<(), ConfigError> {
    if nodes.is_empty() {
        return Err(ConfigError::NoNodes);
    }
    let mut ids = HashSet::new();
    // (host, port) -> (node id, field) of the first use.
    let mut ports: HashMap<(&str, u16), (&str, &'static str)> = HashMap::new();
    for node in nodes {
        if !is_valid_node_id(&node.id) {
            return Err(ConfigError::InvalidNodeId(node.id.clone()));
        }
        if !ids.insert(node.id.as_str()) {
            return Err(ConfigError::DuplicateNodeId(node.id.clone()));
        }
        for (field, port) in node.named_ports() {
            if port == 0 {
                return Err(ConfigError::InvalidPort {
                    node: node.id.clone(),
                    field,
                });
            }
            if let Some(&(first_node, first_field)) = ports.get(&(node.host.as_str(), port)) {
                return Err(ConfigError::DuplicatePort {
                    port,
                    first_node: first_node.to_owned(),
                    first_field,
                    second_node: node.id.clone(),
                    second_field: field,
                });
            }
            ports.insert((node.host.as_str(), port), (node.id.as_str(), field));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const THREE_NODES: &str = "\
cluster_name: test
nodes:
  - { id: n1, redis_port: 6379, http_port: 8080, peer_port: 7379 }
  - { id: n2, redis_port: 6380, http_port: 8081, peer_port: 7380 }
  - { id: n3, redis_port: 6381, http_port: 8082, peer_port: 7381 }
";

    fn node(id: &str, redis_port: u16, http_port: u16, peer_port: u16) -> NodeConfig {
        NodeConfig {
            id: id.to_owned(),
            host: "127.0.0.1".to_owned(),
            listen_host: None,
            redis_port,
            http_port,
            peer_port,
        }
    }

    /// The valid three-node config with `extra` YAML lines added at the top level.
    fn three_nodes_with(extra: &str) -> String {
        format!("{THREE_NODES}{extra}")
    }

    fn valid() -> ClusterConfig {
        parse(THREE_NODES).expect("base config is valid")
    }

    fn err_text(result: Result<ClusterConfig, ConfigError>) -> String {
        result.expect_err("config should be rejected").to_string()
    }

    fn validate_text(config: &ClusterConfig) -> String {
        config
            .validate()
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn shipped_cluster_yaml_is_valid() {
        let config = parse(include_str!("../../config/cluster.yaml")).expect("cluster.yaml");
        assert_eq!(config.nodes.len(), 3);
        assert_eq!(config.quorum, Quorum { n: 3, w: 2, r: 2 });
        assert_eq!(config.chunk_size_bytes, MIB);
        assert_eq!(config.node("n1"), Some(&node("n1", 6379, 8080, 7379)));
        assert_eq!(config.node("n2"), Some(&node("n2", 6380, 8081, 7380)));
        assert_eq!(config.node("n3"), Some(&node("n3", 6381, 8082, 7381)));
    }

    #[test]
    fn defaults_apply_when_fields_are_omitted() {
        let config = valid();
        assert_eq!(config.cluster_name, "test");
        assert_eq!(config.data_dir, "../data");
        assert_eq!(config.redis_conf, "../redis.conf");
        assert_eq!(config.quorum, Quorum { n: 3, w: 2, r: 2 });
        assert_eq!(config.chunk_size_bytes, 1_048_576);
        assert_eq!(
            config.intervals,
            Intervals {
                heartbeat_ms: 1000,
                request_timeout_ms: 2000,
                hint_replay_ms: 1000,
                tombstone_grace_ms: 86_400_000,
                anti_entropy_ms: 600_000,
                raft_tick_ms: 0,
            }
        );
        assert_eq!(config.vnodes, crate::ring::DEFAULT_VNODES);
        assert_eq!(
            config.limits,
            Limits {
                max_key_bytes: 1024,
                max_value_bytes: 8 * 1024 * 1024,
                max_hint_bytes_per_node: 32 * 1024 * 1024,
            }
        );
        assert_eq!(config.redis_maxmemory_mb, 256);
        assert_eq!(config.nodes[0].host, "127.0.0.1");
    }

    #[test]
    fn partial_sections_keep_defaults_for_missing_fields() {
        let config = parse(&three_nodes_with(
            "quorum: { w: 3 }\nintervals: { heartbeat_ms: 500 }\nlimits: { max_key_bytes: 10 }\n",
        ))
        .unwrap();
        assert_eq!(config.quorum, Quorum { n: 3, w: 3, r: 2 });
        assert_eq!(config.intervals.heartbeat_ms, 500);
        assert_eq!(config.intervals.request_timeout_ms, 2000);
        assert_eq!(config.limits.max_key_bytes, 10);
        assert_eq!(config.limits.max_value_bytes, 8 * MIB);
    }

    #[test]
    fn node_lookup() {
        let config = valid();
        assert_eq!(config.node("n2").map(|n| n.http_port), Some(8081));
        assert_eq!(config.node("n9"), None);
    }

    #[test]
    fn unknown_top_level_field_is_named_with_position() {
        let text = err_text(parse(&three_nodes_with("foo: 1\n")));
        assert!(text.contains("unknown field `foo`"), "{text}");
        assert!(text.contains("at line 6 column 1"), "{text}");
    }

    #[test]
    fn unknown_nested_field_is_named() {
        let text = err_text(parse(&three_nodes_with("quorum: { n: 3, x: 1 }\n")));
        assert!(text.contains("unknown field `x`"), "{text}");
        let text = err_text(parse(
            "cluster_name: t\nnodes:\n  - { id: n1, redis_port: 1, http_port: 2, peer_port: 3, bogus: 4 }\n",
        ));
        assert!(text.contains("unknown field `bogus`"), "{text}");
    }

    #[test]
    fn syntax_error_reports_line_and_column() {
        let text = err_text(parse("cluster_name: [unclosed\nnodes: []\n"));
        assert!(text.contains("line"), "{text}");
        assert!(text.contains("column"), "{text}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let text = err_text(parse("cluster_name: t\n"));
        assert!(text.contains("missing field `nodes`"), "{text}");
    }

    #[test]
    fn no_nodes() {
        let text = err_text(parse("cluster_name: t\nnodes: []\n"));
        assert_eq!(text, "no nodes configured");
    }

    #[test]
    fn duplicate_node_id() {
        let mut config = valid();
        config.nodes[1].id = "n1".to_owned();
        assert_eq!(validate_text(&config), r#"duplicate node id "n1""#);
    }

    #[test]
    fn invalid_node_ids() {
        for bad in ["N 1", "", "N1", "n.1", "ñ", &"a".repeat(33)] {
            let mut config = valid();
            config.nodes[0].id = bad.to_owned();
            assert_eq!(
                validate_text(&config),
                format!(
                    "node id {bad:?} is invalid: use 1 to 32 characters from a-z, 0-9, '-' and '_'"
                )
            );
        }
        let mut config = valid();
        config.nodes[0].id = "a-z_0-9".to_owned();
        config.nodes[1].id = "b".repeat(32);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn port_zero() {
        let mut config = valid();
        config.nodes[2].peer_port = 0;
        assert_eq!(validate_text(&config), "port 0 is invalid (n3 peer_port)");
    }

    #[test]
    fn duplicate_port_across_nodes() {
        let mut config = valid();
        config.nodes[1].http_port = 6379;
        assert_eq!(
            validate_text(&config),
            "duplicate port 6379 (n1 redis_port and n2 http_port)"
        );
    }

    #[test]
    fn duplicate_port_within_one_node() {
        let mut config = valid();
        config.nodes[0].peer_port = 8080;
        assert_eq!(
            validate_text(&config),
            "duplicate port 8080 (n1 http_port and n1 peer_port)"
        );
    }

    #[test]
    fn same_port_on_different_hosts_is_allowed() {
        let mut config = valid();
        for (i, node) in config.nodes.iter_mut().enumerate() {
            node.host = format!("10.0.0.{}", i + 1);
            node.redis_port = 6379;
            node.http_port = 8080;
            node.peer_port = 7379;
        }
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn quorum_w_greater_than_n() {
        let text = err_text(parse(&three_nodes_with("quorum: { n: 3, w: 4, r: 2 }\n")));
        assert_eq!(text, "quorum: w=4 is greater than n=3");
    }

    #[test]
    fn quorum_r_greater_than_n() {
        let text = err_text(parse(&three_nodes_with("quorum: { n: 2, w: 1, r: 3 }\n")));
        assert_eq!(text, "quorum: r=3 is greater than n=2");
    }

    #[test]
    fn quorum_zero_values() {
        let text = err_text(parse(&three_nodes_with("quorum: { n: 3, w: 2, r: 0 }\n")));
        assert_eq!(text, "quorum: r must be at least 1");
        let text = err_text(parse(&three_nodes_with("quorum: { n: 3, w: 0, r: 2 }\n")));
        assert_eq!(text, "quorum: w must be at least 1");
        let text = err_text(parse(&three_nodes_with("quorum: { n: 0, w: 1, r: 1 }\n")));
        assert_eq!(text, "quorum: n must be at least 1");
    }

    #[test]
    fn quorum_n_greater_than_node_count() {
        let text = err_text(parse(&three_nodes_with("quorum: { n: 4, w: 2, r: 2 }\n")));
        assert_eq!(text, "quorum: n=4 but only 3 nodes are configured");
        let mut config = valid();
        config.nodes.truncate(1);
        assert_eq!(
            validate_text(&config),
            "quorum: n=3 but only 1 node is configured"
        );
    }

    #[test]
    fn quorum_out_of_u8_is_a_yaml_error() {
        let text = err_text(parse(&three_nodes_with("quorum: { n: 300 }\n")));
        assert!(text.contains("quorum"), "{text}");
    }

    #[test]
    fn chunk_size_out_of_range() {
        let text = err_text(parse(&three_nodes_with("chunk_size_bytes: 7340032\n")));
        assert_eq!(
            text,
            "chunk_size_bytes 7340032 is out of range 1048576..=5242880"
        );
        let mut config = valid();
        config.chunk_size_bytes = MIB - 1;
        assert!(validate_text(&config).starts_with("chunk_size_bytes 1048575 is out of range"));
        config.chunk_size_bytes = 5 * MIB;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn heartbeat_out_of_range() {
        let mut config = valid();
        config.intervals.heartbeat_ms = 99;
        assert_eq!(
            validate_text(&config),
            "intervals.heartbeat_ms 99 is out of range 100..=30000"
        );
        config.intervals.heartbeat_ms = 30_001;
        assert_eq!(
            validate_text(&config),
            "intervals.heartbeat_ms 30001 is out of range 100..=30000"
        );
    }

    #[test]
    fn request_timeout_out_of_range() {
        let mut config = valid();
        config.intervals.request_timeout_ms = 9;
        assert_eq!(
            validate_text(&config),
            "intervals.request_timeout_ms 9 is out of range 10..=60000"
        );
        config.intervals.request_timeout_ms = 60_001;
        assert_eq!(
            validate_text(&config),
            "intervals.request_timeout_ms 60001 is out of range 10..=60000"
        );
    }

    #[test]
    fn anti_entropy_interval_out_of_range() {
        let mut config = valid();
        config.intervals.anti_entropy_ms = 0;
        assert!(config.validate().is_ok(), "0 turns anti-entropy off");
        config.intervals.anti_entropy_ms = 86_400_001;
        assert_eq!(
            validate_text(&config),
            "intervals.anti_entropy_ms 86400001 is out of range 0..=86400000"
        );
    }

    #[test]
    fn limits_out_of_range() {
        let mut config = valid();
        config.limits.max_key_bytes = 0;
        assert_eq!(
            validate_text(&config),
            "limits.max_key_bytes 0 is out of range 1..=65536"
        );
        config.limits.max_key_bytes = 65_537;
        assert_eq!(
            validate_text(&config),
            "limits.max_key_bytes 65537 is out of range 1..=65536"
        );

        let mut config = valid();
        config.limits.max_value_bytes = 0;
        assert_eq!(
            validate_text(&config),
            "limits.max_value_bytes 0 is out of range 1..=536870912"
        );
        config.limits.max_value_bytes = 512 * MIB + 1;
        assert_eq!(
            validate_text(&config),
            "limits.max_value_bytes 536870913 is out of range 1..=536870912"
        );
    }

    #[test]
    fn max_hint_bytes_per_node_out_of_range() {
        let mut config = valid();
        config.limits.max_hint_bytes_per_node = 1023;
        assert_eq!(
            validate_text(&config),
            "limits.max_hint_bytes_per_node 1023 is out of range 1024..=68719476736"
        );
        config.limits.max_hint_bytes_per_node = 64 * 1024 * MIB + 1;
        assert_eq!(
            validate_text(&config),
            "limits.max_hint_bytes_per_node 68719476737 is out of range 1024..=68719476736"
        );
        config.limits.max_hint_bytes_per_node = 1024;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn redis_maxmemory_out_of_range() {
        let mut config = valid();
        config.redis_maxmemory_mb = 15;
        assert_eq!(
            validate_text(&config),
            "redis_maxmemory_mb 15 is out of range 16..=65536"
        );
        config.redis_maxmemory_mb = 65_537;
        assert_eq!(
            validate_text(&config),
            "redis_maxmemory_mb 65537 is out of range 16..=65536"
        );
    }

    #[test]
    fn low_resource_from_defaults() {
        let config = valid();
        let low = config.low_resource();
        assert_eq!(low.redis_maxmemory_mb, 128);
        assert_eq!(low.limits.max_hint_bytes_per_node, 16 * MIB);
        assert_eq!(low.intervals.heartbeat_ms, 10_000);
        assert_eq!(low.intervals.request_timeout_ms, 4000);
        assert_eq!(low.intervals.hint_replay_ms, 10_000);
        assert_eq!(low.intervals.anti_entropy_ms, 3_600_000);
        assert_eq!(low.vnodes, 1);
        assert_eq!(low.time.ntp_interval_ms, 600_000);
        // Everything else is unchanged, and the original is untouched.
        let mut back = low.clone();
        back.redis_maxmemory_mb = config.redis_maxmemory_mb;
        back.limits = config.limits;
        back.intervals = config.intervals;
        back.vnodes = config.vnodes;
        back.time = config.time.clone();
        assert!(!low.metrics.per_peer && config.metrics.per_peer);
        back.metrics = config.metrics;
        assert_eq!(back, config);
        assert_eq!(config.redis_maxmemory_mb, 256);
        assert_eq!(low.validate(), Ok(()));
    }

    #[test]
    fn low_resource_respects_floor_and_caps() {
        let mut config = valid();
        config.redis_maxmemory_mb = 20;
        config.intervals.heartbeat_ms = 5000;
        config.intervals.request_timeout_ms = 40_000;
        let low = config.low_resource();
        assert_eq!(low.redis_maxmemory_mb, 16);
        assert_eq!(low.intervals.heartbeat_ms, 30_000);
        assert_eq!(low.intervals.request_timeout_ms, 60_000);

        config.redis_maxmemory_mb = 16;
        config.intervals.heartbeat_ms = 30_000;
        config.intervals.request_timeout_ms = 60_000;
        assert_eq!(config.low_resource().redis_maxmemory_mb, 16);
        assert_eq!(config.low_resource().intervals.heartbeat_ms, 30_000);
        assert_eq!(config.low_resource().intervals.request_timeout_ms, 60_000);
    }

    #[test]
    fn variables_are_expanded_and_unset_ones_named() {
        let env = |name: &str| (name == "KEY").then(|| "s3cret".to_owned());
        assert_eq!(
            expand_vars("key: ${KEY}, again ${KEY}$", env).expect("set"),
            "key: s3cret, again s3cret$"
        );
        assert_eq!(expand_vars("no vars", env).expect("none"), "no vars");
        assert_eq!(
            expand_vars("  # a ${comment}\nk: ${KEY}\n", env).expect("comment kept"),
            "  # a ${comment}\nk: s3cret\n"
        );
        assert_eq!(
            expand_vars("a: ${MISSING}", env).unwrap_err().to_string(),
            "the config refers to ${MISSING} but the environment variable MISSING is not set (or \
             not valid UTF-8)"
        );
        assert!(expand_vars("a: ${lower}", env)
            .unwrap_err()
            .to_string()
            .contains("A-Z, 0-9 and _"));
        assert!(expand_vars("a: ${KEY", env)
            .unwrap_err()
            .to_string()
            .contains("closing"));
    }

    #[test]
    fn listen_host_binds_and_host_is_advertised() {
        let mut n = node("n1", 1, 2, 3);
        n.host = "n1.example".into();
        assert_eq!((n.listen(), n.local_host()), ("n1.example", "n1.example"));
        n.listen_host = Some("0.0.0.0".into());
        assert_eq!((n.listen(), n.local_host()), ("0.0.0.0", "127.0.0.1"));
        n.listen_host = Some("::".into());
        assert_eq!(n.local_host(), "::1");
        n.listen_host = Some("10.1.2.3".into());
        assert_eq!(n.local_host(), "10.1.2.3");
        // Loopback advertised but every address bound: exposed, so the development defaults are
        // refused.
        let config = parse(THREE_NODES).expect("valid");
        let mut exposed = config.nodes[0].clone();
        assert!(config.exposure_problems(&exposed).is_empty());
        exposed.listen_host = Some("0.0.0.0".into());
        assert!(!config.exposure_problems(&exposed).is_empty());
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "0.0.0.0",
            "10.0.0.5",
            "128.0.0.1",
            "::",
            "example.com",
            "127.0.0",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn development_defaults_are_refused_beyond_loopback() {
        let config = valid();
        assert!(config.exposure_problems(&config.nodes[0]).is_empty());
        let mut exposed = config.nodes[0].clone();
        exposed.host = "0.0.0.0".into();
        let problems = config.exposure_problems(&exposed);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("dev-admin, dev-read"), "{problems:?}");
        assert!(problems[1].contains("redis_password"), "{problems:?}");
        let fixed = parse(&three_nodes_with(
            "redis_password: a-redis-password\n\
             internal_password: rcluster-internal-dev\n\
             api:\n  keys:\n    - { name: ops, key: ops-key-0123456789abcdef, role: admin }\n",
        ))
        .expect("valid");
        let problems = fixed.exposure_problems(&exposed);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("internal_password"), "{problems:?}");
        let mut fixed = fixed;
        fixed.internal_password = None;
        assert!(fixed.exposure_problems(&exposed).is_empty());
    }

    #[test]
    fn passwords_and_log_level_are_checked() {
        let text = err_text(parse(&three_nodes_with("redis_password: short\n")));
        assert_eq!(text, "redis_password length 5 is out of range 8..=128");
        let text = err_text(parse(&three_nodes_with(
            "internal_password: \"with space\"\n",
        )));
        assert_eq!(
            text,
            "internal_password must be printable ASCII without spaces"
        );
        let text = err_text(parse(&three_nodes_with("log_level: loud\n")));
        assert!(
            text.starts_with("log_level: \"loud\" is not one of error"),
            "{text}"
        );
        assert_eq!(valid().log_level, "info");
        assert_eq!(valid().internal_password, None);
        let config = parse(&three_nodes_with("log_level: debug\n")).expect("valid");
        assert_eq!(config.log_level, "debug");
    }

    #[test]
    fn yaml_round_trip() {
        let config = valid().low_resource();
        let text = serde_norway::to_string(&config).unwrap();
        assert_eq!(parse(&text), Ok(config));
    }

    /// 1..=7 nodes with distinct ids and ports, a valid quorum, and in-range settings.
    fn valid_config() -> impl Strategy<Value = ClusterConfig> {
        (1usize..=7)
            .prop_flat_map(|count| {
                (
                    proptest::collection::hash_set("[a-z0-9_-]{1,32}", count),
                    proptest::collection::hash_set(1u16.., count * 3),
                    prop::sample::select(vec!["127.0.0.1", "localhost", "10.0.0.5"]),
                    (1..=count as u8).prop_flat_map(|n| (Just(n), 1..=n, 1..=n)),
                    (
                        CHUNK_SIZE_RANGE,
                        HEARTBEAT_MS_RANGE,
                        REQUEST_TIMEOUT_MS_RANGE,
                        MAX_KEY_BYTES_RANGE,
                        MAX_VALUE_BYTES_RANGE,
                        REDIS_MAXMEMORY_MB_RANGE,
                    ),
                )
            })
            .prop_map(|(ids, ports, host, (n, w, r), settings)| {
                let ports: Vec<u16> = ports.into_iter().collect();
                let nodes = ids
                    .into_iter()
                    .zip(ports.chunks(3))
                    .map(|(id, p)| NodeConfig {
                        id,
                        host: host.to_owned(),
                        listen_host: None,
                        redis_port: p[0],
                        http_port: p[1],
                        peer_port: p[2],
                    })
                    .collect();
                let (chunk, heartbeat, timeout, key, value, memory) = settings;
                ClusterConfig {
                    cluster_name: "prop".to_owned(),
                    data_dir: default_data_dir(),
                    redis_conf: default_redis_conf(),
                    quorum: Quorum { n, w, r },
                    chunk_size_bytes: chunk,
                    intervals: Intervals {
                        heartbeat_ms: heartbeat,
                        request_timeout_ms: timeout,
                        ..Intervals::default()
                    },
                    limits: Limits {
                        max_key_bytes: key,
                        max_value_bytes: value,
                        ..Limits::default()
                    },
                    redis_maxmemory_mb: memory,
                    vnodes: default_vnodes(),
                    internal_password: None,
                    redis_password: None,
                    debug_commands: false,
                    log_level: default_log_level(),
                    api: Default::default(),
                    supervision: Default::default(),
                    time: Default::default(),
                    files: Default::default(),
                    peers: Default::default(),
                    trace: Default::default(),
                    insight: Default::default(),
                    metrics: Default::default(),
                    faults: Default::default(),
                    nodes,
                }
            })
    }

    proptest! {
        #[test]
        fn valid_configs_validate(config in valid_config()) {
            prop_assert_eq!(config.validate(), Ok(()));
            // And they survive a trip through YAML text.
            let text = serde_norway::to_string(&config).unwrap();
            prop_assert_eq!(parse(&text), Ok(config));
        }

        #[test]
        fn w_above_n_always_fails(mut config in valid_config()) {
            let n = config.quorum.n;
            config.quorum.w = n + 1;
            prop_assert_eq!(
                config.validate(),
                Err(ConfigError::QuorumAboveN { field: "w", value: n + 1, n })
            );
        }

        #[test]
        fn low_resource_of_valid_config_is_valid(config in valid_config()) {
            prop_assert_eq!(config.low_resource().validate(), Ok(()));
        }
    }
}
