//! The Rust trigger functions on vault's tables. Errors are raised here, not returned: pgrx
//! would report a returned error without its SQLSTATE.

use crate::cache::epoch;
use crate::error::OrRaise;
use crate::vault::write;
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
