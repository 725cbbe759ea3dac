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
    /// Bumped by every write to vault.secrets (here, or committed elsewhere): what the use path
    /// keeps (decrypted keys, vault::usage) is stale then; nothing else is.
    static USE_GENERATION: Cell<u64> = const { Cell::new(0) };
    /// The transaction that wrote vault.secrets here, plus one; 0: none.
    static USE_CHANGED_IN: Cell<u64> = const { Cell::new(0) };
    /// vault.secret_kinds' OID in this database, whose relcache invalidations carry that signal
    /// (None: not looked up yet; Some(None): no such table). Learned at the first load.
    static USE_SIGNAL: Cell<Option<Option<pg_sys::Oid>>> = const { Cell::new(None) };
}

/// Set in the postmaster while preloading, inherited by every backend.
static TRACKING: AtomicBool = AtomicBool::new(false);

/// Start counting (from `_PG_init`, while preloading).
pub fn track() {
    pg::on_relcache_invalidation(on_relcache);
    pg::on_function_invalidation(|| bump(&GENERATION));
    pg::on_transaction_end(|| bump(&TRANSACTION));
    TRACKING.store(true, Ordering::Relaxed);
}

/// A relcache invalidation: of vault.secret_kinds, the use path's signal (see `use_changed_here`),
/// which makes only the use path's kept keys stale; of anything else (or everything), all.
fn on_relcache(relid: pg_sys::Oid) {
    let signal = USE_SIGNAL.with(Cell::get);
    if relid != pg_sys::InvalidOid && Some(relid) == signal.flatten() {
        bump(&USE_GENERATION);
    } else {
        bump(&GENERATION);
        if relid == pg_sys::InvalidOid {
            // A cache reset: the OID is looked up again at the next load.
            USE_SIGNAL.with(|s| s.set(None));
        }
    }
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

/// The OID of vault.secret_kinds, looked up once per backend (as the bootstrap superuser: a
/// role without USAGE on the schema must not fail). Before it is known, its invalidations count
/// as any relation's (everything stale: slower, never wrong).
fn use_signal() -> Option<pg_sys::Oid> {
    if let Some(known) = USE_SIGNAL.with(Cell::get) {
        return known;
    }
    if pg::in_parallel_mode() {
        return None;
    }
    // Provisional, so the lookup's own parse (which may load the log hook's names) does not
    // look it up again.
    USE_SIGNAL.with(|s| s.set(Some(None)));
    // A read-only SPI connection: Spi::get_one takes a mutable one, which assigns a transaction
    // id, and on a standby every statement then failed ("cannot assign TransactionIds during
    // recovery"; this lookup runs at the first load of the log hook's names).
    let oid = pg::as_user(pg::bootstrap_superuser(), || {
        pgrx::Spi::connect(|client| {
            client
                .select(
                    "SELECT pg_catalog.to_regclass('vault.secret_kinds')::pg_catalog.oid",
                    Some(1),
                    &[],
                )?
                .first()
                .get_one::<pg_sys::Oid>()
        })
    })
    .ok()
    .flatten();
    USE_SIGNAL.with(|s| s.set(Some(oid)));
    oid
}

/// A statement trigger saw this transaction write vault.secrets: the use path's kept keys are
/// stale here at once, and in every other backend when this one commits (a relcache
/// invalidation of vault.secret_kinds, which no other cache listens to).
pub fn use_changed_here() {
    USE_CHANGED_IN.with(|c| c.set(TRANSACTION.with(Cell::get).wrapping_add(1)));
    bump(&USE_GENERATION);
    if let Some(oid) = use_signal() {
        pg::announce_change(oid);
    }
}

/// When the use path's kept keys may be used: the cache stamp of their load, and no write to
/// vault.secrets since.
#[derive(Clone, Copy, Debug)]
pub struct UseStamp {
    stamp: Stamp,
    use_generation: u64,
    /// Some: only in this transaction (it wrote vault.secrets itself).
    transaction: Option<u64>,
}

impl UseStamp {
    pub fn is_valid(&self) -> bool {
        self.stamp.is_valid()
            && self.use_generation == USE_GENERATION.with(Cell::get)
            && self.transaction.is_none_or(|t| t == TRANSACTION.with(Cell::get))
    }
}

/// `load` for the use path: its stamp also goes stale with any write to vault.secrets.
pub fn load_for_use<T>(read: impl FnOnce() -> VResult<T>) -> VResult<(T, UseStamp)> {
    use_signal();
    let use_generation = USE_GENERATION.with(Cell::get);
    let (value, stamp) = load(read)?;
    let wrote_here = USE_CHANGED_IN.with(Cell::get) == TRANSACTION.with(Cell::get).wrapping_add(1);
    let transaction = (wrote_here || pg::in_parallel_mode()).then(|| TRANSACTION.with(Cell::get));
    Ok((
        value,
        UseStamp {
            stamp,
            use_generation,
            transaction,
        },
    ))
}

/// Run a load of table contents; returns its result and the stamp it may be cached under.
pub fn load<T>(read: impl FnOnce() -> VResult<T>) -> VResult<(T, Stamp)> {
    if pg::in_parallel_mode() {
        return Ok((read()?, Stamp::for_transaction()));
    }
    // Every backend loads something early (the log hook's names): it learns the use path's
    // signal then, so writes to vault.secrets never make its other caches stale.
    use_signal();
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
