//! The write path: what the BEFORE trigger on vault.secrets does to each row (encrypt
//! plaintext, check arriving ciphertext, re-encrypt for a new id or key), and the re-encryption
//! of one value that key and root key rotation need.

use crate::cache::Stamp;
use crate::error::{VResult, VaultError};
use crate::ffi::pg;
use crate::vault::keys::{self, KeyInfo};
use crate::vault::read::{decode_ciphertext, decrypt, decrypt_with};
use crate::vault::{audit, data_keys, grants};
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgTrigger, Uuid};
use std::cell::{Cell, RefCell};
use std::num::NonZeroUsize;
use vault_core::crypto::binding::{AssociatedData, Binding};
use vault_core::crypto::cipher::DataKey;
use vault_core::crypto::encoding::{base64_encode, max_base64_input, MAX_TEXT_BYTES};
use vault_core::crypto::root_key::Root;
use vault_core::ffi::sodium::{self, SecretVec};

/// Encrypt a plaintext for row `id` under `key` with a fresh random nonce, bound as `binding`.
pub fn encrypt(
    id: &[u8; 16],
    plaintext: &[u8],
    key: &KeyInfo,
    dk: &DataKey,
    binding: Binding,
) -> VResult<(String, Vec<u8>)> {
    check_size(plaintext.len(), key)?;
    let mut nonce = vec![0u8; key.key_type.nonce_bytes()];
    sodium::random_nonce(&mut nonce);
    let ad = AssociatedData::new(id, binding);
    let oom = |e: sodium::OutOfMemory| VaultError::NoMemory { bytes: e.bytes };
    let blob = dk.encrypt(plaintext, ad.as_slice(), Some(&nonce)).map_err(oom)?;
    Ok((base64_encode(&blob).map_err(oom)?, nonce))
}

/// A value whose ciphertext's base64 text would not fit in a text column (1 GB) is refused with
/// 54000 before anything is allocated for it.
fn check_size(plaintext_bytes: usize, key: &KeyInfo) -> VResult<()> {
    let limit = max_base64_input(MAX_TEXT_BYTES).saturating_sub(key.key_type.min_blob_bytes());
    if plaintext_bytes <= limit {
        return Ok(());
    }
    Err(VaultError::Refused {
        code: pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        message: format!("a secret's value may be at most {limit} bytes; this one has {plaintext_bytes}"),
        hint: "Its ciphertext is stored as base64 text, and a text value holds at most 1 GB.".into(),
    })
}

/// How secret `id` must be bound when written now: restricted while it has per-secret grants.
fn wanted_binding(ids: &[&[u8; 16]]) -> VResult<Binding> {
    for id in ids {
        if grants::has_grants_now(id)? {
            return Ok(Binding::Restricted);
        }
    }
    Ok(Binding::Open)
}

/// The stored key reference for a key: NULL for the compatibility key, as supabase_vault rows.
pub fn stored_key_id(key: &KeyInfo) -> Option<Uuid> {
    (!key.is_compat()).then(|| Uuid::from_bytes(key.id))
}

/// Root key rotation, one row: decrypt a secret written under the previous root key and
/// encrypt it for the same key under the current root key (fresh nonce, same binding). The
/// value never leaves this function.
pub fn rewrap(id: &Uuid, secret: &str, nonce: Option<&[u8]>, key_id: &Uuid) -> VResult<(String, Vec<u8>)> {
    let id = id.as_bytes();
    let key = keys::lookup(key_id.as_bytes())?;
    if key.root != Some(Root::Previous) {
        return Err(VaultError::KeyUnusable {
            key: key.id_string(),
            why: "it is not under the previous root key".into(),
        });
    }
    let (plain, binding) = decrypt(id, secret.as_bytes(), nonce, &key, wanted_binding(&[id])?)?;
    let dk = data_keys::data_key(Root::Current, key.key_type, key.key_num, &key.context)?;
    encrypt(id, plain.as_slice(), &key, &dk, binding)
}

