//! The CLI's one error type: a message for the user and the exit code it ends with (2: bad
//! input, 1: failure). Errors of the node-side modules the CLI calls become `CliError` here.

use crate::node::NodeError;
use crate::paths::PathsError;
use crate::supervise::LogError;

/// An error of a CLI command, printed as `error: <message>` before exiting.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    /// Bad arguments, a bad config, or a request the cluster refused (4xx): exit code 2.
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

    /// The process exit code: 2 for bad input, 1 for a failure.
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

impl std::error::Error for CliError {}

impl From<PathsError> for CliError {
    fn from(e: PathsError) -> Self {
        CliError {
            bad_input: e.is_bad_input(),
            message: e.to_string(),
        }
    }
}

impl From<LogError> for CliError {
    fn from(e: LogError) -> Self {
        CliError::failed(e.to_string())
    }
}

impl From<NodeError> for CliError {
    fn from(e: NodeError) -> Self {
        CliError {
            bad_input: e.is_bad_input(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_and_failures_1() {
        assert_eq!(CliError::input("x").exit_code(), 2);
        assert_eq!(CliError::failed("x").exit_code(), 1);
        assert_eq!(CliError::failed("no node").to_string(), "no node");
    }

    #[test]
    fn node_side_errors_keep_their_message_and_class() {
        let missing = CliError::from(PathsError::NoModule("/x.so".into()));
        assert!(
            missing.bad_input && missing.message.contains("/x.so"),
            "{missing}"
        );
        let exe = CliError::from(PathsError::CurrentExe(std::io::Error::other("gone")));
        assert!(!exe.bad_input && exe.message.contains("gone"), "{exe}");
    }
}
