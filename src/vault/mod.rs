//! The vault's logic: key metadata, per-secret grants, data keys, the read path (decrypt for a
//! caller), the write path (what the encrypting trigger does), the audit rows of creates, and
//! which names make a log record touch the vault (log_names).
//! Called by `api`; uses `cache`, `settings`, `error`, `ffi` and vault_core, never `api`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod data_keys;
pub mod exportable;
pub mod grants;
pub mod keys;
pub mod log_names;
pub mod read;
pub mod tokens;
pub mod usage;
pub mod versions;
pub mod write;
