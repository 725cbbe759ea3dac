//! `create` rows of vault.audit_log, noted by an AFTER INSERT row trigger. Creates are the hot
//! path (every `create_secret`): a PL/pgSQL statement trigger with a transition table, or one
//! SPI insert per row, cost more than the insert itself. So each create is noted in memory
//! with who/when at the time of the change, and all of a transaction's creates are inserted
//! in one statement just before it commits (as the extension owner: the audit table is
//! append-only and writers need no privilege on it). Creates made in a subtransaction that
//! rolls back are dropped with it. Updates, deletes, grants and rotations are audited by the
//! SQL triggers and functions.

use crate::error::{OrRaise, VResult, VaultError};
use crate::ffi::pg;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{pg_sys, register_subxact_callback, register_xact_callback, PgSubXactCallbackEvent, PgXactCallbackEvent};
use pgrx::{PgBuiltInOids, PgOid, Uuid};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use vault_core::crypto::encoding::uuid_v7;
use vault_core::ffi::sodium::random_nonce;

struct Create {
    subxact: pg_sys::SubTransactionId,
    at_us: i64,
    session_role: pg_sys::Oid,
    current_role: pg_sys::Oid,
    id: Uuid,
    name: Option<String>,
    key_id: Option<Uuid>,
}

/// Everything in the statement is schema-qualified: the plan is made under the caller's
/// search_path. Row ids, times and role names come in as arrays (ids made here, names looked
/// up once per role), so the statement does little per row beyond building `detail`, and for
/// the default (compatibility) key not even that: a constant, the same jsonb jsonb_build_object
/// would make, saves about a sixth of the audit insert.
const FLUSH_SQL: &str =
    "INSERT INTO vault.audit_log (id, at, session_role, \"current_role\", action, secret_id, secret_name, detail) \
     SELECT t.aid, t.at, t.sess, t.cur, 'create', t.id, t.name, \
            CASE WHEN t.key IS NULL THEN '{\"key_id\": null, \"version\": 1}'::pg_catalog.jsonb \
                 ELSE pg_catalog.jsonb_build_object('key_id', t.key, 'version', 1) END \
       FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]), \
                       pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                       pg_catalog.unnest($5::pg_catalog.uuid[]), pg_catalog.unnest($6::pg_catalog.text[]), \
                       pg_catalog.unnest($7::pg_catalog.uuid[])) \
            AS t(aid, at, sess, cur, id, name, key)";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

thread_local! {
    static PENDING: RefCell<Vec<Create>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
    static FLUSH_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

/// Note one create, to be written when the transaction commits.
pub fn record_create(id: &[u8; 16], name: Option<&str>, key_id: Option<Uuid>) {
    let (current, session, subxact, at_us) = pg::change_context();
    PENDING.with(|p| {
        p.borrow_mut().push(Create {
            subxact,
            at_us,
            session_role: session,
            current_role: current,
            id: Uuid::from_bytes(*id),
            name: name.map(str::to_string),
            key_id,
        })
    });
    if !CALLBACKS.with(|c| c.replace(true)) {
        register_xact_callback(PgXactCallbackEvent::PreCommit, || flush().or_raise());
        register_xact_callback(PgXactCallbackEvent::PrePrepare, || flush().or_raise());
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
    pg::with_latest_snapshot(|| insert(pending)).unwrap_or(Err(VaultError::Internal(
        "audit rows cannot be written in parallel mode",
    )))
}

fn insert(pending: Vec<Create>) -> VResult<()> {
    // The library may be newer than the database's SQL objects (between installing a new
    // version and ALTER EXTENSION vault_ext UPDATE): without the table there is nothing to write.
    let (owner, has_table) = Spi::get_two::<pg_sys::Oid, bool>(
        "SELECT e.extowner, pg_catalog.to_regclass('vault.audit_log') IS NOT NULL \
           FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'vault_ext'",
    )
    .map_err(VaultError::spi("write vault.audit_log"))?;
    let Some(owner) = owner.filter(|_| has_table == Some(true)) else {
        return Ok(());
    };
    let mut names: HashMap<pg_sys::Oid, String> = HashMap::new();
    let mut name_of = |oid: pg_sys::Oid| names.entry(oid).or_insert_with(|| pg::role_name(oid)).clone();
    let ids = pending
        .iter()
        .map(|c| {
            let mut random = [0u8; 10];
            random_nonce(&mut random);
            let unix_ms = u64::try_from((c.at_us + PG_EPOCH_US) / 1000).unwrap_or(0);
            Uuid::from_bytes(uuid_v7(unix_ms, random))
        })
        .collect::<Vec<_>>();
    let args = [
        ids.into(),
        pending
            .iter()
            .map(|c| TimestampWithTimeZone::try_from(c.at_us).ok())
            .collect::<Vec<_>>()
            .into(),
        pending
            .iter()
            .map(|c| name_of(c.session_role))
            .collect::<Vec<_>>()
            .into(),
        pending
            .iter()
            .map(|c| name_of(c.current_role))
            .collect::<Vec<_>>()
            .into(),
        pending.iter().map(|c| c.id).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.name.clone()).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.key_id).collect::<Vec<_>>().into(),
    ];
    pg::as_user(owner, || {
        Spi::connect_mut(|client| -> Result<(), pgrx::spi::Error> {
            if FLUSH_PLAN.with(|p| p.borrow().is_none()) {
                let (tsa, uuida, texta) = (
                    PgOid::BuiltIn(PgBuiltInOids::TIMESTAMPTZARRAYOID),
                    PgOid::BuiltIn(PgBuiltInOids::UUIDARRAYOID),
                    PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID),
                );
                let plan = client
                    .prepare_mut(FLUSH_SQL, &[uuida, tsa, texta, texta, uuida, texta, uuida])?
                    .keep();
                FLUSH_PLAN.with(|p| *p.borrow_mut() = Some(plan));
            }
            FLUSH_PLAN.with(|p| match p.borrow().as_ref() {
                Some(plan) => client.update(plan, None, &args).map(|_| ()),
                None => Ok(()),
            })
        })
    })
    .map_err(VaultError::spi("write vault.audit_log"))
}
