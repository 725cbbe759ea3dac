//! Foreign calls: libsodium. Every `unsafe` block of vault_core is in this folder.

pub mod sodium;
pub mod sodium_use;