/// Whether the key a row names has expired (status expired, or past its expires_at).
fn key_expired(id: Option<&[u8; 16]>) -> VResult<bool> {
    let key = keys::lookup(id.unwrap_or(&keys::COMPAT_KEY_ID))?;
    Ok(key.status == keys::Status::Expired || key.past_expiry)
}

/// Whether (secret, nonce) is what vault.secrets stores for `id` now.
pub fn is_stored(id: &Uuid, secret: &str, nonce: Option<&[u8]>) -> VResult<bool> {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) $1 \
            AND s.secret OPERATOR(pg_catalog.=) $2 \
            AND (s.nonce OPERATOR(pg_catalog.=) $3 OR (s.nonce IS NULL AND $3 IS NULL)))",
        &[(*id).into(), secret.into(), nonce.into()],
    )
    .map(|found| found.unwrap_or(false))
    .map_err(VaultError::spi("read vault.secrets"))
}

/// Key rotation of a kept version: decrypt a stored ciphertext of secret `id` under `from_key`
/// (None: the compatibility key) and encrypt it for `to_key` with a fresh nonce. The value never
/// leaves this function.
pub fn rekey(
    id: &Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    from_key: Option<Uuid>,
    to_key: &Uuid,
) -> VResult<(String, Vec<u8>, Option<Uuid>)> {
    let id = id.as_bytes();
    let from = from_key.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes());
    let old = keys::lookup(&from)?;
    let (plain, binding) = decrypt(id, secret.as_bytes(), nonce, &old, wanted_binding(&[id])?)?;
    let (key, dk) = keys::for_write(Some(to_key.as_bytes()))?;
    let (text, nonce) = encrypt(id, plain.as_slice(), &key, &dk, binding)?;
    Ok((text, nonce, stored_key_id(&key)))
}

/// A row that arrives with a nonce already holds ciphertext: it must be well formed for its key
/// type and, when its key is under a loaded root key, decrypt for this row (22023 otherwise: a
/// plaintext with a made-up nonce, or another row's ciphertext, is never stored as ciphertext).
/// Under a root key this server has not loaded (a restore elsewhere) it cannot be checked: it is
/// stored as is, with one WARNING per key and transaction. Returns the row's new ciphertext and
/// nonce when it must be bound as restricted and is not (see `reseal`).
fn check_ciphertext(
    id: &[u8; 16],
    secret_b64: &[u8],
    nonce: &[u8],
    key: &KeyInfo,
    seal: bool,
) -> VResult<Option<(String, Vec<u8>)>> {
    well_formed(id, secret_b64, nonce, key)?;
    if !can_verify(key) {
        warn_unverified(key);
        return Ok(None);
    }
    let wanted = wanted_binding(&[id])?.sealed(seal);
    let (plain, binding) = match open_for_check(id, secret_b64, nonce, key, wanted) {
        Ok(found) => found,
        Err(VaultError::DecryptFailed { secret, key, .. }) => {
            return Err(VaultError::BadArgument {
                message: format!("ciphertext of secret {secret} does not decrypt with key {key} for this row"),
                hint: Some(
                    "A row inserted with a nonce must carry ciphertext written for this id by vault_ext or supabase_vault under the loaded root key; insert a plaintext without a nonce to have it encrypted."
                        .into(),
                ),
            })
        }
        Err(e) => return Err(e),
    };
    // Only ever tightened here: a restricted ciphertext of a secret without grants stays
    // restricted (readable by vault_admin) until its grants change; a sealed one stays sealed
    // (a row restored as exportable does not unseal it), and a non-exportable row is sealed.
    let target = binding
        .sealed(binding.is_sealed() || seal)
        .other_if(!binding.is_restricted() && wanted.is_restricted());
    if target != binding {
        return reseal_with(id, plain.as_slice(), key, target).map(Some);
    }
    Ok(None)
}

