//! One file per command family: quorum commands, versioned registers, hints, file chunks, the
//! clock, the debug hook, and injected faults.

pub mod chunk;
pub mod clock;
pub mod debug;
pub mod fault;
pub mod hint;
pub mod kv;
pub mod quorum;
