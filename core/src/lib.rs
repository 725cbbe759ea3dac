//! The part of vault_ext that needs no PostgreSQL, tested by plain `cargo test -p vault_core`.
//!
//! - `ffi`: the only libsodium calls (and the only `unsafe` code of this crate), behind a small
//!   safe API: guarded memory, KDF, BLAKE2b, XChaCha20, AEADs.
//! - `crypto`: XChaCha20-SIV as supabase_vault writes it, the other key types, PostgreSQL's
//!   base64, data key derivation, the root key (sources, checks, fingerprint).
//! - `text`: the SQL lexer that masks literals for the server log, and value masks.
//!
//! Dependencies point one way: `text` and `crypto` use `ffi`; `ffi` uses nothing here.

pub mod crypto;
#[allow(unsafe_code)]
pub mod ffi;
pub mod text;
