//! The read path: decrypting a stored secret for the calling role (per-secret grants, the
//! `vault.audit_reads` line), by row or by name, and the decryptions key rotation needs.

use crate::cache;
use crate::error::{shown_name, VResult, VaultError};
use crate::ffi::pg;
use crate::settings;
use crate::vault::exportable;
use crate::vault::grants::{self, Access};
use crate::vault::keys::{self, KeyInfo};
use crate::vault::log_names;
use pgrx::prelude::*;
use pgrx::Uuid;
use vault_core::crypto::binding::{AssociatedData, Binding};
use vault_core::crypto::cipher::CipherError;
use vault_core::crypto::encoding::{base64_decode, Base64Error};
use vault_core::crypto::root_key;
use vault_core::ffi::sodium::{self, SecretVec};

/// Decrypt one stored secret with its key's columns passed in (vault.verify_secrets and 0.1.0's
/// view). None when per-secret grants keep the caller out.
#[allow(clippy::too_many_arguments)]
pub fn with_key_columns(
    id: &Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    key_uuid: Option<Uuid>,
    key_type: Option<&str>,
    key_num: Option<i64>,
    key_context: Option<&[u8]>,
    key_status: Option<&str>,
    key_fingerprint: Option<&str>,
) -> VResult<Option<String>> {
    let access = grants::access(id.as_bytes())?;
    if access == Access::Denied || exportable::is_unexportable(id.as_bytes())? {
        return Ok(None);
    }
    let key = KeyInfo::from_columns(key_uuid, key_type, key_num, key_context, key_status, key_fingerprint)?;
    match decrypt_for(access, id.as_bytes(), secret.as_bytes(), nonce, &key, None)? {
        Some(plain) => into_text(plain, id.as_bytes()).map(Some),
        None => Ok(None),
    }
}

const READ_SQL: &str = "SELECT d.id, d.secret, d.nonce, d.key_id FROM vault.decrypted_secrets d \
                        WHERE d.name OPERATOR(pg_catalog.=) $1";

thread_local! {
    static READ_PLAN: std::cell::RefCell<Option<pgrx::spi::OwnedPreparedStatement>> =
        const { std::cell::RefCell::new(None) };
}

/// A stored secret as read from the view: id, ciphertext, nonce, key id.
type StoredRow = (Option<Uuid>, Option<String>, Option<Vec<u8>>, Option<Uuid>);

/// `vault.read_secret(name)`: the row comes from `vault.decrypted_secrets` read as the caller
/// (so only a role that may read the view gets it), through a plan kept per backend, without its
/// `decrypted_secret` column; the value is then decrypted here with the same rules as `_decrypt`.
pub fn by_name(name: Option<&str>) -> VResult<String> {
    let shown = || name.map_or("<NULL>".into(), shown_name).into_owned();
    let Some(name) = name else {
        return Err(VaultError::UnknownSecret(shown()));
    };
    let found = Spi::connect(|client| -> Result<Option<StoredRow>, pgrx::spi::Error> {
        let text = [pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::TEXTOID)];
        let rows = cache::plans::select(&READ_PLAN, client, READ_SQL, &text, Some(1), &[name.into()])?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) => Ok(Some((row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))),
        }
    })
    .map_err(VaultError::spi("read vault.decrypted_secrets"))?;
    let Some((Some(id), Some(secret), nonce, key_id)) = found else {
        return Err(VaultError::UnknownSecret(shown()));
    };
    if exportable::is_unexportable(id.as_bytes())? {
        return Err(not_exportable(&shown()));
    }
    match for_caller(&id, &secret, nonce.as_deref(), key_id, "read")? {
        Some(plain) => into_text(plain, id.as_bytes()),
        None => Err(VaultError::SecretDenied(shown())),
    }
}

/// vault.read_secret of a non-exportable secret: 42501, pointing to the functions that use it.
pub fn not_exportable(name: &str) -> VaultError {
    VaultError::Refused {
        code: pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message: format!("secret \"{name}\" is not exportable: its value is never returned"),
        hint: "Use it inside the server instead: vault.hmac, vault.hmac_verify, vault.verify_webhook, \
               vault.sign_jwt, vault.verify_jwt, vault.sign, vault.encrypt and vault.decrypt."
            .into(),
    }
}

/// The read path shared by `_decrypt`, `_mask_secret` and `read_secret`: None when per-secret
/// grants keep the calling role out or the secret is not exportable; otherwise the audit line
/// (if on) and the plaintext.
pub fn for_caller(
    id: &Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    key_id: Option<Uuid>,
    what: &str,
) -> VResult<Option<SecretVec>> {
    let id = id.as_bytes();
    let access = grants::access(id)?;
    if access == Access::Denied || exportable::is_unexportable(id)? {
        return Ok(None);
    }
    let key_id = key_id.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes());
    let key = keys::lookup_for_read(&key_id)?;
    let plain = decrypt_for(access, id, secret.as_bytes(), nonce, &key, None)?;
    if plain.is_some() {
        audit_read(id, what);
    }
    Ok(plain)
}

