//! vault.audit_log: every row is written here, by vault_ext's own code, never by the caller.
//! Triggers on vault.secrets, vault.secret_acl and vault.keys (and the few functions that log
//! an event of their own) note each change in memory with who/when read from the backend at
//! the time of the change (the current and session role ids, the clock); all of a
//! transaction's notes are inserted in one statement just before it commits, as the extension
//! owner. Nobody else may write the table (not even vault_admin), so a row cannot name another
//! role or another time. Notes of a subtransaction that rolls back are dropped with it.
//! Creates are the hot path (every `create_secret`): one SPI insert per row would cost more
//! than the insert itself, hence the batching.
use crate::error::{OrRaise, VResult, VaultError};
use crate::ffi::pg;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{pg_sys, register_subxact_callback, register_xact_callback, PgSubXactCallbackEvent, PgXactCallbackEvent};
use pgrx::{PgBuiltInOids, PgOid, Uuid};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use vault_core::crypto::encoding::uuid_v7;
use vault_core::ffi::sodium::random_nonce;

/// What goes in `detail`: creates build it in SQL (a constant for the default key), the other
/// rows carry their JSON text.
enum Detail {
    Create(Option<Uuid>),
    Json(String),
}

struct Entry {
    subxact: pg_sys::SubTransactionId,
    at_us: i64,
    session_role: pg_sys::Oid,
    current_role: pg_sys::Oid,
    action: &'static str,
    secret_id: Option<Uuid>,
    secret_name: Option<String>,
    detail: Detail,
    /// The secret's version after a change of value (update rows), for rollback's own row.
    value_version: Option<i32>,
}

/// Everything in the statement is schema-qualified: the plan is made under the caller's
/// search_path. Row ids, times and role names come in as arrays (ids made here, names looked
/// up once per role), so the statement does little per row beyond building `detail`, and for
/// creates under the default (compatibility) key not even that: a constant, the same jsonb
/// jsonb_build_object would make, saves about a sixth of the audit insert.
const FLUSH_SQL: &str =
    "INSERT INTO vault.audit_log (id, at, session_role, \"current_role\", action, secret_id, secret_name, detail) \
     SELECT t.aid, t.at, t.sess, t.cur, t.act, t.id, t.name, \
            CASE WHEN t.detail IS NOT NULL THEN t.detail::pg_catalog.jsonb \
                 WHEN t.key IS NULL THEN '{\"key_id\": null, \"version\": 1}'::pg_catalog.jsonb \
                 ELSE pg_catalog.jsonb_build_object('key_id', t.key, 'version', 1) END \
       FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]), \
                       pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                       pg_catalog.unnest($5::pg_catalog.text[]), \
                       pg_catalog.unnest($6::pg_catalog.uuid[]), pg_catalog.unnest($7::pg_catalog.text[]), \
                       pg_catalog.unnest($8::pg_catalog.uuid[]), pg_catalog.unnest($9::pg_catalog.text[])) \
            AS t(aid, at, sess, cur, act, id, name, key, detail)";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

thread_local! {
    static PENDING: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
    static FLUSH_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
    /// The time of the last note: each note is at least a microsecond later, so rows of one
    /// backend sort by `at` in the order of the changes.
    static LAST_AT: Cell<i64> = const { Cell::new(i64::MIN) };
    /// Rows re-encrypted without a change of value by the current UPDATE statement.
    static REENCRYPTED: Cell<i64> = const { Cell::new(0) };
    /// (id, nonce) of every ciphertext vault._rewrap made in this transaction.
    static REWRAPPED: RefCell<HashSet<([u8; 16], Vec<u8>)>> = RefCell::new(HashSet::new());
}

/// Note one create, to be written when the transaction commits.
pub fn record_create(id: &[u8; 16], name: Option<&str>, key_id: Option<Uuid>) {
    note(
        "create",
        Some(Uuid::from_bytes(*id)),
        name.map(str::to_string),
        Detail::Create(key_id),
        None,
    );
}

