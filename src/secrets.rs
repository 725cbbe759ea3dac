//! The SQL surface for secrets: the decrypt function behind `vault.decrypted_secrets`, and the
//! BEFORE trigger through which every write of `vault.secrets` is encrypted (so plaintext is
//! never stored, and `create_secret` is a single INSERT).
#![forbid(unsafe_code)]

use crate::cipher::{base64_decode, base64_encode, uuid_text};
use crate::errors::{OrRaise, VResult, VaultError};
use crate::keys::{self, KeyInfo};
use crate::root_key;
use crate::sodium::{self, SecretVec};
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgTrigger, Uuid};
use std::cell::Cell;
use std::num::NonZeroUsize;

/// Decrypt one stored secret with the key's columns passed in (vault.verify_secrets, which
/// reports on rows whose key is missing or unusable; and 0.1.0's view).
#[allow(clippy::too_many_arguments)]
#[pg_extern(stable, parallel_safe, name = "_decrypt")]
fn decrypt_column(
    id: Option<Uuid>,
    secret: Option<&str>,
    nonce: Option<&[u8]>,
    key_uuid: Option<Uuid>,
    key_type: Option<&str>,
    key_num: Option<i64>,
    key_context: Option<&[u8]>,
    key_status: Option<&str>,
    key_fingerprint: Option<&str>,
) -> Option<String> {
    let (id, secret) = (id?, secret?);
    // Per-secret grants: a caller who may not read this secret gets NULL.
    if !crate::grants::may_read(id.as_bytes()).or_raise() {
        return None;
    }
    let text = KeyInfo::from_columns(key_uuid, key_type, key_num, key_context, key_status, key_fingerprint)
        .and_then(|key| decrypt(id.as_bytes(), secret.as_bytes(), nonce, &key))
        .and_then(|plain| into_text(plain, id.as_bytes()));
    Some(text.or_raise())
}

/// Decrypt one stored secret, given its row's key_id (NULL: the compatibility key). The key's
/// metadata is read with a kept plan and cached (across transactions when safe, see
/// readcache.rs), so `vault.decrypted_secrets` is a single-table view: cheap to plan for point
/// lookups, no join for scans.
#[pg_extern(stable, parallel_safe, name = "_decrypt")]
fn decrypt_row(id: Option<Uuid>, secret: Option<&str>, nonce: Option<&[u8]>, key_id: Option<Uuid>) -> Option<String> {
    let (id, secret) = (id?, secret?);
    let plain = decrypt_for_caller(&id, secret, nonce, key_id, "read").or_raise()?;
    Some(into_text(plain, id.as_bytes()).or_raise())
}

/// `vault.read_secret(name)`: the decrypted value by name. The row comes from
/// `vault.decrypted_secrets` read as the caller (so only a role that may read the view gets it),
/// through a plan kept per backend, without its `decrypted_secret` column; the value is then
/// decrypted here with the same rules as `_decrypt` (per-secret grants, `vault.audit_reads`).
/// Without PL/pgSQL and without `SET search_path` per call (every name in the query is
/// schema-qualified), a lookup costs about what the same prepared query does.
#[pg_extern(stable, name = "read_secret")]
fn read_secret(secret_name: Option<&str>) -> String {
    read_by_name(secret_name).or_raise()
}

const READ_SQL: &str = "SELECT d.id, d.secret, d.nonce, d.key_id FROM vault.decrypted_secrets d \
                        WHERE d.name OPERATOR(pg_catalog.=) $1";

thread_local! {
    static READ_PLAN: std::cell::RefCell<Option<pgrx::spi::OwnedPreparedStatement>> =
        const { std::cell::RefCell::new(None) };
}

/// A stored secret as read from the view: id, ciphertext, nonce, key id.
type StoredRow = (Option<Uuid>, Option<String>, Option<Vec<u8>>, Option<Uuid>);

