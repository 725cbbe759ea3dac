//! SQL helpers for keys and the root key.

use crate::error::{raise, shown_name, OrRaise, VaultError};
use pgrx::prelude::*;
use vault_core::crypto::cipher::KeyType;
use vault_core::crypto::root_key::{self, Root};

/// 0A000 when the key type cannot be used on this CPU, 22023 when it is unknown.
#[pg_extern(stable, parallel_safe, name = "_check_key_type")]
fn check_key_type(key_type: &str) -> bool {
    match KeyType::parse(key_type) {
        None => raise(VaultError::BadArgument {
            message: format!("unknown key type \"{}\"", shown_name(key_type)),
            hint: Some("Use aead-det, aead-ietf or aes256gcm.".into()),
        }),
        Some(kt) if !kt.supported() => raise(VaultError::KeyTypeUnsupported(kt.as_str())),
        Some(_) => true,
    }
}

/// The previous root key's fingerprint, or NULL when none is loaded.
#[pg_extern(stable, parallel_safe, name = "_previous_fingerprint")]
fn previous_fingerprint() -> Option<&'static str> {
    root_key::fingerprint_of(Root::Previous)
}

/// The loaded root key's fingerprint, or NULL when the library was not preloaded.
#[pg_extern(stable, parallel_safe, name = "_loaded_fingerprint")]
fn loaded_fingerprint() -> Option<&'static str> {
    root_key::fingerprint()
}

/// First 16 hex characters of BLAKE2b-256("vault_ext root key fingerprint", key = root key).
#[pg_extern(stable, parallel_safe)]
fn root_key_fingerprint() -> &'static str {
    root_key::fingerprint().ok_or(VaultError::NoRootKey).or_raise()
}
