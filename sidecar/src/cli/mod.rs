//! The command-line tool: every `rcluster` command but running a node. `up` launches a local
//! cluster (and starts a node again after an injected crash of its process); `status`,
//! `put|get|del`, `file ...`, `fault ...`, `node add|remove` and `check` talk to a running one
//! over its HTTP API, all through one connection ([`conn::Conn`]: the config's nodes in order,
//! one API key by role, one rule for moving on to the next node). Errors are [`CliError`]s,
//! whose exit code says bad input (2) or failure (1).

pub mod check;
pub mod conn;
pub mod demo;
mod error;
pub mod fault;
pub mod file;
pub mod http_client;
pub mod kv;
pub mod members;
pub mod prometheus;
pub mod status;
mod text;
pub mod trace;
pub mod up;

pub use error::CliError;

/// The exit status paragraph of the data commands' `--help`.
const EXIT_CODES: &str = "Exit status: 0 success; 2 bad input (bad arguments, or the node \
    refused the request with a 4xx answer such as 400, 404 or 413); 1 failure (no node \
    reachable, a server error, a timeout, a checksum mismatch or a cut transfer).";
