//! The one error type of the HTTP API: an [`ErrorCode`] and a message, answered as
//! `{"error":{"code","message"}}` with the status [`status_of`] gives the code. Failures of the
//! layers below (this node's Redis and module, file transfers, Raft) become API errors here and
//! nowhere else, so every route maps a module's `NOQUORUM` or Redis's `OOM` the same way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rcluster_domain::codes::Code;

use crate::api::{ErrorBody, ErrorCode};
use crate::node::files::TransferError;
use crate::node::raft::RaftError;
use crate::node::redis_error::{RedisError, ReplyCode};

/// An error answer: a stable code and a message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// For FORWARDED_ERROR: the status the other node answered with.
    forwarded_status: Option<StatusCode>,
    retry_after_s: Option<u64>,
    /// For 416: the size to name in `Content-Range: bytes */<size>`.
    content_range_size: Option<u64>,
}

/// The status of every code but FORWARDED_ERROR, which keeps the other node's status.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::BadRequest
        | C::BadQuorum
        | C::BadSettings
        | C::BadNode
        | C::BadId
        | C::BadName
        | C::BadMultipart
        | C::UploadAborted
        | C::LengthMismatch => StatusCode::BAD_REQUEST,
        C::Unauthorized => StatusCode::UNAUTHORIZED,
        C::Forbidden => StatusCode::FORBIDDEN,
        C::NotFound | C::UnknownNode | C::NotAMember => StatusCode::NOT_FOUND,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::RequestTimeout | C::Timeout => StatusCode::REQUEST_TIMEOUT,
        C::Conflict
        | C::AlreadyMember
        | C::NodeNotRunning
        | C::NodeMismatch
        | C::NodeNotReady
        | C::TooFewNodes => StatusCode::CONFLICT,
        C::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::BadRange => StatusCode::RANGE_NOT_SATISFIABLE,
        C::UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
        C::RateLimited | C::TooManyUploads | C::TooManyDownloads => StatusCode::TOO_MANY_REQUESTS,
        C::Internal | C::CorruptMetadata | C::ActionFailed => StatusCode::INTERNAL_SERVER_ERROR,
        C::StorageFailed | C::Checksum | C::NodeUnreachable | C::ForwardedError => {
            StatusCode::BAD_GATEWAY
        }
        C::NoQuorum
        | C::NotReady
        | C::RedisUnavailable
        | C::RaftNotReady
        | C::NoLeader
        | C::NotCommitted
        | C::ChunkMissing => StatusCode::SERVICE_UNAVAILABLE,
        C::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
    }
}

