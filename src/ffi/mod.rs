//! Calls into PostgreSQL that pgrx does not wrap, and the log hook. Every `unsafe` block of the
//! extension crate is in this folder (libsodium's are in vault_core's `ffi`); the rest of the
//! crate reaches the server through pgrx or the safe functions here.

pub mod log_hook;
pub mod pg;
