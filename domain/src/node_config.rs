//! The node-process sections of the cluster config: HTTP API keys and limits, Redis supervision,
//! time (NTP) settings and peer-message limits, with their defaults and validation.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: GET endpoints.
    Read,
    /// Everything, including stopping and starting nodes.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Shown in logs and metrics instead of the key.
    pub name: String,
    pub key: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub keys: Vec<ApiKey>,
    /// Requests per second each key (or each client address, without a key) may make.
    pub rate_per_s: u32,
    /// Requests a key may make at once before the rate applies.
    pub burst: u32,
    /// Largest request body accepted.
    pub body_limit_bytes: u64,
    /// Longest a request may take before the server answers 408.
    pub request_timeout_ms: u64,
    /// Longest wait for the next bytes of a request body, on every route: a body that stalls
    /// this long is refused (408), so a slow or stuck client holds no upload slot nor
    /// connection for long.
    pub body_idle_timeout_ms: u64,
    /// Failed authentications (a missing or unknown key) one client address may make at once;
    /// beyond them every request from that address is answered 429 until the bucket refills.
    pub auth_failure_burst: u32,
    /// Failed authentications per second one client address earns back.
    pub auth_failure_rate_per_s: u32,
}

/// The development keys (name, key, role): the default `api.keys`, and what
/// `config/cluster.yaml` ships. A node accepting one of them says so when it starts, and refuses
/// to start when any of its ports listens beyond loopback.
pub const DEV_KEYS: [(&str, &str, Role); 2] = [
    ("dev-admin", "dev-admin-key-change-me", Role::Admin),
    ("dev-read", "dev-read-key-change-me", Role::Read),
];

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keys: DEV_KEYS
                .iter()
                .map(|(name, key, role)| ApiKey {
                    name: (*name).into(),
                    key: (*key).into(),
                    role: *role,
                })
                .collect(),
            rate_per_s: 50,
            burst: 100,
            body_limit_bytes: 1 << 20,
            request_timeout_ms: 30_000,
            body_idle_timeout_ms: 5_000,
            auth_failure_burst: 10,
            auth_failure_rate_per_s: 1,
        }
    }
}

/// Restarting a node's Redis that exited or failed to start without being asked to: the
/// supervisor keeps trying, with a pause that doubles after each failure in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervision {
    /// Restart the node's Redis when it exits without being asked to (off: it stays stopped
    /// until started through the API).
    pub restart_on_crash: bool,
    /// Pause before the first restart after a crash; it doubles with every further failure in a
    /// row (a crash, or a start that failed), up to `max_restart_delay_ms`.
    pub restart_delay_ms: u64,
    /// The longest pause between two restarts.
    pub max_restart_delay_ms: u64,
    /// A Redis that stayed up this long has recovered: its next crash starts again from
    /// `restart_delay_ms`.
    pub stable_after_ms: u64,
    /// At most this many restarts within any minute: a further one waits until the minute
    /// allows it (the supervisor never gives up).
    pub max_restarts_per_minute: u32,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            restart_on_crash: true,
            restart_delay_ms: 1_000,
            max_restart_delay_ms: 30_000,
            stable_after_ms: 60_000,
            max_restarts_per_minute: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// SNTP servers as `host:port`; empty: the hybrid clock runs on its logical part alone.
    pub ntp_servers: Vec<String>,
    /// How often the servers are asked.
    pub ntp_interval_ms: u64,
    /// How long one answer may take.
    pub ntp_timeout_ms: u64,
    /// Above this offset from NTP time the node warns.
    pub max_drift_ms: u64,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            ntp_servers: Vec::new(),
            ntp_interval_ms: 60_000,
            ntp_timeout_ms: 1_000,
            max_drift_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest file accepted by an upload.
    pub max_file_bytes: u64,
    /// Uploads one node runs at once; more are refused with 429.
    pub max_concurrent_uploads: u32,
    /// Longest an upload or download may take; a download still running then is cut.
    pub transfer_timeout_ms: u64,
    /// Downloads one node serves at once; more are refused with 429 (each holds a few chunks in
    /// memory).
    pub max_concurrent_downloads: u32,
    /// A download whose client accepts no byte for this long is cut and its slot freed.
    pub download_stall_timeout_ms: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_file_bytes: 1 << 30,
            max_concurrent_uploads: 4,
            transfer_timeout_ms: 3_600_000,
            max_concurrent_downloads: 16,
            download_stall_timeout_ms: 30_000,
        }
    }
}