/// The code of an error answer that no handler made (a layer's or an extractor's), by status.
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::UnprocessableEntity,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        s if s.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            forwarded_status: None,
            retry_after_s: None,
            content_range_size: None,
        }
    }

    /// Another node's error answer to a forwarded request, with its status.
    pub fn forwarded(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            forwarded_status: Some(status),
            ..ApiError::new(ErrorCode::ForwardedError, message)
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status of the answer.
    pub fn status(&self) -> StatusCode {
        match (self.code, self.forwarded_status) {
            (ErrorCode::ForwardedError, Some(status)) => status,
            (code, _) => status_of(code),
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn with_content_range(mut self, size: u64) -> Self {
        self.content_range_size = Some(size);
        self
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(size) = self.content_range_size {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        response
    }
}

/// The API code of a failed command to this node's Redis: the one mapping of module codes and
/// Redis's own error replies, for the kv and the file routes alike.
pub fn redis_code(e: &RedisError) -> ErrorCode {
    match e {
        RedisError::Unreachable(_) | RedisError::Timeout(_) => ErrorCode::RedisUnavailable,
        RedisError::Module(coded) => match coded.code {
            // Our own command was refused as malformed: the request's key, value or quorum.
            Code::Arity | Code::BadArg => ErrorCode::BadRequest,
            Code::TooLarge => ErrorCode::TooLarge,
            Code::Checksum => ErrorCode::Checksum,
            Code::WrongType | Code::Corrupt => ErrorCode::Conflict,
            Code::NoQuorum => ErrorCode::NoQuorum,
            Code::NotReady => ErrorCode::NotReady,
            Code::ClockSkew | Code::Internal => ErrorCode::StorageFailed,
        },
        RedisError::Reply { code, .. } => match code {
            ReplyCode::Oom => ErrorCode::InsufficientStorage,
            ReplyCode::Loading | ReplyCode::Busy => ErrorCode::NotReady,
            ReplyCode::ReadOnly | ReplyCode::Other(_) => ErrorCode::StorageFailed,
        },
        RedisError::Protocol(_) => ErrorCode::StorageFailed,
    }
}

impl From<RedisError> for ApiError {
    fn from(e: RedisError) -> Self {
        ApiError::new(redis_code(&e), e.to_string())
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> Self {
        let code = match &e {
            TransferError::BadId(_) => ErrorCode::BadId,
            TransferError::TooLarge { .. } => ErrorCode::TooLarge,
            TransferError::LengthMismatch { .. } => ErrorCode::LengthMismatch,
            TransferError::Redis { source, .. } => redis_code(source),
            TransferError::NoDigest(_) => ErrorCode::StorageFailed,
            TransferError::ChunkMissing { .. } => ErrorCode::ChunkMissing,
            TransferError::CorruptMetadata { .. } => ErrorCode::CorruptMetadata,
            TransferError::Internal(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<RaftError> for ApiError {
    fn from(e: RaftError) -> Self {
        ApiError::new(
            ErrorCode::NotCommitted,
            format!("{e}; the request can be repeated"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcluster_domain::codes::CodedError;
    use std::time::Duration;

    fn module(code: Code) -> RedisError {
        RedisError::Module(CodedError::new(code, "m"))
    }

    #[test]
    fn every_module_code_has_one_answer() {
        let expect = |code: Code| match code {
            Code::Arity => (400, "BAD_REQUEST"),
            Code::BadArg => (400, "BAD_REQUEST"),
            Code::TooLarge => (413, "TOO_LARGE"),
            Code::Checksum => (502, "CHECKSUM"),
            Code::WrongType => (409, "CONFLICT"),
            Code::Corrupt => (409, "CONFLICT"),
            Code::ClockSkew => (502, "STORAGE_FAILED"),
            Code::NoQuorum => (503, "NO_QUORUM"),
            Code::NotReady => (503, "NOT_READY"),
            Code::Internal => (502, "STORAGE_FAILED"),
        };
        for code in Code::ALL {
            let e = ApiError::from(module(code));
            assert_eq!(
                (e.status().as_u16(), e.code().as_str()),
                expect(code),
                "{code:?}"
            );
            assert_eq!(e.message(), format!("{} m", code.as_str()));
        }
    }

    #[test]
    fn redis_replies_and_connection_failures_have_one_answer() {
        let reply = |code: ReplyCode| RedisError::Reply {
            code,
            message: "x".into(),
        };
        let cases = [
            (reply(ReplyCode::Oom), 507, "INSUFFICIENT_STORAGE"),
            (reply(ReplyCode::Loading), 503, "NOT_READY"),
            (reply(ReplyCode::Busy), 503, "NOT_READY"),
            (reply(ReplyCode::ReadOnly), 502, "STORAGE_FAILED"),
            (
                reply(ReplyCode::Other("NOPERM".into())),
                502,
                "STORAGE_FAILED",
            ),
            (
                RedisError::Unreachable("refused".into()),
                503,
                "REDIS_UNAVAILABLE",
            ),
            (
                RedisError::Timeout(Duration::from_secs(1)),
                503,
                "REDIS_UNAVAILABLE",
            ),
            (RedisError::Protocol("?".into()), 502, "STORAGE_FAILED"),
        ];
        for (e, status, code) in cases {
            let shown = e.to_string();
            let api = ApiError::from(e);
            assert_eq!((api.status().as_u16(), api.code().as_str()), (status, code));
            assert_eq!(api.message(), shown);
        }
    }

    #[test]
    fn file_routes_map_module_errors_as_the_kv_routes_do() {
        for code in Code::ALL {
            let kv = ApiError::from(module(code));
            let file = ApiError::from(TransferError::Redis {
                what: "reading metadata".into(),
                source: module(code),
            });
            assert_eq!((file.status(), file.code()), (kv.status(), kv.code()));
            assert_eq!(
                file.message(),
                format!("reading metadata: {}", kv.message())
            );
        }
        let cases = [
            (TransferError::BadId("x".into()), 400, "BAD_ID"),
            (TransferError::TooLarge { max: 1 }, 413, "TOO_LARGE"),
            (
                TransferError::LengthMismatch {
                    got: 1,
                    declared: 2,
                },
                400,
                "LENGTH_MISMATCH",
            ),
            (TransferError::NoDigest("OK".into()), 502, "STORAGE_FAILED"),
            (
                TransferError::ChunkMissing {
                    id: "f".into(),
                    index: 0,
                },
                503,
                "CHUNK_MISSING",
            ),
            (
                TransferError::CorruptMetadata {
                    id: "f".into(),
                    reason: "r".into(),
                },
                500,
                "CORRUPT_METADATA",
            ),
            (TransferError::Internal("i".into()), 500, "INTERNAL"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(e);
            assert_eq!((api.status().as_u16(), api.code().as_str()), (status, code));
        }
    }

    #[test]
    fn every_code_has_an_error_status() {
        for code in ErrorCode::ALL {
            let status = ApiError::new(*code, "m").status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}"
            );
        }
        let forwarded = ApiError::forwarded(StatusCode::CONFLICT, "node n2 answered 409");
        assert_eq!(forwarded.status(), StatusCode::CONFLICT);
        assert_eq!(forwarded.code(), ErrorCode::ForwardedError);
        for status in [404, 405, 408, 413, 415, 422, 429] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_of(code_for_status(status)), status);
        }
        assert_eq!(
            code_for_status(StatusCode::IM_A_TEAPOT),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code_for_status(StatusCode::NOT_IMPLEMENTED),
            ErrorCode::Internal
        );
    }
}
