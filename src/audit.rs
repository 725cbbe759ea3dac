//! `create` rows of vault.audit_log, noted by an AFTER INSERT row trigger. Creates are the hot
//! path (every `create_secret`): a PL/pgSQL statement trigger with a transition table, or one
//! SPI insert per row, cost more than the insert itself. So each create is noted in memory
//! with who/when at the time of the change, and all of a transaction's creates are inserted
//! in one statement just before it commits (as the extension owner: the audit table is
//! append-only and writers need no privilege on it). Creates made in a subtransaction that
//! rolls back are dropped with it. Updates, deletes, grants and rotations are audited by the
//! SQL triggers and functions.
#![forbid(unsafe_code)]

use crate::errors::{VResult, VaultError};
use crate::hooks;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{pg_sys, register_subxact_callback, register_xact_callback, PgSubXactCallbackEvent, PgXactCallbackEvent};
use pgrx::{PgBuiltInOids, PgOid, Uuid};
use std::cell::{Cell, RefCell};

struct Create {
    subxact: pg_sys::SubTransactionId,
    at_us: i64,
    session_role: i64,
    current_role: i64,
    id: Uuid,
    name: Option<String>,
    key_id: Option<Uuid>,
}

/// Everything in the statement is schema-qualified: the plan is made under the caller's
/// search_path.
const FLUSH_SQL: &str =
    "INSERT INTO vault.audit_log (at, session_role, \"current_role\", action, secret_id, secret_name, detail) \
     SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz OPERATOR(pg_catalog.+) \
              (t.us::pg_catalog.float8 OPERATOR(pg_catalog.*) '1 microsecond'::pg_catalog.interval), \
            pg_catalog.pg_get_userbyid(t.sess::pg_catalog.oid), pg_catalog.pg_get_userbyid(t.cur::pg_catalog.oid), \
            'create', t.id, t.name, pg_catalog.jsonb_build_object('key_id', t.key, 'version', 1) \
       FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.int8[]), \
                       pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.uuid[]), \
                       pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.uuid[])) \
            AS t(us, sess, cur, id, name, key)";

thread_local! {
    static PENDING: RefCell<Vec<Create>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
    static FLUSH_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

/// Note one create, to be written when the transaction commits.
pub fn record_create(id: &[u8; 16], name: Option<&str>, key_id: Option<Uuid>) {
    let (current, session, subxact, at_us) = hooks::change_context();
    PENDING.with(|p| {
        p.borrow_mut().push(Create {
            subxact,
            at_us,
            session_role: i64::from(session.to_u32()),
            current_role: i64::from(current.to_u32()),
            id: Uuid::from_bytes(*id),
            name: name.map(str::to_string),
            key_id,
        })
    });
    if !CALLBACKS.with(|c| c.replace(true)) {
        register_xact_callback(PgXactCallbackEvent::PreCommit, || {
            flush().unwrap_or_else(|e| crate::errors::raise(e))
        });
        register_xact_callback(PgXactCallbackEvent::PrePrepare, || {
            flush().unwrap_or_else(|e| crate::errors::raise(e))
        });
        register_xact_callback(PgXactCallbackEvent::Commit, forget);
        register_xact_callback(PgXactCallbackEvent::Prepare, forget);
        register_xact_callback(PgXactCallbackEvent::Abort, forget);
        register_subxact_callback(PgSubXactCallbackEvent::AbortSub, |sub, _parent| {
            PENDING.with(|p| p.borrow_mut().retain(|c| c.subxact != sub));
        });
        register_subxact_callback(PgSubXactCallbackEvent::CommitSub, |sub, parent| {
            PENDING.with(|p| {
                for c in p.borrow_mut().iter_mut().filter(|c| c.subxact == sub) {
                    c.subxact = parent;
                }
            });
        });
    }
}

fn forget() {
    PENDING.with(|p| p.borrow_mut().clear());
    CALLBACKS.with(|c| c.set(false));
}

fn flush() -> VResult<()> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        return Ok(());
    }
    // Just before commit no snapshot is active; SQL needs one.
    hooks::with_latest_snapshot(|| insert(pending)).unwrap_or(Err(VaultError::Internal(
        "audit rows cannot be written in parallel mode",
    )))
}

fn insert(pending: Vec<Create>) -> VResult<()> {
    let err = |e: pgrx::spi::Error| VaultError::BadArgument {
        message: format!("could not write vault.audit_log: {e}"),
        hint: None,
    };
    // The library may be newer than the database's SQL objects (between installing a new
    // version and ALTER EXTENSION vault_ext UPDATE): without the table there is nothing to write.
    let (owner, has_table) = Spi::get_two::<pg_sys::Oid, bool>(
        "SELECT e.extowner, pg_catalog.to_regclass('vault.audit_log') IS NOT NULL \
           FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'vault_ext'",
    )
    .map_err(err)?;
    let Some(owner) = owner.filter(|_| has_table == Some(true)) else {
        return Ok(());
    };
    let args = [
        pending.iter().map(|c| c.at_us).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.session_role).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.current_role).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.id).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.name.clone()).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.key_id).collect::<Vec<_>>().into(),
    ];
    hooks::as_user(owner, || {
        Spi::connect_mut(|client| -> Result<(), pgrx::spi::Error> {
            if FLUSH_PLAN.with(|p| p.borrow().is_none()) {
                let (int8a, uuida, texta) = (
                    PgOid::BuiltIn(PgBuiltInOids::INT8ARRAYOID),
                    PgOid::BuiltIn(PgBuiltInOids::UUIDARRAYOID),
                    PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID),
                );
                let plan = client
                    .prepare_mut(FLUSH_SQL, &[int8a, int8a, int8a, uuida, texta, uuida])?
                    .keep();
                FLUSH_PLAN.with(|p| *p.borrow_mut() = Some(plan));
            }
            FLUSH_PLAN.with(|p| match p.borrow().as_ref() {
                Some(plan) => client.update(plan, None, &args).map(|_| ()),
                None => Ok(()),
            })
        })
    })
    .map_err(err)
}