impl FilesConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        range("files.max_file_bytes", self.max_file_bytes, 1, 1 << 40)?;
        range(
            "files.max_concurrent_uploads",
            u64::from(self.max_concurrent_uploads),
            1,
            1024,
        )?;
        range(
            "files.transfer_timeout_ms",
            self.transfer_timeout_ms,
            1_000,
            86_400_000,
        )?;
        range(
            "files.max_concurrent_downloads",
            u64::from(self.max_concurrent_downloads),
            1,
            1024,
        )?;
        range(
            "files.download_stall_timeout_ms",
            self.download_stall_timeout_ms,
            100,
            3_600_000,
        )
    }
}

/// Messages between node processes (Raft frames, heartbeats): where the cluster secret that
/// authenticates them comes from, and their limits (see `peer_auth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    /// File holding the cluster secret (32 to 1024 printable ASCII bytes, no spaces), relative to
    /// the config file's folder. Unset: `<data_dir>/cluster.secret`, generated by the first node
    /// that starts (copy it to every machine's data folder when nodes run on several machines).
    pub secret_file: Option<String>,
    /// Largest Raft frame accepted; a longer declared length is refused before anything is
    /// allocated.
    pub max_frame_bytes: u64,
    /// A message whose timestamp is further than this from the receiver's clock is refused.
    pub replay_window_ms: u64,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            secret_file: None,
            max_frame_bytes: 4 << 20,
            replay_window_ms: 30_000,
        }
    }
}

impl PeersConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .secret_file
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            return Err(invalid("peers.secret_file", "must not be empty"));
        }
        range(
            "peers.max_frame_bytes",
            self.max_frame_bytes,
            64 << 10,
            64 << 20,
        )?;
        range(
            "peers.replay_window_ms",
            self.replay_window_ms,
            1_000,
            600_000,
        )
    }
}

/// Request traces (`RC.SET|GET|DEL ... TRACE`): how many requests are traced without asking,
/// and the caps of each node's ring of traces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Requests traced per million without `TRACE` (0: only those asked; 1000000: all).
    pub sample_per_million: u64,
    /// Traces a node keeps (the oldest go first).
    pub max_traces: u64,
    /// Bytes of traces (as JSON) a node keeps.
    pub max_bytes: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            sample_per_million: 0,
            max_traces: crate::trace::DEFAULT_MAX_TRACES,
            max_bytes: crate::trace::DEFAULT_MAX_BYTES,
        }
    }
}

impl TraceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "trace.sample_per_million",
            self.sample_per_million,
            0,
            crate::trace::PER_MILLION,
        )?;
        range("trace.max_traces", self.max_traces, 0, 1_000_000)?;
        range("trace.max_bytes", self.max_bytes, 0, 1 << 30)
    }
}

/// The read-only Redis user for browsing with Redis Insight, created on every node's Redis at
/// start when a password is configured (no default password: unset, there is no such user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightConfig {
    /// The user's name.
    pub user: String,
    /// Its password (8 to 128 printable ASCII characters, no spaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Or a file holding it (relative to the config file's folder; surrounding whitespace
    /// ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            user: "insight".into(),
            password: None,
            password_file: None,
        }
    }
}

impl InsightConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.user.is_empty()
            || self.user.len() > 64
            || !self
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || self.user == crate::topology::INTERNAL_USER
            || self.user == "default"
        {
            return Err(invalid(
                "insight.user",
                "must be 1 to 64 characters from A-Z, a-z, 0-9, '-', '_', '.', and not 'default' or the internal user",
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(invalid(
                "insight.password",
                "give insight.password or insight.password_file, not both",
            ));
        }
        if let Some(pw) = &self.password {
            crate::config::check_password("insight.password", "insight.password length", pw)?;
        }
        if self
            .password_file
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            return Err(invalid("insight.password_file", "must not be empty"));
        }
        Ok(())
    }

    /// Whether the user is to be created (a password or a password file is configured).
    pub fn enabled(&self) -> bool {
        self.password.is_some() || self.password_file.is_some()
    }
}

