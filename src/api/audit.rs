//! The audit trail's SQL functions: retention, and the event rows of vault's own functions
//! (their roles and times come from the backend, never from arguments).

use crate::error::OrRaise;
use crate::vault::audit;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::Uuid;

/// Delete audit rows older than the interval (never younger than vault.audit_min_retention).
#[pg_extern(volatile, name = "purge_audit_log")]
fn purge_audit_log(older_than: Option<Interval>) -> i64 {
    audit::purge(older_than).or_raise()
}

/// vault.rollback_secret's audit row (after its value change).
#[pg_extern(volatile, name = "_audit_rollback")]
fn audit_rollback(secret_id: Uuid, to_version: i32) {
    audit::rollback_event(secret_id, to_version).or_raise()
}

/// vault.rotate_key's audit row (after the new key's creation).
#[pg_extern(volatile, name = "_audit_rotate_key")]
fn audit_rotate_key(old_key: Option<Uuid>, new_key: Uuid) {
    audit::rotate_key_event(old_key, new_key).or_raise()
}

/// vault.rotate_root_key's audit row.
#[pg_extern(volatile, name = "_audit_rotate_root_key")]
fn audit_rotate_root_key(secrets: i64) {
    audit::rotate_root_key_event(secrets).or_raise()
}

/// Whether vault._rewrap made this ciphertext (its nonce) for this secret in this transaction:
/// the archive trigger keeps the replaced value as a version when it did not.
#[pg_extern(volatile, name = "_rewrapped")]
fn rewrapped(id: Uuid, nonce: &[u8]) -> bool {
    audit::was_rewrapped(&id, nonce)
}
