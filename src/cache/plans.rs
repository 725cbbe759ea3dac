//! Read-only SPI queries whose plan is kept for the life of the backend: prepared on first use
//! and reused after (PostgreSQL's plan cache replans one when an object it uses changes). The
//! read path's lookups run once per transaction or per call, where planning would cost more
//! than the query.
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::thread::LocalKey;

/// Where a query's kept plan lives: a `thread_local!` of its module.
pub type Slot = LocalKey<RefCell<Option<OwnedPreparedStatement>>>;

/// Run the SELECT `sql` (parameter types `types`) through the plan kept in `slot`.
pub fn select<'conn>(
    slot: &'static Slot,
    client: &SpiClient<'conn>,
    sql: &str,
    types: &[PgOid],
    limit: Option<std::ffi::c_long>,
    args: &[DatumWithOid<'_>],
) -> SpiResult<SpiTupleTable<'conn>> {
    if slot.with(|p| p.borrow().is_none()) {
        let plan = client.prepare(sql, types)?.keep();
        slot.with(|p| *p.borrow_mut() = Some(plan));
    }
    slot.with(|p| match p.borrow().as_ref() {
        Some(plan) => client.select(plan, limit, args),
        None => client.select(sql, limit, args),
    })
}
