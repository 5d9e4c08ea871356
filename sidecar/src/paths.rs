//! Loading the cluster config file and resolving what it points to: the data folder and the
//! Redis config (both relative to the config file's folder), the module library, and the nodes
//! that joined after the config was written (their `member.json` in the data folder).

use std::path::{Path, PathBuf};

use rcluster_domain::config::{self, ClusterConfig, ConfigError, NodeConfig};

/// Why the config or the module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: {source}", path.display())]
    Invalid { path: PathBuf, source: ConfigError },
    #[error("config {}: {source}", path.display())]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: redis_conf {} does not exist", path.display(), redis_conf.display())]
    NoRedisConf { path: PathBuf, redis_conf: PathBuf },
    #[error("cannot find this executable: {0}")]
    CurrentExe(std::io::Error),
    #[error("module {} not found: build it with `cargo build --release` or pass --module", .0.display())]
    NoModule(PathBuf),
    #[error("module {}: {source}", path.display())]
    ModulePath {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PathsError {
    /// True when the user can fix it by giving other paths (false: this machine failed).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, PathsError::CurrentExe(_))
    }
}

/// A loaded, validated config with its paths made absolute.
pub struct Loaded {
    pub config: ClusterConfig,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub redis_conf: PathBuf,
}

/// Reads and validates the config file alone (what a client of the cluster needs).
pub fn read_config(path: &Path) -> Result<ClusterConfig, PathsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PathsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |source| PathsError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let text = config::expand_vars(&text, |name| std::env::var(name).ok()).map_err(invalid)?;
    config::parse(&text).map_err(invalid)
}

pub fn load(path: &Path, low_resource: bool) -> Result<Loaded, PathsError> {
    let config = read_config(path)?;
    let config = if low_resource {
        config.low_resource()
    } else {
        config
    };
    let config_path = std::path::absolute(path).map_err(|source| PathsError::Path {
        path: path.to_path_buf(),
        source,
    })?;
    let base = config_path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let data_dir = base.join(&config.data_dir);
    let redis_conf = base.join(&config.redis_conf);
    if !redis_conf.is_file() {
        return Err(PathsError::NoRedisConf {
            path: path.to_path_buf(),
            redis_conf,
        });
    }
    Ok(Loaded {
        config,
        config_path,
        data_dir,
        redis_conf,
    })
}

/// The module library: the one given, or `librcluster_module.so` beside this executable
/// (where `cargo build` puts both).
pub fn module(given: Option<PathBuf>) -> Result<PathBuf, PathsError> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(PathsError::CurrentExe)?
            .with_file_name("librcluster_module.so"),
    };
    if !path.is_file() {
        return Err(PathsError::NoModule(path));
    }
    std::path::absolute(&path).map_err(|source| PathsError::ModulePath { path, source })
}

/// Where a node that is not in the config saved its address (`rcluster node --id .. --*-port`).
pub fn member_file(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(id).join("member.json")
}

/// The marker a node writes when it learns it left the cluster: `rcluster up` does not start it.
pub fn left_file(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(id).join("left")
}

/// The marker a node process writes in its data folder before an injected crash kills it: the
/// Unix ms at which `rcluster up` starts it again.
pub fn crash_marker(node_dir: &Path) -> PathBuf {
    node_dir.join("crashed-until")
}

/// Where `rcluster node add` records the pid of a node it started.
pub fn pid_file(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(id).join("node.pid")
}

/// The pid `rcluster node add` recorded for node `id`, if any.
pub fn read_pid(data_dir: &Path, id: &str) -> Option<i32> {
    std::fs::read_to_string(pid_file(data_dir, id))
        .ok()
        .and_then(|p| p.trim().parse().ok())
}

/// The nodes that joined on this machine after the config was written and did not leave:
/// every `<data_dir>/<id>/member.json` whose id is not in the config, sorted by id.
pub fn joined_nodes(loaded: &Loaded) -> Vec<NodeConfig> {
    let mut out: Vec<NodeConfig> = std::fs::read_dir(&loaded.data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let id = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(member_file(&loaded.data_dir, &id)).ok()?;
            let node: NodeConfig = serde_json::from_slice(&bytes).ok()?;
            (node.id == id && loaded.config.node(&id).is_none()).then_some(node)
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