fn read_by_name(name: Option<&str>) -> VResult<String> {
    let shown = || name.unwrap_or("<NULL>").to_string();
    let Some(name) = name else {
        return Err(VaultError::UnknownSecret(shown()));
    };
    let found = Spi::connect(|client| -> Result<Option<StoredRow>, pgrx::spi::Error> {
        let text = [pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::TEXTOID)];
        let rows = crate::plans::select(&READ_PLAN, client, READ_SQL, &text, Some(1), &[name.into()])?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(row) => Ok(Some((row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))),
        }
    })
    .map_err(|e| VaultError::BadArgument {
        message: format!("could not read vault.decrypted_secrets: {e}"),
        hint: None,
    })?;
    let Some((Some(id), Some(secret), nonce, key_id)) = found else {
        return Err(VaultError::UnknownSecret(shown()));
    };
    match decrypt_for_caller(&id, &secret, nonce.as_deref(), key_id, "read")? {
        Some(plain) => into_text(plain, id.as_bytes()),
        None => Err(VaultError::SecretDenied(shown())),
    }
}

/// The read path shared by `_decrypt` and `_mask_secret`: None when per-secret grants keep the
/// calling role out; otherwise the audit line (if on) and the plaintext.
pub fn decrypt_for_caller(
    id: &Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    key_id: Option<Uuid>,
    what: &str,
) -> VResult<Option<SecretVec>> {
    let id = id.as_bytes();
    if !crate::grants::may_read(id)? {
        return Ok(None);
    }
    audit_read(id, what);
    let key_id = key_id.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes());
    let key = keys::lookup_for_read(&key_id)?;
    decrypt(id, secret.as_bytes(), nonce, &key).map(Some)
}

/// With vault.audit_reads on: one LOG line per value handed out (never the value itself).
pub fn audit_read(id: &[u8; 16], what: &str) {
    if crate::guc::audit_reads() {
        let (current, session) = crate::hooks::role_names();
        pgrx::log!(
            "vault_ext audit: role {current:?} (session {session:?}) {what} secret {}",
            keys::uuid_string(id)
        );
    }
}

fn into_text(plain: SecretVec, id: &[u8; 16]) -> VResult<String> {
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

/// Decrypt a stored (base64) secret bound to its row id and nonce.
pub fn decrypt(id: &[u8; 16], secret_b64: &[u8], nonce: Option<&[u8]>, key: &KeyInfo) -> VResult<SecretVec> {
    let dk = key.for_decrypt()?;
    let secret = || keys::uuid_string(id);
    let blob = base64_decode(secret_b64).ok_or_else(|| VaultError::Malformed {
        secret: secret(),
        what: "not valid base64",
    })?;
    dk.decrypt(blob, &uuid_text(id), nonce).map_err(|e| match e {
        crate::cipher::CipherError::Malformed => VaultError::Malformed {
            secret: secret(),
            what: "shorter than its tag, or a nonce of the wrong size",
        },
        crate::cipher::CipherError::Forged => VaultError::DecryptFailed {
            secret: secret(),
            key: key.id_string(),
            stored: key.foreign_fingerprint.clone(),
            loaded: root_key::fingerprint().unwrap_or("none").to_string(),
        },
    })
}

/// Root key rotation, one row: decrypt a secret written under the previous root key and
/// encrypt it for the same key under the current root key (fresh nonce). The value never
/// leaves this function; vault.rotate_root_key() stores the result, which the trigger only
/// checks.
#[pg_extern(volatile, name = "_rewrap")]
fn rewrap(
    id: Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    key_id: Uuid,
) -> TableIterator<'static, (name!(secret, String), name!(nonce, Vec<u8>))> {
    let id = id.as_bytes();
    let rewrapped = keys::lookup(key_id.as_bytes()).and_then(|key| {
        if key.root != Some(root_key::Root::Previous) {
            return Err(VaultError::KeyUnusable {
                key: key.id_string(),
                why: "it is not under the previous root key".into(),
            });
        }
        let plain = decrypt(id, secret.as_bytes(), nonce, &key)?;
        let dk = crate::kdf::data_key(root_key::Root::Current, key.key_type, key.key_num, &key.context)?;
        Ok(encrypt(id, plain.as_slice(), &key, &dk))
    });
    TableIterator::once(rewrapped.or_raise())
}