/// The check a kept version's ciphertext gets when it is written (vault.secret_versions'
/// guard): a nonce (a version is never plaintext), well formed, and, when `decrypts` and its root
/// key is loaded, decrypting for its secret under its key (22023 otherwise).
pub fn check_version_ciphertext(
    id: &Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    key_id: Option<Uuid>,
    decrypts: bool,
) -> VResult<()> {
    let id = id.as_bytes();
    let Some(nonce) = nonce else {
        return Err(VaultError::BadArgument {
            message: format!(
                "a kept version of secret {} must carry ciphertext and its nonce",
                keys::uuid_string(id)
            ),
            hint: Some(
                "Versions are written by vault_ext when a secret's value changes; they are never plaintext.".into(),
            ),
        });
    };
    let key = keys::lookup(&key_id.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes()))?;
    if decrypts {
        check_ciphertext(id, secret.as_bytes(), nonce, &key, false).map(|_| ())
    } else {
        well_formed(id, secret.as_bytes(), nonce, &key)
    }
}

/// Ciphertext of row `id` opened for a check, whatever the key's status. vault.rotate_root_key()
/// stores what _rewrap made under the current root key before it records the new fingerprint on
/// the key: a key still on the previous root key may carry ciphertext under the current one.
fn open_for_check(
    id: &[u8; 16],
    secret_b64: &[u8],
    nonce: &[u8],
    key: &KeyInfo,
    wanted: Binding,
) -> VResult<(SecretVec, Binding)> {
    let found = decrypt_with(id, secret_b64, Some(nonce), key, &*key.for_rebinding()?, wanted);
    match (found, key.root) {
        (Err(VaultError::DecryptFailed { .. }), Some(Root::Previous)) => {
            let current = KeyInfo {
                root: Some(Root::Current),
                ..key.clone()
            };
            decrypt_with(id, secret_b64, Some(nonce), key, &*current.for_rebinding()?, wanted)
        }
        (found, _) => found,
    }
}

/// A kept version's new ciphertext (key rotation) must hold the value the version held: an
/// UPDATE of vault.secret_versions re-encrypts, it never changes what a version was (the second
/// review stored a value the secret never had, made in a rolled-back savepoint). Unchecked when
/// either root key is not loaded here.
pub fn check_version_value_kept(
    id: &Uuid,
    old: (&str, Option<&[u8]>, Option<Uuid>),
    new: (&str, Option<&[u8]>, Option<Uuid>),
) -> VResult<()> {
    let id_bytes = id.as_bytes();
    let open = |(secret, nonce, key_id): (&str, Option<&[u8]>, Option<Uuid>)| -> VResult<Option<SecretVec>> {
        let key = keys::lookup(&key_id.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes()))?;
        match nonce {
            Some(nonce) if can_verify(&key) => {
                let wanted = wanted_binding(&[id_bytes])?;
                open_for_check(id_bytes, secret.as_bytes(), nonce, &key, wanted).map(|(p, _)| Some(p))
            }
            _ => Ok(None),
        }
    };
    if let (Some(before), Some(after)) = (open(old)?, open(new)?) {
        if before.as_slice() != after.as_slice() {
            return Err(VaultError::Refused {
                code: PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                message: format!(
                    "a kept version of secret {} may be re-encrypted, never given another value",
                    keys::uuid_string(id_bytes)
                ),
                hint: "Versions are written by vault_ext when a secret's value changes.".into(),
            });
        }
    }
    Ok(())
}

/// Whether ciphertext under `key` can be decrypted here: its root key is loaded (its status
/// does not matter for checks and rebinding).
fn can_verify(key: &KeyInfo) -> bool {
    key.root.is_some()
}

thread_local! {
    /// Keys already warned about in this transaction (one WARNING per key, not per row).
    static WARNED: RefCell<Vec<([u8; 16], Stamp)>> = const { RefCell::new(Vec::new()) };
}

