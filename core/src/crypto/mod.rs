//! Ciphers, encodings, key derivation and the root key. No `unsafe`: libsodium is reached
//! through `crate::ffi::sodium`.
#![forbid(unsafe_code)]

pub mod binding;
pub mod cipher;
pub mod encoding;
pub mod envelope;
pub mod jwt;
pub mod kdf;
pub mod mac;
pub mod root_key;
pub mod token;
pub mod webhook;
