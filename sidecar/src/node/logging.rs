//! The node process's log: one line per event on stderr (which `rcluster up` sends to the node's
//! `node.log`), each starting with an RFC 3339 timestamp (UTC) and a level, then the node's id
//! and the message. The level comes from the environment (`RCLUSTER_LOG`, else `RUST_LOG`: a
//! level or `tracing` filter directives), else from the config's `log_level`.

use tracing_subscriber::EnvFilter;

/// The environment variables that set the filter, in the order they win.
const ENV_VARS: [&str; 2] = ["RCLUSTER_LOG", "RUST_LOG"];

/// Starts logging at `config_level` unless the environment says otherwise; an environment
/// filter that does not parse is reported and the config's level used. Once per process (later
/// calls change nothing).
pub fn init(config_level: &str) {
    let from_env = ENV_VARS.iter().find_map(|name| {
        let value = std::env::var(name).ok()?;
        (!value.trim().is_empty()).then_some((*name, value))
    });
    let (filter, rejected) = match from_env {
        Some((name, spec)) => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(config_level),
                Some(format!("{name}={spec:?}: {e}")),
            ),
        },
        None => (EnvFilter::new(config_level), None),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init()
        .is_ok();
    if let (true, Some(why)) = (installed, rejected) {
        tracing::warn!("ignoring the log filter {why}; using log_level {config_level}");
    }
}