fn warn_unverified(key: &KeyInfo) {
    let first = WARNED.with(|w| {
        let mut w = w.borrow_mut();
        w.retain(|(_, stamp)| stamp.is_valid());
        if w.iter().any(|(k, _)| *k == key.id) {
            return false;
        }
        w.push((key.id, Stamp::for_transaction()));
        true
    });
    if first {
        pgrx::warning!(
            "vault_ext stored ciphertext under key {} without checking it: {}",
            key.id_string(),
            format!(
                "the key belongs to root key {}, which this server has not loaded",
                key.foreign_fingerprint.as_deref().unwrap_or("?")
            )
        );
    }
}

/// The value re-encrypted under its own key (fresh nonce) with `binding`: a change of binding
/// is not a new value, so the key may be one that takes no new secrets (expired).
fn reseal_with(id: &[u8; 16], plain: &[u8], key: &KeyInfo, binding: Binding) -> VResult<(String, Vec<u8>)> {
    let dk = key.for_rebinding()?;
    encrypt(id, plain, key, &dk, binding)
}

/// An UPDATE that leaves the value alone (metadata, or the no-op update vault.secret_acl's
/// triggers make when grants change): rebind the ciphertext when the grants changed whether it
/// must be restricted. A ciphertext that cannot be decrypted here is left as it is.
fn reseal(
    id: &[u8; 16],
    secret_b64: &[u8],
    nonce: Option<&[u8]>,
    key: &KeyInfo,
    seal: bool,
) -> VResult<Option<(String, Vec<u8>)>> {
    let wanted = wanted_binding(&[id])?.sealed(seal);
    if !can_verify(key) {
        if wanted.is_restricted() || seal {
            pgrx::warning!(
                "vault_ext could not bind secret {} to its grants: its key {} belongs to root key {}, which this server has not loaded",
                keys::uuid_string(id),
                key.id_string(),
                key.foreign_fingerprint.as_deref().unwrap_or("?")
            );
        }
        return Ok(None);
    }
    match decrypt_with(id, secret_b64, nonce, key, &*key.for_rebinding()?, wanted) {
        // The seal is never taken off (update_secret(new_exportable => false) seals here).
        Ok((plain, binding)) if binding != wanted.sealed(seal || binding.is_sealed()) => {
            reseal_with(id, plain.as_slice(), key, wanted.sealed(seal || binding.is_sealed())).map(Some)
        }
        Ok(_) => Ok(None),
        Err(VaultError::NoMemory { bytes }) => Err(VaultError::NoMemory { bytes }),
        Err(_) => Ok(None),
    }
}

/// Base64 that decodes, long enough for a tag, a nonce of the key type's size.
fn well_formed(id: &[u8; 16], secret_b64: &[u8], nonce: &[u8], key: &KeyInfo) -> VResult<()> {
    let secret = || keys::uuid_string(id);
    let blob = decode_ciphertext(id, secret_b64)?;
    if blob.as_slice().len() < key.key_type.min_blob_bytes() {
        return Err(VaultError::Malformed {
            secret: secret(),
            what: "shorter than its authentication tag",
        });
    }
    if nonce.len() != key.key_type.nonce_bytes() {
        return Err(VaultError::Malformed {
            secret: secret(),
            what: "nonce has the wrong size for its key type",
        });
    }
    Ok(())
}

/// Where vault.secrets keeps the columns the triggers use. Found by name once per table and
/// kept until the next relcache invalidation (ALTER TABLE sends one), instead of a search of
/// the row descriptor per column per row, which was a tenth of an insert.
#[derive(Clone, Copy)]
struct Columns {
    id: NonZeroUsize,
    name: NonZeroUsize,
    secret: NonZeroUsize,
    key_id: NonZeroUsize,
    nonce: NonZeroUsize,
    /// `exportable` (SPEC §11); None in 0.1.0's table, where every secret is exportable.
    exportable: Option<NonZeroUsize>,
}

thread_local! {
    /// The table and its columns, valid until the next relcache invalidation (cache::epoch).
    static COLUMNS: Cell<Option<(pg_sys::Oid, Columns, Stamp)>> = const { Cell::new(None) };
}

fn shape_err() -> VaultError {
    VaultError::Internal("vault.secrets does not have the columns vault_ext expects")
}

