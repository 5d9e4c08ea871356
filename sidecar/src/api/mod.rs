//! The HTTP API's data: every request and response body and query of the node's HTTP API, as
//! the handlers send and take them, the CLI reads them and the OpenAPI document describes them
//! (`utoipa::ToSchema`). Types only: no axum, no I/O.

pub mod checks;
pub mod cluster;
pub mod demos;
pub mod error;
pub mod faults;
pub mod files;
pub mod health;
pub mod kv;
pub mod nodes;
pub mod ring;
pub mod session;
pub mod traces;

pub use checks::{Check, CheckList, CheckProgress, CheckStarted, NewCheck};
pub use cluster::{
    Cluster, Quorum, QuorumChanged, RaftStatus, Settings, SettingsChanged, TimeStatus,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use files::{FileDeleted, FileList, FileMeta, ListQuery, UploadQuery};
pub use health::{Health, RedisState};
pub use kv::{KvDeleted, KvWritten, ReadQuorum, WriteQuorum};
pub use nodes::{
    ActionResult, NewNode, NodeAction, NodeAdded, NodeRemoved, NodeRow, NodeState, Nodes, PassKind,
    Redistribution,
};
pub use ring::{
    ChunkPlacement, FilePlacement, HeldCopy, Located, MovedRange, ReplicaCopy, RingChange,
    RingQuery, RingToken, RingView,
};
pub use session::Whoami;
