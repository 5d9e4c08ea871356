//! The `rcluster` crate: the node process (`node`), its HTTP API (`web*`), the API's data types
//! (`api`), and the command-line tool (`cli`, `client`, `members_cli`, `status`, `up`). `main.rs`
//! parses the command line and calls in here; tests use the router in-process.

pub mod api;
pub mod node;

// The command-line tool.
pub mod cli;
mod client;
pub mod members_cli;
pub mod status;
pub mod up;

mod files;
mod memory;
mod metrics;
mod openapi;
mod paths;
mod probe;
mod supervise;
mod web;
mod web_data;
mod web_members;

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