fn columns(trigger: &PgTrigger<'_>, row: &PgHeapTuple<'_, impl pgrx::WhoAllocated>) -> VResult<Columns> {
    let relid = pg::trigger_relid(trigger);
    if let Some((cached, c, stamp)) = COLUMNS.with(Cell::get) {
        if cached == relid && stamp.is_valid() {
            return Ok(c);
        }
    }
    let find = |column: &'static str, (oid, typ): (pg_sys::Oid, &'static str)| {
        row.attributes()
            .find(|(_, a)| !a.attisdropped && a.name() == column)
            .filter(|(_, a)| a.atttypid == oid)
            .map(|(n, _)| n)
            .ok_or(VaultError::MissingColumn { column, typ })
    };
    let (uuid, text, bytea) = (
        (pg_sys::UUIDOID, "uuid"),
        (pg_sys::TEXTOID, "text"),
        (pg_sys::BYTEAOID, "bytea"),
    );
    let c = Columns {
        id: find("id", uuid)?,
        name: find("name", text)?,
        secret: find("secret", text)?,
        key_id: find("key_id", uuid)?,
        nonce: find("nonce", bytea)?,
        exportable: find("exportable", (pg_sys::BOOLOID, "boolean")).ok(),
    };
    COLUMNS.with(|x| x.set(Some((relid, c, Stamp::across_transactions()))));
    Ok(c)
}

/// The row's fields the trigger works with, borrowed from the row.
struct Row<'t> {
    id: Option<[u8; 16]>,
    secret: Option<&'t str>,
    key_id: Option<[u8; 16]>,
    nonce: Option<&'t [u8]>,
    /// `exportable = false`: the ciphertext is sealed (never returned by the read path).
    sealed: bool,
}

fn read_row<'t>(t: &'t PgHeapTuple<'_, impl pgrx::WhoAllocated>, c: &Columns) -> VResult<Row<'t>> {
    let uuid = |n| t.get_by_index::<Uuid>(n).map(|u| u.map(|u| *u.as_bytes()));
    Ok(Row {
        id: uuid(c.id).map_err(|_| shape_err())?,
        secret: t.get_by_index::<&str>(c.secret).map_err(|_| shape_err())?,
        key_id: uuid(c.key_id).map_err(|_| shape_err())?,
        nonce: t.get_by_index::<&[u8]>(c.nonce).map_err(|_| shape_err())?,
        sealed: match c.exportable {
            Some(n) => t.get_by_index::<bool>(n).map_err(|_| shape_err())? == Some(false),
            None => false,
        },
    })
}

/// What the trigger must do with NEW.
enum Action {
    Keep,
    /// NEW.secret is plaintext: encrypt it (key: NEW.key_id, or the default key).
    Encrypt,
    /// NEW.secret is ciphertext: check it is well formed.
    Check,
    /// Same value, new id or key: decrypt OLD, encrypt for NEW (and whether OLD was sealed).
    Reencrypt(SecretVec, bool),
}

