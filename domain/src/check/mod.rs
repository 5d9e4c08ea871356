//! The consistency checker's pure half: the history's events (`history`), fault schedules
//! generated from a seed (`schedule`), judging a history (`judge`) and the report (`report`).
//! The runner that drives a real cluster and records the history is `sidecar/src/check/`.

pub mod history;
pub mod judge;
pub mod report;
pub mod schedule;
