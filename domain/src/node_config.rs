//! The node-process sections of the cluster config: HTTP API keys and limits, Redis supervision,
//! and time (NTP) settings, with their defaults and validation.

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
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keys: vec![
                ApiKey {
                    name: "dev-admin".into(),
                    key: "dev-admin-key-change-me".into(),
                    role: Role::Admin,
                },
                ApiKey {
                    name: "dev-read".into(),
                    key: "dev-read-key-change-me".into(),
                    role: Role::Read,
                },
            ],
            rate_per_s: 50,
            burst: 100,
            body_limit_bytes: 1 << 20,
            request_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervision {
    /// Restart the node's Redis when it exits without being asked to.
    pub restart_on_crash: bool,
    /// Pause before such a restart.
    pub restart_delay_ms: u64,
    /// At most this many crash restarts per minute; then the node stays down until started.
    pub max_restarts_per_minute: u32,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            restart_on_crash: true,
            restart_delay_ms: 1_000,
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
    /// Longest an upload or download may take.
    pub transfer_timeout_ms: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_file_bytes: 1 << 30,
            max_concurrent_uploads: 4,
            transfer_timeout_ms: 3_600_000,
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
        )
    }
}

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
        )
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
            "supervision.max_restarts_per_minute",
            u64::from(self.max_restarts_per_minute),
            0,
            1_000,
        )
    }
}

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
