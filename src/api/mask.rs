//! `vault.mask(text)` and the function behind `vault.masked_secrets`, which decrypts inside and
//! returns only the mask.

use crate::error::OrRaise;
use crate::vault::read;
use pgrx::prelude::*;
use pgrx::Uuid;
use vault_core::text::mask::{mask_text, HIDDEN};

#[pg_extern(immutable, parallel_safe, strict, name = "mask")]
fn mask_sql(value: &str) -> String {
    mask_text(value)
}

/// The masked value of one stored secret, for callers allowed to see masks (vault_viewer).
/// Decrypts with the same rules as `_decrypt`; a secret the caller may not read (per-secret
/// grants) shows `****`. The plaintext is wiped before returning.
#[pg_extern(stable, parallel_safe, name = "_mask_secret")]
fn mask_secret(id: Option<Uuid>, secret: Option<&str>, nonce: Option<&[u8]>, key_id: Option<Uuid>) -> Option<String> {
    let (id, secret) = (id?, secret?);
    let Some(plain) = read::for_caller(&id, secret, nonce, key_id, "read the mask of").or_raise() else {
        return Some(HIDDEN.to_string());
    };
    let masked = match std::str::from_utf8(plain.as_slice()) {
        Ok(text) => mask_text(text),
        Err(_) => HIDDEN.to_string(),
    };
    drop(plain); // SecretVec zeroes its bytes; the mask holds at most 8 characters of the value
    Some(masked)
}
