//! The functions behind `vault.decrypted_secrets`, `vault.read_secret` and rotation.

use crate::error::OrRaise;
use crate::vault::{audit, read, write};
use pgrx::prelude::*;
use pgrx::Uuid;

/// Decrypt one stored secret with the key's columns passed in (vault.verify_secrets, which
/// reports on rows whose key is missing or unusable; and 0.1.0's view). NULL when per-secret
/// grants keep the caller out.
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
    read::with_key_columns(
        &id,
        secret,
        nonce,
        key_uuid,
        key_type,
        key_num,
        key_context,
        key_status,
        key_fingerprint,
    )
    .or_raise()
}

/// Decrypt one stored secret, given its row's key_id (NULL: the compatibility key). The key's
/// metadata is read with a kept plan and cached (across transactions when safe, see
/// cache::epoch), so `vault.decrypted_secrets` is a single-table view: cheap to plan for point
/// lookups, no join for scans.
#[pg_extern(stable, parallel_safe, name = "_decrypt")]
fn decrypt_row(id: Option<Uuid>, secret: Option<&str>, nonce: Option<&[u8]>, key_id: Option<Uuid>) -> Option<String> {
    let (id, secret) = (id?, secret?);
    let plain = read::for_caller(&id, secret, nonce, key_id, "read").or_raise()?;
    Some(read::into_text(plain, id.as_bytes()).or_raise())
}

/// `vault.read_secret(name)`: the decrypted value by name, with `_decrypt`'s rules. Without
/// PL/pgSQL and without `SET search_path` per call (every name in its query is
/// schema-qualified), a lookup costs about what the same prepared query does.
#[pg_extern(stable, name = "read_secret")]
fn read_secret(secret_name: Option<&str>) -> String {
    read::by_name(secret_name).or_raise()
}

/// Root key rotation, one row (see `write::rewrap`). vault.rotate_root_key() stores the
/// result, which the trigger only checks.
#[pg_extern(volatile, name = "_rewrap")]
fn rewrap(
    id: Uuid,
    secret: &str,
    nonce: Option<&[u8]>,
    key_id: Uuid,
) -> TableIterator<'static, (name!(secret, String), name!(nonce, Vec<u8>))> {
    let (text, new_nonce) = write::rewrap(&id, secret, nonce, &key_id).or_raise();
    // Only the secret's own current ciphertext, rewrapped, is the same value: an old version's
    // rewrapped and written back is a change of value (kept as a version, audited).
    if write::is_stored(&id, secret, nonce).or_raise() {
        audit::note_rewrapped(&id, &new_nonce);
    }
    TableIterator::once((text, new_nonce))
}

/// Key rotation of a kept version (see `write::rekey`).
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
    TableIterator::once(write::rekey(&id, secret, nonce, from_key, &to_key).or_raise())
}

/// vault.migrate_from: how a row of supabase_vault's table holds its value (see
/// `write::supabase_row_kind`). Says whether a text is ciphertext for an id, never a value.
#[pg_extern(volatile, name = "_supabase_row_kind")]
fn supabase_row_kind(id: Uuid, secret: &str, nonce: Option<&[u8]>) -> &'static str {
    write::supabase_row_kind(&id, secret, nonce).or_raise()
}