/// The ACL rules of the Redis Insight user (what follows `ACL SETUSER <user>`): every key,
/// the read commands (`+@read`) and the connection ones, nothing dangerous (no `KEYS`, no
/// `CONFIG GET`, which would show passwords, no `CLIENT KILL`), then `INFO`, `MODULE LIST` and
/// by name the `RC.*` commands that only read: on Redis 7.0 module commands belong to no ACL
/// category, so `+@read` does not reach them, and no write or internal one is named.
pub fn insight_user_rules(password: &str) -> Vec<String> {
    let mut out: Vec<String> = [
        "reset",
        "on",
        "~*",
        "-@all",
        "+@read",
        "+@connection",
        "-@dangerous",
        "+info",
        "+module|list",
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    out.insert(2, format!(">{password}"));
    out.extend(
        INSIGHT_RC_COMMANDS
            .iter()
            .map(|c| format!("+{}", c.name().to_ascii_lowercase())),
    );
    out
}

/// The `RC.*` commands the Redis Insight user may call: those that only read.
pub const INSIGHT_RC_COMMANDS: [crate::rc::Command; 5] = [
    crate::rc::Command::Get,
    crate::rc::Command::Locate,
    crate::rc::Command::ReplicaGet,
    crate::rc::Command::ClusterGet,
    crate::rc::Command::Trace,
];

/// A file name safe to store and to send back in a header: 1 to 255 bytes of UTF-8, no path
/// separators, no control characters, not `.` or `..`.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "file name must be 1 to 255 bytes, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("file name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(format!(
            "file name must not contain {c:?} (no paths or control characters)"
        ));
    }
    Ok(())
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

fn range(field: &str, value: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value} is out of range {lo}..={hi}"),
        ))
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for k in &self.keys {
            if k.name.is_empty()
                || k.name.len() > 64
                || !k.name.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid(
                    "api.keys",
                    format!("name {:?} must be 1 to 64 printable characters", k.name),
                ));
            }
            if !names.insert(k.name.as_str()) {
                return Err(invalid(
                    "api.keys",
                    format!("duplicate key name {:?}", k.name),
                ));
            }
            if k.key.len() < 16 || k.key.len() > 256 || !k.key.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid(
                    "api.keys",
                    format!(
                        "key of {:?} must be 16 to 256 printable characters without spaces",
                        k.name
                    ),
                ));
            }
            if !keys.insert(k.key.as_str()) {
                return Err(invalid(
                    "api.keys",
                    format!("key of {:?} is used twice", k.name),
                ));
            }
        }
        range("api.rate_per_s", u64::from(self.rate_per_s), 1, 100_000)?;
        range("api.burst", u64::from(self.burst), 1, 100_000)?;
        range("api.body_limit_bytes", self.body_limit_bytes, 1024, 1 << 40)?;
        range(
            "api.request_timeout_ms",
            self.request_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "api.body_idle_timeout_ms",
            self.body_idle_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "api.auth_failure_burst",
            u64::from(self.auth_failure_burst),
            1,
            100_000,
        )?;
        range(
            "api.auth_failure_rate_per_s",
            u64::from(self.auth_failure_rate_per_s),
            1,
            100_000,
        )
    }

    /// The names of the development keys ([`DEV_KEYS`]) this config accepts.
    pub fn dev_keys_in_use(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter(|k| {
                DEV_KEYS.iter().any(|(_, dev, _)| {
                    crate::secret::constant_time_eq(dev.as_bytes(), k.key.as_bytes())
                })
            })
            .map(|k| k.name.as_str())
            .collect()
    }

    /// The key entry matching `presented`, compared in constant time against every key.
    pub fn authenticate(&self, presented: &str) -> Option<&ApiKey> {
        let mut found = None;
        for k in &self.keys {
            if crate::secret::constant_time_eq(k.key.as_bytes(), presented.as_bytes()) {
                found = Some(k);
            }
        }
        found
    }
}

impl Supervision {
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "supervision.restart_delay_ms",
            self.restart_delay_ms,
            0,
            600_000,
        )?;
        range(
            "supervision.max_restart_delay_ms",
            self.max_restart_delay_ms,
            self.restart_delay_ms.max(100),
            3_600_000,
        )?;
        range(
            "supervision.stable_after_ms",
            self.stable_after_ms,
            1_000,
            86_400_000,
        )?;
        range(
            "supervision.max_restarts_per_minute",
            u64::from(self.max_restarts_per_minute),
            1,
            1_000,
        )
    }

    /// The pause before the next restart after `failures` failures in a row (1 = the first
    /// crash): `restart_delay_ms` doubled per further failure, at most `max_restart_delay_ms`,
    /// and long enough that no more than `max_restarts_per_minute` restarts fall within any
    /// minute. `restart_ages_ms`: how long ago each earlier restart began.
    pub fn restart_delay(&self, failures: u32, restart_ages_ms: &[u64]) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        let backoff = self
            .restart_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_restart_delay_ms.max(self.restart_delay_ms));
        let mut recent: Vec<u64> = restart_ages_ms
            .iter()
            .copied()
            .filter(|age| *age < MINUTE_MS)
            .collect();
        let allowed = usize::try_from(self.max_restarts_per_minute.max(1)).unwrap_or(usize::MAX);
        if recent.len() < allowed {
            return backoff;
        }
        // Wait until enough of them are a minute old that one more fits.
        recent.sort_unstable_by(|a, b| b.cmp(a));
        let must_age = recent[recent.len() - allowed];
        backoff.max(MINUTE_MS - must_age)
    }
}

