//! The `rcluster` crate, by program: the node process (`node`: supervision, heartbeats, Raft,
//! file transfers, metrics), its HTTP API (`http`), the API's data types (`api`, shared with the
//! CLI), and the command-line tool (`cli`, `client`, `members_cli`, `status`, `up`). `paths`,
//! `probe` and `supervise` serve both the node and the CLI. `main.rs` parses the command line
//! and calls in here; tests use the router in-process. Folders depend one way: `http` on `node`
//! and `api`, `node` on `api`, the CLI on all three; the server never uses a CLI type.

pub mod api;
pub mod http;
pub mod node;
pub mod paths;
pub mod probe;
pub mod supervise;

// The command-line tool.
pub mod cli;
pub mod client;
pub mod members_cli;
pub mod status;
pub mod up;

/// Runs a node serving the HTTP API (`rcluster node --id ..`).
pub async fn run_node(args: node::NodeArgs) -> Result<(), node::NodeError> {
    node::run(args, http::router).await
}

/// Errors of the CLI: a message for the user and the exit code (2: bad input, 1: failure).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub bad_input: bool,
}

impl CliError {
    pub fn input(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            bad_input: true,
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            bad_input: false,
        }
    }
    pub fn exit_code(&self) -> u8 {
        if self.bad_input {
            2
        } else {
            1
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<paths::PathsError> for CliError {
    fn from(e: paths::PathsError) -> Self {
        CliError {
            bad_input: e.is_bad_input(),
            message: e.to_string(),
        }
    }
}

impl From<supervise::LogError> for CliError {
    fn from(e: supervise::LogError) -> Self {
        CliError::failed(e.to_string())
    }
}

impl From<node::NodeError> for CliError {
    fn from(e: node::NodeError) -> Self {
        CliError {
            bad_input: e.is_bad_input(),
            message: e.to_string(),
        }
    }
}