/// Decrypt for a caller whose grants say `access` (not Denied). A restricted ciphertext of a
/// secret that has no grants here (another database, a deleted or renamed secret, a copy from a
/// backup) is only for superusers and vault_admin: None for anyone else. A sealed
/// (non-exportable) ciphertext is None for reads (`use_sealed` None), wherever it turns up; the
/// use path passes Some(whether it expects it sealed).
pub fn decrypt_for(
    access: Access,
    id: &[u8; 16],
    secret_b64: &[u8],
    nonce: Option<&[u8]>,
    key: &KeyInfo,
    use_sealed: Option<bool>,
) -> VResult<Option<SecretVec>> {
    let expected = match access {
        Access::Granted => Binding::Restricted,
        _ => Binding::Open,
    }
    .sealed(use_sealed.unwrap_or(false));
    let (plain, binding) = decrypt(id, secret_b64, nonce, key, expected)?;
    if binding.is_sealed() && use_sealed.is_none() {
        drop(plain); // wiped
        return Ok(None);
    }
    if access == Access::Open && binding.is_restricted() && !grants::caller_is_admin()? {
        drop(plain); // wiped
        return Ok(None);
    }
    Ok(Some(plain))
}

/// With vault.audit_reads on: one LOG line per value handed out (never the value itself).
pub fn audit_read(id: &[u8; 16], what: &str) {
    if settings::audit_reads() {
        let (current, session) = pg::role_names();
        crate::error::log_line(format!(
            "vault_ext audit: role {current:?} (session {session:?}) {what} secret {}",
            keys::uuid_string(id)
        ));
    }
}

/// The plaintext as text; 22021 when it is not UTF-8 (the bytes are wiped).
pub fn into_text(plain: SecretVec, id: &[u8; 16]) -> VResult<String> {
    // Move the bytes out; the String is handed straight to Postgres.
    let mut plain = plain;
    let bytes = std::mem::take(plain.vec_mut());
    String::from_utf8(bytes).map_err(|e| {
        let mut b = e.into_bytes();
        sodium::memzero(&mut b);
        VaultError::NotUtf8 {
            secret: keys::uuid_string(id),
        }
    })
}

/// The stored base64 text of secret `id` decoded (22023 when it is not base64, 53200 when its
/// size cannot be allocated).
pub fn decode_ciphertext(id: &[u8; 16], secret_b64: &[u8]) -> VResult<SecretVec> {
    base64_decode(secret_b64).map_err(|e| match e {
        Base64Error::Malformed => VaultError::Malformed {
            secret: keys::uuid_string(id),
            what: "not valid base64",
        },
        Base64Error::OutOfMemory(bytes) => VaultError::NoMemory { bytes },
    })
}

/// Decrypt a stored (base64) secret bound to its row id and nonce, trying the `expected`
/// binding first and then the others (`Binding::candidates`); returns the plaintext and the
/// binding that authenticated.
pub fn decrypt(
    id: &[u8; 16],
    secret_b64: &[u8],
    nonce: Option<&[u8]>,
    key: &KeyInfo,
    expected: Binding,
) -> VResult<(SecretVec, Binding)> {
    decrypt_with(id, secret_b64, nonce, key, &*key.for_decrypt()?, expected)
}

/// `decrypt` with the data key given (for checks that may use a key whatever its status).
pub fn decrypt_with(
    id: &[u8; 16],
    secret_b64: &[u8],
    nonce: Option<&[u8]>,
    key: &KeyInfo,
    dk: &vault_core::crypto::cipher::DataKey,
    expected: Binding,
) -> VResult<(SecretVec, Binding)> {
    let secret = || keys::uuid_string(id);
    log_names::note_decryption();
    let blob = decode_ciphertext(id, secret_b64)?;
    let candidates = expected.candidates();
    let ads = candidates.map(|b| AssociatedData::new(id, b));
    let ads = [
        ads[0].as_slice(),
        ads[1].as_slice(),
        ads[2].as_slice(),
        ads[3].as_slice(),
    ];
    let (plain, which) = dk.decrypt_any(blob, &ads, nonce).map_err(|e| match e {
        CipherError::Malformed => VaultError::Malformed {
            secret: secret(),
            what: "shorter than its tag, or a nonce of the wrong size",
        },
        CipherError::Forged => VaultError::DecryptFailed {
            secret: secret(),
            key: key.id_string(),
            stored: key.foreign_fingerprint.clone(),
            loaded: root_key::fingerprint().unwrap_or("none").to_string(),
        },
        CipherError::OutOfMemory(bytes) => VaultError::NoMemory { bytes },
    })?;
    Ok((plain, candidates[which]))
}
