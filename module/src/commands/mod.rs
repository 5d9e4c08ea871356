//! One file per command family: versioned registers, file chunks, the clock, and the debug hook.

pub mod chunk;
pub mod clock;
pub mod debug;
pub mod kv;
