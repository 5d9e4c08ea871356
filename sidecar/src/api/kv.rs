//! `PUT|GET|DELETE /api/kv/{key}`: the answers and the per-request quorum queries.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?w=`: the write quorum of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WriteQuorum {
    /// Write quorum for this request (1..=quorum.n; default quorum.w).
    #[param(minimum = 1, maximum = 255)]
    pub w: Option<u8>,
    /// 1: trace this request; the answer names the trace in header `X-RC-Trace`.
    #[param(minimum = 0, maximum = 1)]
    pub trace: Option<u8>,
}

/// `?r=`: the read quorum of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuorum {
    /// Read quorum for this request (1..=quorum.n; default quorum.r).
    #[param(minimum = 1, maximum = 255)]
    pub r: Option<u8>,
    /// 1: trace this request; the answer names the trace in header `X-RC-Trace`.
    #[param(minimum = 0, maximum = 1)]
    pub trace: Option<u8>,
}

/// A key was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KvWritten {
    pub key: String,
    /// The value's length.
    pub bytes: u64,
}

/// A key was deleted (a tombstone written with quorum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KvDeleted {
    pub key: String,
    /// Always true.
    pub deleted: bool,
}
