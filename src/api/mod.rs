//! The SQL surface: every `#[pg_extern]` and `#[pg_trigger]` of vault_ext. Each one converts
//! arguments, calls `vault`, and raises errors with their SQLSTATE; no logic of its own.
#![forbid(unsafe_code)]

pub mod audit;
pub mod keys;
pub mod mask;
pub mod secrets;
pub mod tokens;
pub mod triggers;
pub mod usage;
