//! One file per command family: quorum commands, versioned registers, hints, file chunks, the
//! clock, and the debug hook.

pub mod chunk;
pub mod clock;
pub mod debug;
pub mod hint;
pub mod kv;
pub mod quorum;