/// What the BEFORE INSERT OR UPDATE trigger on vault.secrets does to NEW:
///
/// - INSERT with nonce NULL: `secret` is plaintext, encrypted here with a fresh nonce.
/// - INSERT with a nonce: ciphertext (pg_dump restore, migration), checked and stored as is.
/// - UPDATE with nonce set to NULL, or `secret` changed and nonce unchanged: plaintext.
/// - UPDATE of id or key_id alone: re-encrypted for the new id/key with a fresh nonce.
pub fn encrypt_row<'a>(trigger: &'a PgTrigger<'a>) -> VResult<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let new_tuple = trigger
        .new()
        .ok_or(VaultError::Internal("trigger fired without a new row"))?;
    let cols = columns(trigger, &new_tuple)?;
    let new = read_row(&new_tuple, &cols)?;
    let old_tuple = trigger.old();
    let old = match &old_tuple {
        Some(t) => Some(read_row(t, &cols)?),
        None => None,
    };
    let Some(id) = new.id else {
        return Err(VaultError::NullColumn("id"));
    };
    let Some(secret) = new.secret else {
        return Err(VaultError::NullColumn("secret"));
    };
    check_tags(&new_tuple, old_tuple.as_ref(), new.nonce.is_some() && old.is_none())?;

    let action =
        match (&old, new.nonce) {
            (_, None) => Action::Encrypt,
            (None, Some(_)) => Action::Check,
            (Some(o), Some(n)) => {
                let secret_changed = o.secret != Some(secret);
                let nonce_changed = o.nonce != Some(n);
                match (secret_changed, nonce_changed) {
                    (true, false) => Action::Encrypt,
                    (true, true) => Action::Check,
                    (false, true) => return Err(VaultError::BadArgument {
                        message: format!(
                            "the nonce of secret {} cannot change without its ciphertext",
                            keys::uuid_string(&id)
                        ),
                        hint: Some(
                            "Set secret to a new plaintext (and leave nonce alone, or set it to NULL) to re-encrypt."
                                .into(),
                        ),
                    }),
                    (false, false) if o.id != new.id || o.key_id != new.key_id => {
                        let old_id = o.id.unwrap_or(id);
                        let old_key = keys::lookup(o.key_id.as_ref().unwrap_or(&keys::COMPAT_KEY_ID))?;
                        let expected = wanted_binding(&[&old_id])?.sealed(o.sealed);
                        let (plain, found) = decrypt(&old_id, secret.as_bytes(), o.nonce, &old_key, expected)?;
                        Action::Reencrypt(plain, found.is_sealed())
                    }
                    (false, false) => Action::Keep,
                }
            }
        };

    let reencrypted;
    let mut old_sealed = false;
    let plain = match action {
        Action::Keep | Action::Check => {
            let key = keys::lookup(new.key_id.as_ref().unwrap_or(&keys::COMPAT_KEY_ID))?;
            let sealed = match action {
                Action::Keep => reseal(&id, secret.as_bytes(), new.nonce, &key, new.sealed)?,
                _ => check_ciphertext(&id, secret.as_bytes(), new.nonce.unwrap_or_default(), &key, new.sealed)?,
            };
            return Ok(match sealed {
                None => Some(new_tuple),
                Some((text, nonce)) => pg::with_columns_replaced(
                    trigger,
                    &[(cols.secret, text.into_datum()), (cols.nonce, nonce.into_datum())],
                ),
            });
        }
        // NEW.secret is the plaintext: encrypted straight from the row, never copied.
        Action::Encrypt => secret.as_bytes(),
        Action::Reencrypt(p, was_sealed) => {
            old_sealed = was_sealed;
            reencrypted = p;
            reencrypted.as_slice()
        }
    };
    // A new value for a secret whose key has expired (rotate_key(reencrypt => false) while
    // reencrypt_in_batches has not reached it yet) goes to the default key: an expired key
    // still decrypts but takes no new secrets. A key the writer names itself is used as named.
    let kept_key = old.as_ref().is_some_and(|o| o.key_id == new.key_id);
    let (key, dk) = match keys::for_write(new.key_id.as_ref()) {
        Err(VaultError::KeyUnusable { .. }) if kept_key && key_expired(new.key_id.as_ref())? => keys::for_write(None)?,
        found => found?,
    };
    // A new row has no grants yet (vault.secret_acl references existing secrets only); an
    // updated one is bound by its grants, under its old id or its new one.
    let binding = match old.as_ref() {
        None => Binding::Open,
        Some(o) => wanted_binding(&[&id, &o.id.unwrap_or(id)])?,
    }
    // Sealed once, sealed for good: a non-exportable row, or a value that was sealed.
    .sealed(new.sealed || old_sealed);
    let (text, nonce) = encrypt(&id, plain, &key, &dk, binding)?;
    let mut values = vec![(cols.secret, text.into_datum()), (cols.nonce, nonce.into_datum())];
    // Leave key_id alone when it already names this key.
    let key_id = stored_key_id(&key);
    if key_id.map(|u| *u.as_bytes()) != new.key_id {
        values.push((cols.key_id, key_id.into_datum()));
    }
    Ok(pg::with_columns_replaced(trigger, &values))
}

