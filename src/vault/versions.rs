//! Kept versions (vault.secret_versions) are written by vault_ext only, as the audit trail is:
//! the archiving trigger on vault.secrets inserts and prunes them as the extension owner, with
//! the writer's role and the time read from the backend; vault_admin may read them and may
//! update only their ciphertext, nonce and key (key rotation), and only with ciphertext that
//! decrypts for the secret under that key. A trigger function cannot be called from SQL, so
//! nobody can make it keep or prune versions outside a change of a secret's value.

use crate::error::{VResult, VaultError};
use crate::ffi::pg;
use crate::settings;
use crate::vault::{audit, write};
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgSqlErrorCode, PgTrigger, Uuid};

type Row<'a> = PgHeapTuple<'a, AllocatedByPostgres>;

use super::audit::rows::col;

const KEEP_SQL: &str = "\
INSERT INTO vault.secret_versions (secret_id, version, secret, key_id, nonce, created_at, created_by)
VALUES ($1, $2, $3, $4, $5, pg_catalog.now(), $6::pg_catalog.name)";
const PRUNE_SQL: &str = "\
DELETE FROM vault.secret_versions v
 WHERE v.secret_id OPERATOR(pg_catalog.=) $1 AND v.version OPERATOR(pg_catalog.<=) $2";

/// BEFORE UPDATE on vault.secrets (it sorts before the encrypting trigger): when the value
/// changes, keep the stored value it replaces as a version and bump `version`; otherwise keep
/// `version` as it was. A new value: nonce NULL (plaintext), `secret` changed with the nonce
/// left alone, or ciphertext that vault._rewrap did not make for this row in this transaction
/// (e.g. another row's copied in). Re-encryption (key or id change, root key rotation) is not.
pub fn archive<'a>(trigger: &'a PgTrigger<'a>) -> VResult<Option<Row<'a>>> {
    let (Some(old), Some(new)) = (trigger.old(), trigger.new()) else {
        return Ok(trigger.new());
    };
    let (old_id, new_id) = (col::<Uuid>(&old, "id")?, col::<Uuid>(&new, "id")?);
    let (old_secret, new_secret) = (col::<&str>(&old, "secret")?, col::<&str>(&new, "secret")?);
    let (old_nonce, new_nonce) = (col::<&[u8]>(&old, "nonce")?, col::<&[u8]>(&new, "nonce")?);
    let old_version = col::<i32>(&old, "version")?.unwrap_or(1);
    let secret_changed = old_secret != new_secret;
    let nonce_changed = old_nonce != new_nonce;
    let new_value = match (new_nonce, new_id) {
        (None, _) => true,
        _ if secret_changed && !nonce_changed => true,
        (Some(n), Some(id)) => (secret_changed || nonce_changed) && !audit::was_rewrapped(&id, n),
        (Some(_), None) => secret_changed || nonce_changed,
    };
    let version = if new_value {
        let keep = settings::MAX_VERSIONS.get();
        let (Some(id), Some(secret)) = (old_id, old_secret) else {
            return Err(VaultError::Internal("a stored secret without id or ciphertext"));
        };
        let (writer, _) = pg::role_names();
        let owner = audit::extension_owner()?;
        pg::as_user(owner, || {
            Spi::connect_mut(|client| -> Result<(), pgrx::spi::Error> {
                if keep > 0 {
                    let key_id = col::<Uuid>(&old, "key_id").ok().flatten();
                    client.update(
                        KEEP_SQL,
                        None,
                        &[
                            id.into(),
                            old_version.into(),
                            secret.into(),
                            key_id.into(),
                            old_nonce.into(),
                            writer.as_str().into(),
                        ],
                    )?;
                }
                client.update(PRUNE_SQL, None, &[id.into(), (old_version - keep).into()])?;
                Ok(())
            })
        })
        .map_err(VaultError::spi("keep a version in vault.secret_versions"))?;
        old_version + 1
    } else {
        old_version
    };
    if col::<i32>(&new, "version")? == Some(version) {
        return Ok(Some(new));
    }
    let attno = new
        .attributes()
        .find(|(_, a)| !a.attisdropped && a.name() == "version")
        .map(|(n, _)| n)
        .ok_or(VaultError::MissingColumn {
            column: "version",
            typ: "integer",
        })?;
    Ok(pg::with_columns_replaced(trigger, &[(attno, version.into_datum())]))
}

/// BEFORE INSERT OR UPDATE on vault.secret_versions: a version is ciphertext with its nonce
/// (checked to decrypt for its secret when the ciphertext changes: key rotation); its secret,
/// number, time and author are changed by nobody but the table's owner and superusers (the
/// cascade of a secret's id change runs as the owner).
pub fn guard<'a>(trigger: &'a PgTrigger<'a>) -> VResult<Option<Row<'a>>> {
    let Some(new) = trigger.new() else {
        return Ok(None);
    };
    let id = col::<Uuid>(&new, "secret_id")?.ok_or(VaultError::NullColumn("secret_id"))?;
    let secret = col::<&str>(&new, "secret")?.ok_or(VaultError::NullColumn("secret"))?;
    let nonce = col::<&[u8]>(&new, "nonce")?;
    let key_id = col::<Uuid>(&new, "key_id")?;
    let Some(old) = trigger.old() else {
        // INSERT: only the owner may (the archiving trigger, a restore by a superuser).
        write::check_version_ciphertext(&id, secret, nonce, key_id, false)?;
        return Ok(Some(new));
    };
    let metadata_changed = new
        .attributes()
        .filter(|(_, a)| !a.attisdropped && ["secret_id", "version", "created_at", "created_by"].contains(&a.name()))
        .any(|(n, a)| !pg::trigger_column_equal(trigger, n, a.attbyval, a.attlen));
    if metadata_changed
        && !pg::current_user_is_superuser()
        && !pg::current_user_has_privs_of(pg::trigger_rel_owner(trigger))
    {
        return Err(VaultError::Refused {
            code: PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message:
                "the secret_id, version, created_at and created_by of a kept version are written by vault_ext only"
                    .into(),
            hint: "Key rotation may change a version's ciphertext, nonce and key; nothing else changes a version."
                .into(),
        });
    }
    let content_changed = col::<&str>(&old, "secret")? != Some(secret)
        || col::<&[u8]>(&old, "nonce")? != nonce
        || col::<Uuid>(&old, "key_id")? != key_id;
    if content_changed {
        write::check_version_ciphertext(&id, secret, nonce, key_id, true)?;
        let old_secret = col::<&str>(&old, "secret")?.unwrap_or_default();
        write::check_version_value_kept(
            &id,
            (old_secret, col::<&[u8]>(&old, "nonce")?, col::<Uuid>(&old, "key_id")?),
            (secret, nonce, key_id),
        )?;
    }
    Ok(Some(new))
}
