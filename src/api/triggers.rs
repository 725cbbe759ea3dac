//! The Rust trigger functions on vault's tables. Errors are raised here, not returned: pgrx
//! would report a returned error without its SQLSTATE.

use crate::cache::epoch;
use crate::error::OrRaise;
use crate::vault::{audit, versions, write};
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgTrigger, PgTriggerError};

type TriggerResult<'a> = Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError>;

/// BEFORE INSERT OR UPDATE on vault.secrets: every write is encrypted (see `write::encrypt_row`),
/// so plaintext is never stored and `create_secret` is a single INSERT.
#[pg_trigger]
fn secrets_encrypt<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    Ok(write::encrypt_row(trigger).or_raise())
}

/// AFTER INSERT on vault.secrets: note the create for the audit log.
#[pg_trigger]
fn secrets_audit_create<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    write::note_create(trigger).or_raise();
    Ok(None)
}

/// Statement trigger on vault.keys: cached key metadata is stale for this transaction now, and
/// for every other backend once it commits.
#[pg_trigger]
fn keys_changed<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    epoch::changed_here(trigger.relation()?.oid());
    Ok(None)
}

/// Statement trigger on vault.secret_acl: the same for cached grants.
#[pg_trigger]
fn grants_changed<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    epoch::changed_here(trigger.relation()?.oid());
    Ok(None)
}

/// AFTER UPDATE on vault.secrets, per row: note what changed for the audit log.
#[pg_trigger]
fn secrets_audit_update<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    audit::rows::secret_updated(trigger).or_raise();
    Ok(None)
}

/// AFTER UPDATE on vault.secrets, per statement: one `reencrypt` row for the statement's
/// re-encrypted rows.
#[pg_trigger]
fn secrets_audit_reencrypt<'a>(_trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    audit::end_update_statement();
    Ok(None)
}

/// AFTER DELETE on vault.secrets, per row.
#[pg_trigger]
fn secrets_audit_delete<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    audit::rows::secret_deleted(trigger).or_raise();
    Ok(None)
}

/// BEFORE TRUNCATE on vault.secrets: one audit row.
#[pg_trigger]
fn secrets_audit_truncate<'a>(_trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    audit::rows::secrets_truncated().or_raise();
    Ok(None)
}

/// AFTER INSERT OR DELETE on vault.secret_acl, per row: `grant` / `revoke`.
#[pg_trigger]
fn secret_acl_audit<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    audit::rows::grant_changed(trigger).or_raise();
    Ok(None)
}

/// AFTER INSERT OR UPDATE OR DELETE (per row) and TRUNCATE on vault.keys.
#[pg_trigger]
fn keys_audit<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    audit::rows::key_changed(trigger).or_raise();
    Ok(None)
}

/// BEFORE UPDATE on vault.secrets: keep the value a change replaces (see `versions::archive`).
#[pg_trigger]
fn secrets_archive<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    Ok(versions::archive(trigger).or_raise())
}

/// BEFORE INSERT OR UPDATE on vault.secret_versions (see `versions::guard`).
#[pg_trigger]
fn secret_versions_guard<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    Ok(versions::guard(trigger).or_raise())
}