/// Key rotation of a kept version: decrypt a stored ciphertext of secret `id` under
/// `from_key` (NULL: the compatibility key) and encrypt it for `to_key` with a fresh nonce. The
/// value never leaves this function.
#[pg_extern(volatile, name = "_rekey")]
fn rekey(
    id: Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    from_key: Option<Uuid>,
    to_key: Uuid,
) -> TableIterator<
    'static,
    (
        name!(secret, String),
        name!(nonce, Vec<u8>),
        name!(key_id, Option<Uuid>),
    ),
> {
    let id = id.as_bytes();
    let from = from_key.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes());
    let rekeyed = keys::lookup(&from).and_then(|old| {
        let plain = decrypt(id, secret.as_bytes(), nonce, &old)?;
        let (key, dk) = keys::for_write(Some(to_key.as_bytes()))?;
        let (text, nonce) = encrypt(id, plain.as_slice(), &key, &dk);
        Ok((text, nonce, stored_key_id(&key)))
    });
    TableIterator::once(rekeyed.or_raise())
}

/// Encrypt a plaintext for row `id` under `key` with a fresh random nonce.
fn encrypt(id: &[u8; 16], plaintext: &[u8], key: &KeyInfo, dk: &crate::cipher::DataKey) -> (String, Vec<u8>) {
    let mut nonce = vec![0u8; key.key_type.nonce_bytes()];
    sodium::random_nonce(&mut nonce);
    let blob = dk.encrypt(plaintext, &uuid_text(id), Some(&nonce));
    (base64_encode(&blob), nonce)
}

/// A row that arrives with a nonce already holds ciphertext: store it as is once it is well
/// formed for its key type (it may belong to another root key, e.g. a restore; that shows at
/// decryption, not here).
fn check_ciphertext(id: &[u8; 16], secret_b64: &[u8], nonce: &[u8], key: &KeyInfo) -> VResult<()> {
    let secret = || keys::uuid_string(id);
    let blob = base64_decode(secret_b64).ok_or_else(|| VaultError::Malformed {
        secret: secret(),
        what: "not valid base64",
    })?;
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
}

thread_local! {
    static COLUMNS: Cell<Option<(pg_sys::Oid, Columns)>> = const { Cell::new(None) };
}

/// Forget where the columns are (any relcache invalidation, see readcache.rs).
pub fn forget_columns() {
    COLUMNS.with(|c| c.set(None));
}

fn shape_err() -> VaultError {
    VaultError::Internal("vault.secrets does not have the columns vault_ext expects")
}

fn columns(trigger: &PgTrigger<'_>, row: &PgHeapTuple<'_, impl pgrx::WhoAllocated>) -> VResult<Columns> {
    let relid = crate::hooks::trigger_relid(trigger);
    if let Some((cached, c)) = COLUMNS.with(Cell::get) {
        if cached == relid {
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
    };
    if crate::readcache::tracking() {
        COLUMNS.with(|x| x.set(Some((relid, c))));
    }
    Ok(c)
}

/// The row's fields the trigger works with, borrowed from the row.
struct Row<'t> {
    id: Option<[u8; 16]>,
    secret: Option<&'t str>,
    key_id: Option<[u8; 16]>,
    nonce: Option<&'t [u8]>,
}

fn read_row<'t>(t: &'t PgHeapTuple<'_, impl pgrx::WhoAllocated>, c: &Columns) -> VResult<Row<'t>> {
    let uuid = |n| t.get_by_index::<Uuid>(n).map(|u| u.map(|u| *u.as_bytes()));
    Ok(Row {
        id: uuid(c.id).map_err(|_| shape_err())?,
        secret: t.get_by_index::<&str>(c.secret).map_err(|_| shape_err())?,
        key_id: uuid(c.key_id).map_err(|_| shape_err())?,
        nonce: t.get_by_index::<&[u8]>(c.nonce).map_err(|_| shape_err())?,
    })
}

