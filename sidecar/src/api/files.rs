//! `/api/files`: a file's metadata (also its stored form), the list, the delete answer and the
//! upload and list queries.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What is stored (as JSON in the register `file:<id>`) and shown about a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileMeta {
    /// 128 random bits, lower-case hex.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub id: String,
    #[schema(min_length = 1)]
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Chunk size the file was cut with.
    #[schema(minimum = 1)]
    pub chunk_size: u64,
    pub chunk_count: u64,
    /// SHA-256 of the whole file.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// SHA-256 of each chunk, in order.
    pub chunk_sha256: Vec<String>,
    /// Unix time of the upload, ms.
    pub created_ms: u64,
}

/// One page of files, by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    pub files: Vec<FileMeta>,
    /// Pass as ?after= for the next page; null on the last page.
    pub next_after: Option<String>,
}

/// A file was deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDeleted {
    pub id: String,
    /// Always true.
    pub deleted: bool,
    /// Chunk copies removed from the nodes that answered.
    pub chunk_copies_removed: u64,
}

/// `GET /api/files` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Files per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only ids after this one (next_after of the previous page; a file id, either case).
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub after: Option<String>,
}

/// `POST /api/files` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// File name (1 to 255 bytes, no '/', '\' or control characters, not '.' or '..'); takes
    /// precedence over X-File-Name and the multipart file name.
    #[param(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Write quorum of every chunk and of the metadata (1..=N, the cluster's quorum.n; default
    /// quorum.w). Checked before anything is written.
    #[param(minimum = 1, maximum = 255)]
    pub w: Option<u8>,
}