const MINUTE_MS: u64 = 60_000;

impl TimeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for s in &self.ntp_servers {
            let ok = s.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(invalid(
                    "time.ntp_servers",
                    format!("{s:?} is not host:port"),
                ));
            }
        }
        range(
            "time.ntp_interval_ms",
            self.ntp_interval_ms,
            1_000,
            86_400_000,
        )?;
        range("time.ntp_timeout_ms", self.ntp_timeout_ms, 10, 60_000)?;
        range("time.max_drift_ms", self.max_drift_ms, 1, 3_600_000)
    }
}

/// What a node's `/metrics` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Series per peer (heartbeat round trips, suspicion levels, heartbeats, replica round
    /// trips): their number grows with the square of the node count. Off in `--low-resource`.
    pub per_peer: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { per_peer: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert!(check_file_name("video.mp4").is_ok());
        assert!(check_file_name("résumé 2026.pdf").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a\nb",
            &"x".repeat(256),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        FilesConfig::default().validate().unwrap();
    }

    #[test]
    fn defaults_validate() {
        ApiConfig::default().validate().unwrap();
        Supervision::default().validate().unwrap();
        TimeConfig::default().validate().unwrap();
        PeersConfig::default().validate().unwrap();
    }

    #[test]
    fn trace_and_insight_settings_are_checked() {
        TraceConfig::default().validate().unwrap();
        let t = TraceConfig {
            sample_per_million: 1_000_001,
            ..TraceConfig::default()
        };
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("trace.sample_per_million"));
        let i = InsightConfig::default();
        i.validate().unwrap();
        assert!(
            !i.enabled(),
            "no password, no user: there is no default secret"
        );
        let bad = |c: InsightConfig| c.validate().unwrap_err().to_string();
        let with = |pw: Option<&str>, file: Option<&str>| InsightConfig {
            password: pw.map(String::from),
            password_file: file.map(String::from),
            ..InsightConfig::default()
        };
        assert!(with(Some("long-enough"), None).enabled());
        with(Some("long-enough"), None).validate().unwrap();
        assert!(with(None, Some("pw.txt")).enabled());
        assert!(bad(with(Some("short"), None)).contains("insight.password length"));
        assert!(bad(with(Some("has space x"), None)).contains("insight.password"));
        assert!(bad(with(Some("long-enough"), Some("f"))).contains("not both"));
        assert!(bad(with(None, Some(" "))).contains("insight.password_file"));
        for user in ["", "default", crate::topology::INTERNAL_USER, "a b"] {
            let c = InsightConfig {
                user: user.into(),
                ..InsightConfig::default()
            };
            assert!(bad(c).contains("insight.user"), "{user:?}");
        }
    }

    #[test]
    fn the_insight_user_reads_and_names_only_reading_rc_commands() {
        let rules = insight_user_rules("pw-12345678");
        assert_eq!(&rules[..4], ["reset", "on", ">pw-12345678", "~*"]);
        assert!(rules.contains(&"+rc.get".to_string()));
        assert!(rules.contains(&"+rc.trace".to_string()));
        assert!(rules.contains(&"+rc.replica.get".to_string()));
        // Every RC command named is one Redis flags read-only; none is internal-write.
        for c in INSIGHT_RC_COMMANDS {
            assert!(c.spec().flags.contains("readonly"), "{}", c.name());
        }
        assert!(!rules
            .iter()
            .any(|r| r == "+rc.set" || r == "+@all" || r == "+@write"));
        let dangerous = rules.iter().position(|r| r == "-@dangerous").unwrap();
        let info = rules.iter().position(|r| r == "+info").unwrap();
        assert!(
            info > dangerous,
            "INFO is dangerous in Redis 7: allowed after"
        );
    }

    #[test]
    fn peers_limits_are_checked() {
        let bad = |c: PeersConfig| c.validate().unwrap_err().to_string();
        let d = PeersConfig::default;
        assert!(bad(PeersConfig {
            secret_file: Some(" ".into()),
            ..d()
        })
        .contains("peers.secret_file"));
        assert!(bad(PeersConfig {
            max_frame_bytes: 1024,
            ..d()
        })
        .contains("peers.max_frame_bytes"));
        assert!(bad(PeersConfig {
            max_frame_bytes: 1 << 30,
            ..d()
        })
        .contains("peers.max_frame_bytes"));
        assert!(bad(PeersConfig {
            replay_window_ms: 10,
            ..d()
        })
        .contains("peers.replay_window_ms"));
        PeersConfig {
            secret_file: Some("secret.txt".into()),
            ..d()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let mut api = ApiConfig::default();
        api.keys[1].key = "short".into();
        assert!(api.validate().unwrap_err().to_string().contains("api.keys"));
        let mut api = ApiConfig::default();
        api.keys[1].key = api.keys[0].key.clone();
        assert!(api
            .validate()
            .unwrap_err()
            .to_string()
            .contains("used twice"));
        for ms in [99, 600_001] {
            let api = ApiConfig {
                body_idle_timeout_ms: ms,
                ..ApiConfig::default()
            };
            assert_eq!(
                api.validate().unwrap_err().to_string(),
                format!("api.body_idle_timeout_ms: {ms} is out of range 100..=600000")
            );
        }
        let time = TimeConfig {
            ntp_servers: vec!["nohost".into()],
            ..TimeConfig::default()
        };
        assert!(time
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not host:port"));
    }

    #[test]
    fn restarts_back_off_doubling_to_the_cap_and_respect_the_minute() {
        let s = Supervision {
            restart_delay_ms: 1_000,
            max_restart_delay_ms: 10_000,
            max_restarts_per_minute: 3,
            ..Supervision::default()
        };
        let delays: Vec<u64> = (1..=6).map(|f| s.restart_delay(f, &[])).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(s.restart_delay(u32::MAX, &[]), 10_000);
        // Two restarts in the last minute: a third fits now.
        assert_eq!(s.restart_delay(1, &[5_000, 20_000]), 1_000);
        // Three: the next waits until the oldest is a minute old.
        assert_eq!(s.restart_delay(1, &[5_000, 20_000, 45_000]), 15_000);
        assert_eq!(s.restart_delay(1, &[1_000, 2_000, 3_000, 4_000]), 57_000);
        // Older than a minute: not counted.
        assert_eq!(s.restart_delay(2, &[61_000, 70_000, 90_000]), 2_000);
        // The window never shortens the backoff.
        assert_eq!(s.restart_delay(5, &[1_000, 2_000, 59_500]), 10_000);
        Supervision::default().validate().unwrap();
        let bad = Supervision {
            restart_delay_ms: 5_000,
            max_restart_delay_ms: 1_000,
            ..Supervision::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("supervision.max_restart_delay_ms"));
        let never = Supervision {
            max_restarts_per_minute: 0,
            ..Supervision::default()
        };
        assert!(never.validate().is_err());
    }

    #[test]
    fn dev_keys_are_named() {
        assert_eq!(
            ApiConfig::default().dev_keys_in_use(),
            ["dev-admin", "dev-read"]
        );
        let mut api = ApiConfig::default();
        api.keys[0].key = "a-key-of-our-own-0123".into();
        assert_eq!(api.dev_keys_in_use(), ["dev-read"]);
        api.keys[1].name = "renamed".into();
        assert_eq!(api.dev_keys_in_use(), ["renamed"], "found by key, not name");
        api.keys.clear();
        assert!(api.dev_keys_in_use().is_empty());
        let bad = ApiConfig {
            auth_failure_burst: 0,
            ..ApiConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("api.auth_failure_burst"));
    }

    #[test]
    fn download_limits_are_checked() {
        let bad = |c: FilesConfig| c.validate().unwrap_err().to_string();
        let d = FilesConfig::default;
        assert!(bad(FilesConfig {
            max_concurrent_downloads: 0,
            ..d()
        })
        .contains("files.max_concurrent_downloads"));
        assert!(bad(FilesConfig {
            download_stall_timeout_ms: 5,
            ..d()
        })
        .contains("files.download_stall_timeout_ms"));
    }

    #[test]
    fn authenticate_finds_the_role() {
        let api = ApiConfig::default();
        assert_eq!(
            api.authenticate("dev-admin-key-change-me").unwrap().role,
            Role::Admin
        );
        assert_eq!(
            api.authenticate("dev-read-key-change-me").unwrap().role,
            Role::Read
        );
        assert!(api.authenticate("dev-read-key-change-m").is_none());
        assert!(api.authenticate("").is_none());
    }
}