/// How a row of supabase_vault's `vault.secrets` holds its value, for vault.migrate_from.
/// supabase_vault stores a plain `INSERT INTO vault.secrets (secret, name)` as plaintext (with a
/// nonce from the column default); its own writes are ciphertext under key 0 of the root key.
/// - `ciphertext`: the text authenticates for this id and nonce under the compatibility key of
///   the loaded root key (a plaintext does so with probability 2^-256): kept byte for byte;
/// - `ciphertext_without_nonce`: the same with a NULL nonce (supabase_vault's view reads such
///   rows; vault_ext stores every ciphertext with its nonce): re-encrypted;
/// - `plaintext`: not base64, or shorter than the 32-byte tag once decoded: it cannot be
///   ciphertext under any key, so it is the value itself;
/// - `ambiguous`: base64 of 32 bytes or more that does not authenticate: a plaintext that looks
///   like base64 (a 64-character hex token does), a ciphertext under another root key, or a
///   damaged one. vault.migrate_from decides (see there).
pub fn supabase_row_kind(id: &Uuid, secret: &str, nonce: Option<&[u8]>) -> VResult<&'static str> {
    let key = keys::lookup(&keys::COMPAT_KEY_ID)?;
    match decrypt(id.as_bytes(), secret.as_bytes(), nonce, &key, Binding::Open) {
        Ok(_) if nonce.is_some() => Ok("ciphertext"),
        Ok(_) => Ok("ciphertext_without_nonce"),
        Err(VaultError::Malformed { .. }) => Ok("plaintext"),
        Err(VaultError::DecryptFailed { .. }) => Ok("ambiguous"),
        Err(e) => Err(e),
    }
}

/// Tags must not hold NULL elements (22004): every client reads them as strings. Refused on every
/// write that sets them (create_secret, update_secret, INSERT, UPDATE of tags), but not on a row
/// that arrives as ciphertext (a pg_dump restore, a migration: it is stored as it comes, and
/// vault_ext's readers take NULL elements), nor on an UPDATE that leaves a row's tags alone.
fn check_tags(
    new: &PgHeapTuple<'_, impl pgrx::WhoAllocated>,
    old: Option<&PgHeapTuple<'_, impl pgrx::WhoAllocated>>,
    arrives_encrypted: bool,
) -> VResult<()> {
    fn tags(row: &PgHeapTuple<'_, impl pgrx::WhoAllocated>) -> Option<Vec<Option<String>>> {
        let tags = row.get_by_name::<pgrx::Array<'_, &str>>("tags").ok().flatten()?;
        Some(tags.iter().map(|t| t.map(str::to_string)).collect())
    }
    let Some(new_tags) = tags(new) else { return Ok(()) };
    if arrives_encrypted || !new_tags.contains(&None) || old.is_some_and(|o| tags(o).as_ref() == Some(&new_tags)) {
        return Ok(());
    }
    Err(VaultError::Refused {
        code: pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        message: "tags of a secret must not contain NULL elements".into(),
        hint: "Remove them, e.g. array_remove(tags, NULL).".into(),
    })
}

/// What the AFTER INSERT row trigger on vault.secrets does: note the create for the audit log.
/// After, not in the encrypting trigger: only rows really inserted count (not an upsert's
/// conflicting row, nor a row a later BEFORE trigger skipped).
pub fn note_create(trigger: &PgTrigger<'_>) -> VResult<()> {
    if let Some(row) = trigger.new() {
        let cols = columns(trigger, &row)?;
        let id = row.get_by_index::<Uuid>(cols.id).ok().flatten();
        let name = row.get_by_index::<&str>(cols.name).ok().flatten();
        let key_id = row.get_by_index::<Uuid>(cols.key_id).ok().flatten();
        if let Some(id) = id {
            audit::record_create(id.as_bytes(), name, key_id);
        }
    }
    Ok(())
}
