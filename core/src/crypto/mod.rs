//! Ciphers, encodings, key derivation and the root key. No `unsafe`: libsodium is reached
//! through `crate::ffi::sodium`.
#![forbid(unsafe_code)]

pub mod binding;
pub mod cipher;
pub mod encoding;
pub mod kdf;
pub mod root_key;
pub mod token;
