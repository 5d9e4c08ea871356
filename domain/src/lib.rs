//! Pure logic shared by the Redis module and the node process: clocks, versions, key layout,
//! argument validation, checksums, cluster configuration, the `RC.*` command contract and the
//! metadata state machine that Raft replicates. Nothing here does I/O or reads the OS clock, so
//! both sides use one copy and every test is deterministic.

pub mod check;
pub mod checksum;
pub mod codes;
pub mod config;
pub mod demo;
pub mod fault;
pub mod hint;
pub mod histogram;
pub mod hlc;
pub mod keys;
pub mod memory_fit;
pub mod meta;
pub mod node_config;
pub mod peer_auth;
pub mod phi;
pub mod quorum;
pub mod ratelimit;
pub mod rc;
pub mod ring;
pub mod round;
pub mod secret;
pub mod sntp;
pub mod topology;
pub mod trace;
pub mod validate;
pub mod version;
