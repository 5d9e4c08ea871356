//! The error answer every route gives (`{"error":{"code","message"}}`) and its stable codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer of the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

/// Declares the codes once: the enum, the list of all of them and their names (which serde
/// derives too; a test checks that both agree).
macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $text:literal,)*) => {
        /// Stable machine-readable error code: clients match on it; once published, a code keeps
        /// its meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as it appears in an answer.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }
        }
    };
}

codes! {
    /// A malformed request (query, path, header or body), or an argument the module refused.
    BadRequest = "BAD_REQUEST",
    /// `PUT /api/cluster/quorum` with n, w, r out of range.
    BadQuorum = "BAD_QUORUM",
    /// `PUT /api/cluster/settings` with a value out of range.
    BadSettings = "BAD_SETTINGS",
    /// `POST /api/nodes` with a bad id, host or ports.
    BadNode = "BAD_NODE",
    /// Not a file id (32 hex characters).
    BadId = "BAD_ID",
    /// A file name that is missing or not allowed.
    BadName = "BAD_NAME",
    /// A multipart upload without a readable file part.
    BadMultipart = "BAD_MULTIPART",
    /// The upload's body broke off.
    UploadAborted = "UPLOAD_ABORTED",
    /// The upload's body was not as long as its Content-Length.
    LengthMismatch = "LENGTH_MISMATCH",
    /// No API key, or an unknown one.
    Unauthorized = "UNAUTHORIZED",
    /// A read key where an admin key is needed.
    Forbidden = "FORBIDDEN",
    /// No such endpoint, key or file.
    NotFound = "NOT_FOUND",
    /// No node with this id in the cluster.
    UnknownNode = "UNKNOWN_NODE",
    /// `DELETE /api/nodes/{id}` for a node that is not a member.
    NotAMember = "NOT_A_MEMBER",
    /// The route exists, not with this method.
    MethodNotAllowed = "METHOD_NOT_ALLOWED",
    /// The request ran over api.request_timeout_ms, or its body stalled for
    /// api.body_idle_timeout_ms.
    RequestTimeout = "REQUEST_TIMEOUT",
    /// The upload ran over files.transfer_timeout_ms.
    Timeout = "TIMEOUT",
    /// The stored record holds another type or is damaged.
    Conflict = "CONFLICT",
    /// `POST /api/nodes` for an id that is a member at another address.
    AlreadyMember = "ALREADY_MEMBER",
    /// `POST /api/nodes` for a node that does not answer.
    NodeNotRunning = "NODE_NOT_RUNNING",
    /// `POST /api/nodes`: another node answers at that address.
    NodeMismatch = "NODE_MISMATCH",
    /// `POST /api/nodes`: the node answers but its Redis is not up.
    NodeNotReady = "NODE_NOT_READY",
    /// `DELETE /api/nodes/{id}` would leave fewer nodes than n.
    TooFewNodes = "TOO_FEW_NODES",
    /// The request body, value or file is larger than its limit (the message names the
    /// setting: api.body_limit_bytes, limits.max_value_bytes or files.max_file_bytes).
    TooLarge = "TOO_LARGE",
    /// A JSON body without `Content-Type: application/json`.
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE",
    /// The range does not fit the file.
    BadRange = "BAD_RANGE",
    /// A JSON body of the wrong shape (the message names the field and what it must be).
    UnprocessableEntity = "UNPROCESSABLE_ENTITY",
    /// Too many requests for this key (or client address): see Retry-After.
    RateLimited = "RATE_LIMITED",
    /// files.max_concurrent_uploads uploads already run on this node: see Retry-After.
    TooManyUploads = "TOO_MANY_UPLOADS",
    /// files.max_concurrent_downloads downloads already run on this node: see Retry-After.
    TooManyDownloads = "TOO_MANY_DOWNLOADS",
    /// A bug or an unexpected failure on this node.
    Internal = "INTERNAL",
    /// A file's stored metadata is unreadable.
    CorruptMetadata = "CORRUPT_METADATA",
    /// Stopping, starting or restarting the node's Redis failed.
    ActionFailed = "ACTION_FAILED",
    /// The storage answered with an unexpected error.
    StorageFailed = "STORAGE_FAILED",
    /// No copy of a chunk matches the SHA-256 recorded at upload (or a write's digest did not
    /// match): the bytes are not served.
    Checksum = "CHECKSUM",
    /// Another node did not answer a forwarded request.
    NodeUnreachable = "NODE_UNREACHABLE",
    /// Fewer replicas answered than the quorum needs.
    NoQuorum = "NO_QUORUM",
    /// The node's module or Redis cannot serve yet (no topology, loading its data, busy).
    NotReady = "NOT_READY",
    /// The node's Redis does not answer.
    RedisUnavailable = "REDIS_UNAVAILABLE",
    /// Raft has not started on this node yet.
    RaftNotReady = "RAFT_NOT_READY",
    /// No Raft leader is known right now.
    NoLeader = "NO_LEADER",
    /// The change did not commit in time; the request can be repeated.
    NotCommitted = "NOT_COMMITTED",
    /// A chunk is on no reachable replica.
    ChunkMissing = "CHUNK_MISSING",
    /// The node's Redis is out of memory (maxmemory).
    InsufficientStorage = "INSUFFICIENT_STORAGE",
    /// Another node answered a forwarded request with this error (its status is kept).
    ForwardedError = "FORWARDED_ERROR",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            let back: ErrorCode = serde_json::from_value(json).unwrap();
            assert_eq!(back, *code);
        }
        let body = ErrorBody::new(ErrorCode::NoQuorum, "2 of 3");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"NO_QUORUM","message":"2 of 3"}}"#
        );
    }
}
