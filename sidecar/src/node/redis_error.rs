//! Why a command to this node's own Redis failed, typed: no connection, no answer in time, an
//! error reply of the module (with its `Code`) or of Redis itself (OOM, LOADING, ...), or an
//! answer that makes no sense. Callers decide on the variant, never on the words of a message.

use std::time::Duration;

use rcluster_domain::codes::{Code, CodedError};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// No connection was made, or it broke (refused, socket gone, Redis restarting).
    #[error("this node's redis is unreachable: {0}")]
    Unreachable(String),
    /// No answer within the command's bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An error reply of the module (`RC.*`), code first.
    #[error("{0}")]
    Module(CodedError),
    /// An error reply of Redis itself, with a code that is none of the module's.
    #[error("{code} {message}")]
    Reply { code: ReplyCode, message: String },
    /// An answer that is no valid reply to the command.
    #[error("{0}")]
    Protocol(String),
}

/// The codes of Redis's own error replies that callers act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyCode {
    /// Over `maxmemory`: writes are refused.
    Oom,
    /// Loading its data set after a start.
    Loading,
    /// Running a script or a module command that blocks it.
    Busy,
    /// A replica that refuses writes.
    ReadOnly,
    /// Any other code, as sent.
    Other(String),
}

impl ReplyCode {
    fn parse(code: &str) -> ReplyCode {
        match code {
            "OOM" => ReplyCode::Oom,
            "LOADING" => ReplyCode::Loading,
            "BUSY" => ReplyCode::Busy,
            "READONLY" => ReplyCode::ReadOnly,
            other => ReplyCode::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplyCode::Oom => "OOM",
            ReplyCode::Loading => "LOADING",
            ReplyCode::Busy => "BUSY",
            ReplyCode::ReadOnly => "READONLY",
            ReplyCode::Other(code) => code,
        })
    }
}

impl RedisError {
    /// An error reply from its code and message (as RESP splits them: code, space, message).
    pub fn reply(code: &str, message: &str) -> RedisError {
        let message = message.trim().to_string();
        match Code::parse(code) {
            Some(code) => RedisError::Module(CodedError::new(code, message)),
            None => RedisError::Reply {
                code: ReplyCode::parse(code),
                message,
            },
        }
    }

    /// An error reply line without its leading `-`.
    pub fn reply_line(line: &str) -> RedisError {
        let (code, message) = line.split_once(' ').unwrap_or((line, ""));
        RedisError::reply(code, message)
    }
}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> RedisError {
        if e.is_timeout() {
            // The client library's own bound (ours is the caller's `Timeout(bound)`).
            return RedisError::Unreachable(e.to_string());
        }
        if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
            return RedisError::Unreachable(e.to_string());
        }
        match (e.kind(), e.code()) {
            // Only answers from the server carry a code; the client's own errors have none.
            (_, Some(code)) => RedisError::reply(code, e.detail().unwrap_or_default()),
            _ => RedisError::Protocol(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_module_codes_and_redis_codes() {
        assert_eq!(
            RedisError::reply_line("NOQUORUM 1 of 2 replicas answered"),
            RedisError::Module(CodedError::new(Code::NoQuorum, "1 of 2 replicas answered"))
        );
        assert_eq!(
            RedisError::reply_line("OOM command not allowed when used memory > 'maxmemory'."),
            RedisError::Reply {
                code: ReplyCode::Oom,
                message: "command not allowed when used memory > 'maxmemory'.".into()
            }
        );
        assert_eq!(
            RedisError::reply_line("LOADING"),
            RedisError::Reply {
                code: ReplyCode::Loading,
                message: String::new()
            }
        );
        // A message that mentions a code is not that code.
        assert_eq!(
            RedisError::reply_line("ERR the reply was NOQUORUM"),
            RedisError::Module(CodedError::new(Code::Arity, "the reply was NOQUORUM"))
        );
        let e = RedisError::reply_line("WEIRD x");
        assert_eq!(e.to_string(), "WEIRD x");
    }

    #[test]
    fn client_errors_are_typed() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            RedisError::from(refused),
            RedisError::Unreachable(_)
        ));
        let server = |line: &[u8]| {
            redis::parse_redis_value(line)
                .and_then(redis::Value::extract_error)
                .unwrap_err()
        };
        assert_eq!(
            RedisError::from(server(b"-TOOLARGE value of 10 bytes over 5\r\n")),
            RedisError::Module(CodedError::new(Code::TooLarge, "value of 10 bytes over 5"))
        );
        assert_eq!(
            RedisError::from(server(
                b"-LOADING Redis is loading the dataset in memory\r\n"
            )),
            RedisError::Reply {
                code: ReplyCode::Loading,
                message: "Redis is loading the dataset in memory".into()
            }
        );
        assert_eq!(
            RedisError::from(server(b"-OOM over maxmemory\r\n")),
            RedisError::Reply {
                code: ReplyCode::Oom,
                message: "over maxmemory".into()
            }
        );
        let typed = redis::RedisError::from((redis::ErrorKind::TypeError, "not a string"));
        assert!(matches!(RedisError::from(typed), RedisError::Protocol(_)));
    }
}
