//! The `rcluster` crate, by program: the node process (`node`: supervision, heartbeats, Raft,
//! file transfers, metrics), its HTTP API (`http`), the API's data types (`api`, shared with the
//! CLI), the consistency checker's runner (`check`) and the guided scenarios (`demo`), both for
//! the CLI and the API, and the command-line tool (`cli`). `client` (a small HTTP client),
//! `paths`, `probe` and `supervise` serve both the node and the CLI. `main.rs` parses the command
//! line and calls in here; tests use the router in-process. Folders depend one way: `http` on
//! `node`, `check`, `demo` and `api`, `check` on `node` and `api`, `demo` and `node` on `api`, the
//! CLI on all of them; the server never uses a CLI type.

pub mod api;
pub mod check;
pub mod demo;
pub mod http;
pub mod node;
pub mod paths;
pub mod probe;
pub mod supervise;

// The command-line tool.
pub mod cli;
pub mod client;

/// Runs a node serving the HTTP API (`rcluster node --id ..`).
pub async fn run_node(args: node::NodeArgs) -> Result<(), node::NodeError> {
    node::run(args, http::router).await
}
