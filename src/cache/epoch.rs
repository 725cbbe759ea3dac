//! Generations and stamps: when a cached entry may be used.
//!
//! Two per-backend counters:
//! - the *generation*, bumped by every relcache invalidation this backend processes (another
//!   session committed a change to vault.keys or vault.secret_acl, whose statement triggers
//!   queue one; an ALTER TABLE of vault.secrets; any relation's), by every pg_proc syscache
//!   invalidation (a function created, replaced or dropped: what vault::log_names computes from)
//!   and at once when this transaction changes keys or grants itself (`changed_here`);
//! - the *transaction*, bumped at the end of every transaction.
//!
//! An entry stamped `for_transaction` is valid until either counter moves; one stamped
//! `across_transactions` until the generation moves. A load (`load`) may be kept across
//! transactions only when it is known to be at least as new as every invalidation already
//! processed: it ran under a snapshot taken at load time (never in parallel mode, where none
//! can be), and this transaction has not itself changed keys or grants (it would see its own
//! uncommitted rows). An invalidation that arrives while it runs leaves it stale at once.
//!
//! Without preloading the callbacks are not registered, so no stamp is ever valid: nothing
//! learned about a table is kept.

use crate::error::{VResult, VaultError};
use crate::ffi::pg;
use pgrx::pg_sys;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static TRANSACTION: Cell<u64> = const { Cell::new(0) };
    /// The transaction (counter value) that changed keys or grants here, plus one; 0: none.
    static CHANGED_IN: Cell<u64> = const { Cell::new(0) };
}

/// Set in the postmaster while preloading, inherited by every backend.
static TRACKING: AtomicBool = AtomicBool::new(false);

/// Start counting (from `_PG_init`, while preloading).
pub fn track() {
    pg::on_relcache_invalidation(|| bump(&GENERATION));
    pg::on_function_invalidation(|| bump(&GENERATION));
    pg::on_transaction_end(|| bump(&TRANSACTION));
    TRACKING.store(true, Ordering::Relaxed);
}

fn bump(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    counter.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Whether this process hears about every invalidation and transaction end.
pub fn tracking() -> bool {
    TRACKING.load(Ordering::Relaxed)
}

/// When a cached entry was loaded, and for how long it may be used.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    generation: u64,
    /// None: valid across transactions.
    transaction: Option<u64>,
}

impl Stamp {
    /// Valid until the end of this transaction or the next invalidation.
    pub fn for_transaction() -> Stamp {
        Stamp {
            generation: GENERATION.with(Cell::get),
            transaction: Some(TRANSACTION.with(Cell::get)),
        }
    }

    /// Valid until the next invalidation.
    pub fn across_transactions() -> Stamp {
        Stamp {
            generation: GENERATION.with(Cell::get),
            transaction: None,
        }
    }

    pub fn is_valid(&self) -> bool {
        tracking()
            && self.generation == GENERATION.with(Cell::get)
            && self.transaction.is_none_or(|t| t == TRANSACTION.with(Cell::get))
    }
}

/// A trigger saw this transaction change vault.keys or vault.secret_acl (`relid`): what this
/// backend cached is stale now, and every other backend learns it when this one commits.
pub fn changed_here(relid: pg_sys::Oid) {
    CHANGED_IN.with(|c| c.set(TRANSACTION.with(Cell::get).wrapping_add(1)));
    bump(&GENERATION);
    pg::announce_change(relid);
}

fn changed_in_this_transaction() -> bool {
    CHANGED_IN.with(Cell::get) == TRANSACTION.with(Cell::get).wrapping_add(1)
}

/// Run a load of table contents; returns its result and the stamp it may be cached under.
pub fn load<T>(read: impl FnOnce() -> VResult<T>) -> VResult<(T, Stamp)> {
    if pg::in_parallel_mode() {
        return Ok((read()?, Stamp::for_transaction()));
    }
    let across = Stamp::across_transactions();
    let value = pg::with_latest_snapshot(read)
        .unwrap_or_else(|| Err(VaultError::Internal("parallel mode began during a load")))?;
    let stamp = if changed_in_this_transaction() {
        Stamp {
            transaction: Some(TRANSACTION.with(Cell::get)),
            ..across
        }
    } else {
        across
    };
    Ok((value, stamp))
}