/// Note a row of `action` with its detail (JSON text, see `Obj`), written at commit.
pub fn record(action: &'static str, secret_id: Option<Uuid>, secret_name: Option<String>, detail: String) {
    note(action, secret_id, secret_name, Detail::Json(detail), None);
}

fn note(
    action: &'static str,
    secret_id: Option<Uuid>,
    secret_name: Option<String>,
    detail: Detail,
    value_version: Option<i32>,
) {
    let (current, session, subxact, now) = pg::change_context();
    let at_us = LAST_AT.with(|l| {
        let at = now.max(l.get().saturating_add(1));
        l.set(at);
        at
    });
    PENDING.with(|p| {
        p.borrow_mut().push(Entry {
            subxact,
            at_us,
            session_role: session,
            current_role: current,
            action,
            secret_id,
            secret_name,
            detail,
            value_version,
        })
    });
    ensure_callbacks();
}

fn ensure_callbacks() {
    if !CALLBACKS.with(|c| c.replace(true)) {
        register_xact_callback(PgXactCallbackEvent::PreCommit, || flush().or_raise());
        register_xact_callback(PgXactCallbackEvent::PrePrepare, || flush().or_raise());
        register_xact_callback(PgXactCallbackEvent::Commit, forget);
        register_xact_callback(PgXactCallbackEvent::Prepare, forget);
        register_xact_callback(PgXactCallbackEvent::Abort, forget);
        register_subxact_callback(PgSubXactCallbackEvent::AbortSub, |sub, _parent| {
            PENDING.with(|p| p.borrow_mut().retain(|c| c.subxact != sub));
            REENCRYPTED.with(|r| r.set(0));
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

/// One more row re-encrypted by the current UPDATE (no change of value): counted, and written
/// as one `reencrypt` row per statement by `end_update_statement`.
pub fn count_reencrypted() {
    REENCRYPTED.with(|r| r.set(r.get() + 1));
    ensure_callbacks();
}

/// The end of an UPDATE on vault.secrets: one `reencrypt` row for its re-encrypted rows.
pub fn end_update_statement() {
    let n = REENCRYPTED.with(|r| r.replace(0));
    if n > 0 {
        record("reencrypt", None, None, Obj::new().num("secrets", n).build());
    }
}

/// vault._rewrap made this ciphertext for secret `id` in this transaction.
pub fn note_rewrapped(id: &Uuid, nonce: &[u8]) {
    REWRAPPED.with(|r| r.borrow_mut().insert((*id.as_bytes(), nonce.to_vec())));
    ensure_callbacks();
}

/// Whether vault._rewrap made this (id, nonce) in this transaction: the archive trigger tells
/// root key rotation (same value) from ciphertext copied in from elsewhere (a new value).
pub fn was_rewrapped(id: &Uuid, nonce: &[u8]) -> bool {
    REWRAPPED.with(|r| r.borrow().contains(&(*id.as_bytes(), nonce.to_vec())))
}

/// Whether a note of this transaction (not yet written) matches: the event rows of functions
/// (rollback, rotate_key) are accepted only after the change they describe.
pub fn pending_matches(action: &str, secret_id: Option<Uuid>, detail_has: &str) -> bool {
    PENDING.with(|p| {
        p.borrow().iter().any(|e| {
            e.action == action
                && (secret_id.is_none() || e.secret_id == secret_id)
                && matches!(&e.detail, Detail::Json(j) if j.contains(detail_has))
        })
    })
}

/// The secret name and version the last pending value change of `id` left.
pub fn pending_value_change(id: Uuid) -> Option<(Option<String>, i32)> {
    PENDING.with(|p| {
        p.borrow()
            .iter()
            .rev()
            .find(|e| e.secret_id == Some(id) && e.value_version.is_some())
            .map(|e| (e.secret_name.clone(), e.value_version.unwrap_or_default()))
    })
}

/// A JSON object built in order, for `detail` (jsonb re-orders keys anyway).
#[derive(Default)]
pub struct Obj(Vec<String>);

impl Obj {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn raw(mut self, key: &str, json: String) -> Self {
        self.0.push(format!("{}: {json}", json_str(key)));
        self
    }
    pub fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, json_str(value))
    }
    pub fn opt(self, key: &str, value: Option<&str>) -> Self {
        let v = value.map_or_else(|| "null".to_string(), json_str);
        self.raw(key, v)
    }
    pub fn num(self, key: &str, value: i64) -> Self {
        self.raw(key, value.to_string())
    }
    pub fn list(self, key: &str, items: &[&str]) -> Self {
        let v = format!("[{}]", items.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(", "));
        self.raw(key, v)
    }
    pub fn build(self) -> String {
        format!("{{{}}}", self.0.join(", "))
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn forget() {
    PENDING.with(|p| p.borrow_mut().clear());
    REENCRYPTED.with(|r| r.set(0));
    REWRAPPED.with(|r| r.borrow_mut().clear());
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

fn insert(pending: Vec<Entry>) -> VResult<()> {
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
        pending.iter().map(|c| c.action).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.secret_id).collect::<Vec<_>>().into(),
        pending.iter().map(|c| c.secret_name.clone()).collect::<Vec<_>>().into(),
        pending
            .iter()
            .map(|c| match &c.detail {
                Detail::Create(key) => *key,
                Detail::Json(_) => None,
            })
            .collect::<Vec<_>>()
            .into(),
        pending
            .iter()
            .map(|c| match &c.detail {
                Detail::Create(_) => None,
                Detail::Json(j) => Some(j.clone()),
            })
            .collect::<Vec<_>>()
            .into(),
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
                    .prepare_mut(
                        FLUSH_SQL,
                        &[uuida, tsa, texta, texta, texta, uuida, texta, uuida, texta],
                    )?
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

/// The row triggers' notes: what changed, by whom, never a value.
pub mod rows {
    use super::{note, record, Detail, Obj};
    use crate::error::{VResult, VaultError};
    use crate::ffi::pg::{self, RegRole};
    use pgrx::datum::TimestampWithTimeZone;
    use pgrx::prelude::*;
    use pgrx::{PgTrigger, Uuid};

    /// A column of a trigger's row, by name (also used by the versions' triggers).
    pub(crate) fn col<'t, T>(
        row: &'t PgHeapTuple<'_, impl pgrx::WhoAllocated>,
        name: &'static str,
    ) -> VResult<Option<T>>
    where
        T: FromDatum + IntoDatum + pgrx::datum::UnboxDatum<As<'t> = T> + 't,
    {
        row.get_by_name::<T>(name).map_err(|_| VaultError::MissingColumn {
            column: name,
            typ: "as CREATE EXTENSION made it",
        })
    }

    /// AFTER UPDATE on vault.secrets, per row: an `update` row naming the changed fields (the
    /// value shows as a new version, an id change with the old id), or, when only the
    /// ciphertext changed (re-encryption), a count for the statement's `reencrypt` row.
    pub fn secret_updated(trigger: &PgTrigger<'_>) -> VResult<()> {
        let (Some(old), Some(new)) = (trigger.old(), trigger.new()) else {
            return Ok(());
        };
        let version = |r: &PgHeapTuple<'_, _>| col::<i32>(r, "version");
        let (ov, nv) = (version(&old)?, version(&new)?);
        let mut fields: Vec<&str> = Vec::new();
        if ov != nv {
            fields.push("value");
        }
        if col::<String>(&old, "name")? != col::<String>(&new, "name")? {
            fields.push("name");
        }
        if col::<String>(&old, "description")? != col::<String>(&new, "description")? {
            fields.push("description");
        }
        let tags = |r| -> VResult<Option<Vec<Option<String>>>> {
            Ok(col::<pgrx::Array<'_, &str>>(r, "tags")?.map(|a| a.iter().map(|t| t.map(str::to_string)).collect()))
        };
        if tags(&old)? != tags(&new)? {
            fields.push("tags");
        }
        if col::<TimestampWithTimeZone>(&old, "expires_at")? != col::<TimestampWithTimeZone>(&new, "expires_at")? {
            fields.push("expires_at");
        }
        if col::<Uuid>(&old, "key_id")? != col::<Uuid>(&new, "key_id")? {
            fields.push("key_id");
        }
        let (oid, nid) = (col::<Uuid>(&old, "id")?, col::<Uuid>(&new, "id")?);
        if oid != nid {
            fields.push("id");
        }
        let at = |r: &PgHeapTuple<'_, _>, c| col::<TimestampWithTimeZone>(r, c);
        if at(&old, "created_at")? != at(&new, "created_at")? {
            fields.push("created_at");
        }
        // update_secret and the like set updated_at with the change they make; an edit of
        // updated_at alone is a change of its own.
        if fields.is_empty() && at(&old, "updated_at")? != at(&new, "updated_at")? {
            fields.push("updated_at");
        }
        if fields.is_empty() || fields == ["key_id"] {
            let rewritten = col::<String>(&old, "secret")? != col::<String>(&new, "secret")?
                || col::<&[u8]>(&old, "nonce")? != col::<&[u8]>(&new, "nonce")?;
            if rewritten {
                super::count_reencrypted();
            }
            return Ok(());
        }
        let mut detail = Obj::new().list("changed", &fields);
        if oid != nid {
            detail = detail.opt("old_id", oid.map(|u| u.to_string()).as_deref());
        }
        let detail = detail.num("version", i64::from(nv.unwrap_or_default())).build();
        let value_version = (ov != nv).then_some(nv.unwrap_or_default());
        note(
            "update",
            nid,
            col::<String>(&new, "name")?,
            Detail::Json(detail),
            value_version,
        );
        Ok(())
    }

    /// AFTER DELETE on vault.secrets, per row.
    pub fn secret_deleted(trigger: &PgTrigger<'_>) -> VResult<()> {
        if let Some(old) = trigger.old() {
            let v = col::<i32>(&old, "version")?.unwrap_or_default();
            record(
                "delete",
                col::<Uuid>(&old, "id")?,
                col::<String>(&old, "name")?,
                Obj::new().num("version", i64::from(v)).build(),
            );
        }
        Ok(())
    }

    /// BEFORE TRUNCATE on vault.secrets: one `truncate` row with what goes (the TRUNCATE also
    /// takes vault.secret_acl and vault.secret_versions, see ffi::pg::install_truncate_hook).
    pub fn secrets_truncated() -> VResult<()> {
        let owner = super::extension_owner()?;
        let counts = pg::as_user(owner, || {
            Spi::get_three::<i64, i64, i64>(
                "SELECT (SELECT pg_catalog.count(*) FROM vault.secrets), \
                        (SELECT pg_catalog.count(*) FROM vault.secret_acl), \
                        (SELECT pg_catalog.count(*) FROM vault.secret_versions)",
            )
        })
        .map_err(VaultError::spi("count vault.secrets"))?;
        let n = |x: Option<i64>| x.unwrap_or_default();
        record(
            "truncate",
            None,
            None,
            Obj::new()
                .num("secrets", n(counts.0))
                .num("grants", n(counts.1))
                .num("versions", n(counts.2))
                .build(),
        );
        Ok(())
    }

    /// AFTER INSERT OR DELETE on vault.secret_acl, per row: `grant` / `revoke`.
    pub fn grant_changed(trigger: &PgTrigger<'_>) -> VResult<()> {
        let (action, row) = match (trigger.new(), trigger.old()) {
            (Some(new), None) => ("grant", new),
            (None, Some(old)) => ("revoke", old),
            _ => return Ok(()),
        };
        let secret_id = col::<Uuid>(&row, "secret_id")?;
        let grantee = col::<RegRole>(&row, "grantee")?;
        let owner = super::extension_owner()?;
        let (name, grantee) = pg::as_user(owner, || {
            Spi::get_two_with_args::<String, String>(
                "SELECT (SELECT s.name FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) $1), \
                        $2::pg_catalog.oid::pg_catalog.regrole::pg_catalog.text",
                &[secret_id.into(), grantee.map(|g| g.0).into()],
            )
        })
        .map_err(VaultError::spi("read vault.secrets"))?;
        record(
            action,
            secret_id,
            name,
            Obj::new().opt("grantee", grantee.as_deref()).build(),
        );
        Ok(())
    }

    /// Row and TRUNCATE triggers on vault.keys: `create_key`, `update_key` (the changed
    /// columns with their old and new values: metadata only, key bytes are never stored),
    /// `delete_key`, `truncate`.
    pub fn key_changed(trigger: &PgTrigger<'_>) -> VResult<()> {
        if matches!(trigger.op(), Ok(PgTriggerOperation::Truncate)) {
            record("truncate", None, None, Obj::new().str("table", "keys").build());
            return Ok(());
        }
        let describe = |r: &PgHeapTuple<'_, _>| -> VResult<Vec<(&'static str, Option<String>)>> {
            let ts = |v: Option<TimestampWithTimeZone>| v.map(|t| t.to_string());
            Ok(vec![
                ("id", col::<Uuid>(r, "id")?.map(|u| u.to_string())),
                ("name", col::<String>(r, "name")?),
                ("key_type", col::<String>(r, "key_type")?),
                ("key_id", col::<i64>(r, "key_id")?.map(|n| n.to_string())),
                ("key_context", col::<&[u8]>(r, "key_context")?.map(hex)),
                ("status", col::<String>(r, "status")?),
                ("expires_at", ts(col::<TimestampWithTimeZone>(r, "expires_at")?)),
                ("comment", col::<String>(r, "comment")?),
                ("root_key_fingerprint", col::<String>(r, "root_key_fingerprint")?),
            ])
        };
        let (action, detail) = match (trigger.old(), trigger.new()) {
            (None, Some(new)) => {
                let d = describe(&new)?;
                let mut o = Obj::new().opt("key", d[0].1.as_deref());
                for (k, v) in &d[1..6] {
                    o = o.opt(k, v.as_deref());
                }
                ("create_key", o.build())
            }
            (Some(old), None) => {
                let d = describe(&old)?;
                (
                    "delete_key",
                    Obj::new()
                        .opt("key", d[0].1.as_deref())
                        .opt("name", d[1].1.as_deref())
                        .build(),
                )
            }
            (Some(old), Some(new)) => {
                let (o, n) = (describe(&old)?, describe(&new)?);
                let changed: Vec<usize> = (0..o.len()).filter(|&i| o[i].1 != n[i].1).collect();
                if changed.is_empty() {
                    return Ok(());
                }
                let (mut from, mut to) = (Obj::new(), Obj::new());
                for &i in &changed {
                    from = from.opt(o[i].0, o[i].1.as_deref());
                    to = to.opt(n[i].0, n[i].1.as_deref());
                }
                let names: Vec<&str> = changed.iter().map(|&i| o[i].0).collect();
                let d = Obj::new()
                    .opt("key", n[0].1.as_deref())
                    .list("changed", &names)
                    .raw("from", from.build())
                    .raw("to", to.build());
                ("update_key", d.build())
            }
            (None, None) => return Ok(()),
        };
        record(action, None, None, detail);
        Ok(())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

/// The extension's owner: audit rows and the checks the triggers make run as this role.
pub fn extension_owner() -> VResult<pg_sys::Oid> {
    Spi::get_one::<pg_sys::Oid>(
        "SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'vault_ext'",
    )
    .map_err(VaultError::spi("read pg_extension"))?
    .ok_or(VaultError::Internal("vault_ext is not installed in this database"))
}

/// vault.purge_audit_log: delete rows older than `older_than` (as the extension owner: nobody
/// else may delete them), never younger than vault.audit_min_retention, which only a superuser
/// can lower; the purge is itself noted with the caller.
pub fn purge(older_than: Option<pgrx::datum::Interval>) -> VResult<i64> {
    let Some(older_than) = older_than else {
        return Err(VaultError::BadArgument {
            message: "older_than must be a non-negative interval".into(),
            hint: Some("Pass an age such as '90 days'; rows older than it are deleted.".into()),
        });
    };
    let min = crate::settings::audit_min_retention();
    // Compared as the cutoff the DELETE uses, not as intervals: '1 mon' equals 30 days as an
    // interval, but now() - '1 mon' in March reaches back only 28 or 29 days.
    let (negative, too_young) = Spi::get_two_with_args::<bool, bool>(
        "SELECT $1 OPERATOR(pg_catalog.<) '0'::pg_catalog.interval, \
                (pg_catalog.now() OPERATOR(pg_catalog.-) $1) OPERATOR(pg_catalog.>) \
                (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2::pg_catalog.float8))",
        &[older_than.into(), f64::from(min).into()],
    )
    .map_err(VaultError::spi("compare intervals"))?;
    if negative == Some(true) {
        return Err(VaultError::BadArgument {
            message: "older_than must be a non-negative interval".into(),
            hint: Some("Pass an age such as '90 days'; rows older than it are deleted.".into()),
        });
    }
    if too_young == Some(true) {
        return Err(VaultError::Refused {
            code: pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message: format!("audit rows younger than vault.audit_min_retention ({min} s) cannot be purged"),
            hint: "Pass an older_than of at least vault.audit_min_retention; only a superuser can lower that setting (e.g. SET LOCAL vault.audit_min_retention = 0).".into(),
        });
    }
    let owner = extension_owner()?;
    let (rows, text) = pg::as_user(owner, || {
        Spi::connect_mut(|c| {
            let rows = c
                .update(
                    "DELETE FROM vault.audit_log a \
                      WHERE a.at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
                    None,
                    &[older_than.into()],
                )?
                .len();
            let text = c
                .select("SELECT $1::pg_catalog.text", None, &[older_than.into()])?
                .first()
                .get_one::<String>()?;
            Ok::<_, pgrx::spi::Error>((rows, text))
        })
    })
    .map_err(VaultError::spi("purge vault.audit_log"))?;
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    record(
        "purge_audit_log",
        None,
        None,
        Obj::new().opt("older_than", text.as_deref()).num("rows", rows).build(),
    );
    Ok(rows)
}

fn no_change(what: &str) -> VaultError {
    VaultError::Refused {
        code: pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        message: format!("no {what} to record in this transaction"),
        hint: "vault_ext writes this audit row itself, after the change it describes; call the vault function instead."
            .into(),
    }
}

/// vault.rollback_secret's row: only after a value change of that secret in this transaction
/// (whose name and version it takes).
pub fn rollback_event(secret_id: Uuid, to_version: i32) -> VResult<()> {
    let (name, version) = pending_value_change(secret_id).ok_or_else(|| no_change("rollback"))?;
    record(
        "rollback",
        Some(secret_id),
        name,
        Obj::new()
            .num("to_version", i64::from(to_version))
            .num("version", i64::from(version))
            .build(),
    );
    Ok(())
}

/// vault.rotate_key's row: only after the new key was created in this transaction.
pub fn rotate_key_event(old_key: Option<Uuid>, new_key: Uuid) -> VResult<()> {
    let created = format!("{}: {}", json_str("key"), json_str(&new_key.to_string()));
    if !pending_matches("create_key", None, &created) {
        return Err(no_change("key rotation"));
    }
    let old = old_key.map(|k| k.to_string());
    record(
        "rotate_key",
        None,
        None,
        Obj::new()
            .opt("old_key", old.as_deref())
            .str("new_key", &new_key.to_string())
            .build(),
    );
    Ok(())
}

/// vault.rotate_root_key's row: the fingerprints are the loaded ones, never arguments.
pub fn rotate_root_key_event(moved: i64) -> VResult<()> {
    use vault_core::crypto::root_key::{self, Root};
    let (Some(from), Some(to)) = (root_key::fingerprint_of(Root::Previous), root_key::fingerprint()) else {
        return Err(no_change("root key rotation"));
    };
    record(
        "rotate_root_key",
        None,
        None,
        Obj::new().str("from", from).str("to", to).num("secrets", moved).build(),
    );
    Ok(())
}