/// The stored key reference for a key: NULL for the compatibility key, as supabase_vault rows.
fn stored_key_id(key: &KeyInfo) -> Option<Uuid> {
    (!key.is_compat()).then(|| Uuid::from_bytes(key.id))
}

/// What the trigger must do with NEW.
enum Action {
    Keep,
    /// NEW.secret is plaintext: encrypt it (key: NEW.key_id, or the default key).
    Encrypt,
    /// NEW.secret is ciphertext: check it is well formed.
    Check,
    /// Same value, new id or key: decrypt OLD, encrypt for NEW.
    Reencrypt(SecretVec),
}

/// BEFORE INSERT OR UPDATE on vault.secrets.
///
/// - INSERT with nonce NULL: `secret` is plaintext, encrypted here with a fresh nonce.
/// - INSERT with a nonce: ciphertext (pg_dump restore, migration), checked and stored as is.
/// - UPDATE with nonce set to NULL, or `secret` changed and nonce unchanged: plaintext.
/// - UPDATE of id or key_id alone: re-encrypted for the new id/key with a fresh nonce.
#[pg_trigger]
fn secrets_encrypt<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    // Errors are raised here, not returned: pgrx would report a returned error without its SQLSTATE.
    Ok(encrypt_row(trigger).unwrap_or_else(|e| crate::errors::raise(e)))
}

fn encrypt_row<'a>(trigger: &'a PgTrigger<'a>) -> VResult<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
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
                        Action::Reencrypt(decrypt(&old_id, secret.as_bytes(), o.nonce, &old_key)?)
                    }
                    (false, false) => Action::Keep,
                }
            }
        };

    let reencrypted;
    let plain = match action {
        Action::Keep => return Ok(Some(new_tuple)),
        Action::Check => {
            let key = keys::lookup(new.key_id.as_ref().unwrap_or(&keys::COMPAT_KEY_ID))?;
            check_ciphertext(&id, secret.as_bytes(), new.nonce.unwrap_or_default(), &key)?;
            return Ok(Some(new_tuple));
        }
        // NEW.secret is the plaintext: encrypted straight from the row, never copied.
        Action::Encrypt => secret.as_bytes(),
        Action::Reencrypt(p) => {
            reencrypted = p;
            reencrypted.as_slice()
        }
    };
    let (key, dk) = keys::for_write(new.key_id.as_ref())?;
    let (text, nonce) = encrypt(&id, plain, &key, &dk);
    let mut values = vec![(cols.secret, text.into_datum()), (cols.nonce, nonce.into_datum())];
    // Leave key_id alone when it already names this key.
    let key_id = stored_key_id(&key);
    if key_id.map(|u| *u.as_bytes()) != new.key_id {
        values.push((cols.key_id, key_id.into_datum()));
    }
    Ok(crate::hooks::with_columns_replaced(trigger, &values))
}

/// AFTER INSERT on vault.secrets: note the create for the audit log. After, not in the
/// encrypting trigger: only rows really inserted count (not an upsert's conflicting row, nor a
/// row a later BEFORE trigger skipped).
#[pg_trigger]
fn secrets_audit_create<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    if let Some(row) = trigger.new() {
        let cols = columns(trigger, &row).unwrap_or_else(|e| crate::errors::raise(e));
        let id = row.get_by_index::<Uuid>(cols.id).ok().flatten();
        let name = row.get_by_index::<&str>(cols.name).ok().flatten();
        let key_id = row.get_by_index::<Uuid>(cols.key_id).ok().flatten();
        if let Some(id) = id {
            crate::audit::record_create(id.as_bytes(), name, key_id);
        }
    }
    Ok(None)
}
