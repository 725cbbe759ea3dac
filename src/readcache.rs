//! When the read path's caches (key metadata, per-secret grants) may outlive a transaction.
//!
//! A point lookup is one short transaction: reading vault.keys and vault.secret_acl again in
//! each one cost a quarter of the lookup. So what the read path loads is kept until any session
//! commits a change to those tables: their statement triggers queue a relcache invalidation
//! (`changed_here`), which every backend processes before its next statement and which clears
//! the caches here (`on_invalidation`). A load is kept across transactions only when it is
//! known to be at least as new as every invalidation already processed:
//! - it ran under a snapshot taken at load time (never in parallel mode, where none can be);
//! - no invalidation arrived while it ran;
//! - this transaction has not itself changed keys or grants (it would see its own
//!   uncommitted rows).
//!
//! Anything else is dropped when the transaction ends, as before.
#![forbid(unsafe_code)]

use crate::errors::VResult;
use crate::hooks;
use pgrx::pg_sys;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static CHANGED_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Set in the postmaster while preloading, inherited by every backend.
static TRACKING: AtomicBool = AtomicBool::new(false);

/// Receive relcache invalidations from now on (`_PG_init`, while preloading).
pub fn track() {
    hooks::on_relcache_invalidation(on_invalidation);
    TRACKING.store(true, Ordering::Relaxed);
}

/// Whether this process hears about every relcache invalidation: without it (the library
/// loaded in a session, not preloaded) nothing learned about a table may be kept.
pub fn tracking() -> bool {
    TRACKING.load(Ordering::Relaxed)
}

/// Relcache invalidation callback.
fn on_invalidation() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    crate::secrets::forget_columns();
    crate::keys::forget_read_cache(false);
    crate::grants::forget(false);
}

/// A trigger saw this transaction change vault.keys or vault.secret_acl (`relid`).
pub fn changed_here(relid: pg_sys::Oid) {
    CHANGED_HERE.with(|c| c.set(true));
    crate::keys::clear_at_transaction_end();
    hooks::announce_change(relid);
    crate::keys::forget_read_cache(false);
    crate::grants::forget(false);
}

/// Transaction end: drop what may not outlive it.
pub fn at_transaction_end() {
    CHANGED_HERE.with(|c| c.set(false));
    crate::keys::forget_read_cache(true);
    crate::grants::forget(true);
}

/// Run a read-path load; returns its result and whether it may be kept across transactions.
pub fn load<T>(read: impl FnOnce() -> VResult<T>) -> VResult<(T, bool)> {
    if hooks::in_parallel_mode() {
        return Ok((read()?, false));
    }
    let before = GENERATION.with(Cell::get);
    let value = hooks::with_latest_snapshot(read)
        .unwrap_or_else(|| Err(crate::errors::VaultError::Internal("parallel mode began during a load")))?;
    let keep = !CHANGED_HERE.with(Cell::get) && GENERATION.with(Cell::get) == before;
    Ok((value, keep))
}
