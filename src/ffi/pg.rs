//! The Postgres globals and callbacks pgrx does not wrap, behind safe functions.

use pgrx::pg_sys;
use std::ffi::CStr;
use std::path::PathBuf;

/// True while the postmaster loads `shared_preload_libraries`.
pub fn preloading() -> bool {
    // SAFETY: a plain bool global written by the postmaster before it loads libraries; we
    // only read it, from the process's only thread.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// The server's data directory (absolute), once the postmaster has set it.
pub fn data_dir() -> Option<PathBuf> {
    // SAFETY: DataDir is NULL or a NUL-terminated string owned by the server for its lifetime.
    unsafe {
        let p = pg_sys::DataDir;
        if p.is_null() {
            None
        } else {
            Some(PathBuf::from(CStr::from_ptr(p).to_string_lossy().into_owned()))
        }
    }
}

/// Reserve the `vault.` GUC prefix so typos in postgresql.conf are reported.
pub fn reserve_guc_prefix() {
    // SAFETY: called from _PG_init with a static NUL-terminated string.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"vault".as_ptr()) };
}

/// Whether the current user (as a SECURITY DEFINER function sees it) may act with the
/// privileges of `role`: a superuser, the role itself, or an inheriting member of it.
pub fn current_user_has_privs_of(role: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups through syscache; both are safe to call inside a transaction,
    // which every SQL function call is.
    unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) }
}

/// The current user (as SET ROLE and SECURITY DEFINER make it).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads a backend global; no arguments.
    unsafe { pg_sys::GetUserId() }
}

/// Whether the current user (as a SECURITY DEFINER function sees it) is a superuser.
pub fn current_user_is_superuser() -> bool {
    // SAFETY: a catalog lookup through syscache, valid inside a transaction.
    unsafe { pg_sys::superuser() }
}

/// The OID of a role by name, if it exists.
pub fn role_oid(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: a NUL-terminated name; missing_ok = true returns InvalidOid instead of raising.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Run `f` when this backend exits (Rust thread-local destructors do not run on exit()).
pub fn at_process_exit(f: fn()) {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn trampoline(_code: std::ffi::c_int, arg: pg_sys::Datum) {
        // SAFETY: `arg` is the `fn()` pointer registered below, converted losslessly.
        let f: fn() = unsafe { std::mem::transmute::<usize, fn()>(arg.value()) };
        f();
    }
    // SAFETY: on_proc_exit stores the callback and argument for this process; a fn pointer
    // fits in a Datum (pointer-sized) and lives for the program's lifetime.
    unsafe { pg_sys::on_proc_exit(Some(trampoline), pg_sys::Datum::from(f as usize)) };
}

/// Call `f` with the relation's OID on every relation cache invalidation this process receives
/// (InvalidOid: all of them): other sessions' committed changes to vault.keys /
/// vault.secret_acl arrive this way (see `announce_change`). Register once, in the postmaster
/// while preloading. `f` must not touch the catalogs.
pub fn on_relcache_invalidation(f: fn(pg_sys::Oid)) {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn trampoline(arg: pg_sys::Datum, relid: pg_sys::Oid) {
        // SAFETY: `arg` is the `fn(Oid)` pointer registered below, converted losslessly.
        let f: fn(pg_sys::Oid) = unsafe { std::mem::transmute::<usize, fn(pg_sys::Oid)>(arg.value()) };
        f(relid);
    }
    // SAFETY: the callback table is per process and inherited by forked backends; a fn
    // pointer fits in a Datum and lives for the program's lifetime.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(trampoline), pg_sys::Datum::from(f as usize)) };
}

/// Call `f` at the end of every transaction of this process (commit, abort, prepare; in
/// parallel workers too). Register once, in the postmaster while preloading: the callback list
/// is per process and inherited by forked backends.
pub fn on_transaction_end(f: fn()) {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn trampoline(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
        use pg_sys::XactEvent::*;
        if matches!(
            event,
            XACT_EVENT_COMMIT
                | XACT_EVENT_ABORT
                | XACT_EVENT_PREPARE
                | XACT_EVENT_PARALLEL_COMMIT
                | XACT_EVENT_PARALLEL_ABORT
        ) {
            // SAFETY: `arg` is the `fn()` pointer registered below, converted losslessly.
            let f: fn() = unsafe { std::mem::transmute::<*mut std::ffi::c_void, fn()>(arg) };
            f();
        }
    }
    // SAFETY: RegisterXactCallback stores the callback and argument in TopMemoryContext for the
    // life of the process; a fn pointer fits in a pointer-sized argument.
    unsafe { pg_sys::RegisterXactCallback(Some(trampoline), f as *mut std::ffi::c_void) };
}

/// Queue a relcache invalidation of `relid`, sent to every backend when this transaction
/// commits (nothing is sent on abort).
pub fn announce_change(relid: pg_sys::Oid) {
    // SAFETY: registers a transactional invalidation message; valid inside a transaction.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
}

/// Inside a parallel operation (leader or worker).
pub fn in_parallel_mode() -> bool {
    // SAFETY: reads a transaction-state flag.
    unsafe { pg_sys::IsInParallelMode() }
}

/// Run `f` under a snapshot taken now (newer than the statement's), so data read by `f`
/// includes every commit whose invalidation this backend has already processed. None in
/// parallel mode, where no new snapshot may be taken.
pub fn with_latest_snapshot<R>(f: impl FnOnce() -> R) -> Option<R> {
    if in_parallel_mode() {
        return None;
    }
    // SAFETY: GetLatestSnapshot and the active-snapshot stack are valid inside a transaction
    // outside parallel mode. On error the stack is unwound by the transaction abort.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let r = f();
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    Some(r)
}

/// A role's name (`oid N` when it no longer exists), for audit rows and lines.
pub fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId with noerr = true returns NULL or a palloc'd NUL-terminated
    // name for an OID.
    unsafe {
        let p = pg_sys::GetUserNameFromId(oid, true);
        if p.is_null() {
            format!("oid {}", oid.to_u32())
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// The current role's and the session role's names, for audit lines.
pub fn role_names() -> (String, String) {
    // SAFETY: plain reads of the backend's user ids.
    let (current, session) = unsafe { (pg_sys::GetUserId(), pg_sys::GetSessionUserId()) };
    (role_name(current), role_name(session))
}

/// The current and session user ids, the current subtransaction, and the time now (server
/// TimestampTz microseconds): what an audit row records about a change when it happens.
pub fn change_context() -> (pg_sys::Oid, pg_sys::Oid, pg_sys::SubTransactionId, i64) {
    // SAFETY: plain reads of backend state inside a transaction.
    unsafe {
        (
            pg_sys::GetUserId(),
            pg_sys::GetSessionUserId(),
            pg_sys::GetCurrentSubTransactionId(),
            pg_sys::GetCurrentTimestamp(),
        )
    }
}

/// Run `f` with `owner`'s privileges (as SECURITY DEFINER would), restoring the caller's
/// afterwards. On error the transaction abort restores them.
pub fn as_user<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    // SAFETY: the standard save/switch/restore of the current user id.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(owner, saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let r = f();
    // SAFETY: restores what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    r
}

/// The OID of the table a trigger fired on.
pub fn trigger_relid(trigger: &pgrx::PgTrigger<'_>) -> pg_sys::Oid {
    // SAFETY: a firing trigger's TriggerData points at its open relation.
    unsafe { (*trigger.trigger_data().tg_relation).rd_id }
}

/// The owner of the table a trigger fired on.
pub fn trigger_rel_owner(trigger: &pgrx::PgTrigger<'_>) -> pg_sys::Oid {
    // SAFETY: a firing trigger's TriggerData points at its open relation and its pg_class row.
    unsafe { (*(*trigger.trigger_data().tg_relation).rd_rel).relowner }
}

/// Whether an UPDATE trigger's OLD and NEW rows hold the same value in attribute `attno`,
/// compared as stored; `byval` and `len` are the attribute's. Only fixed-length types are
/// compared (uuid, name, integers, timestamps): any other counts as changed.
pub fn trigger_column_equal(
    trigger: &pgrx::PgTrigger<'_>,
    attno: std::num::NonZeroUsize,
    byval: bool,
    len: i16,
) -> bool {
    // SAFETY: a firing row trigger's TriggerData points at its relation and at the old and new
    // tuples (NULL when absent); attno is an attribute of that relation's descriptor.
    unsafe {
        let td = trigger.trigger_data();
        let (old, new) = (td.tg_trigtuple, td.tg_newtuple);
        if old.is_null() || new.is_null() {
            return true;
        }
        let desc = (*td.tg_relation).rd_att;
        match (
            pgrx::htup::heap_getattr_raw(old, attno, desc),
            pgrx::htup::heap_getattr_raw(new, attno, desc),
        ) {
            (None, None) => true,
            (Some(a), Some(b)) if byval => a == b,
            (Some(a), Some(b)) if len > 0 => {
                let len = len as usize;
                std::slice::from_raw_parts(a.cast_mut_ptr::<u8>(), len)
                    == std::slice::from_raw_parts(b.cast_mut_ptr::<u8>(), len)
            }
            _ => false,
        }
    }
}

/// A row trigger's new row with some columns replaced, built by one heap_modify_tuple in the
/// current memory context (pgrx's `set_by_index` rebuilds the row once per column). Each value
/// is (attribute number, datum or None for NULL); the caller has checked the column types.
/// None when the trigger has no new row (DELETE, statement level).
pub fn with_columns_replaced<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
    values: &[(std::num::NonZeroUsize, Option<pg_sys::Datum>)],
) -> Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByPostgres>> {
    let tuple = trigger.new()?.into_pg();
    // SAFETY: the relation's descriptor describes its trigger tuples and lives while the
    // trigger runs; the three arrays have one entry per attribute, and every replaced index
    // is checked against that count; heap_modify_tuple copies what it keeps into a new palloc'd
    // tuple, which we hand back to the executor as the trigger's result.
    unsafe {
        let tupdesc = (*trigger.trigger_data().tg_relation).rd_att;
        let natts = usize::try_from((*tupdesc).natts).unwrap_or(0);
        let mut datums = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![false; natts];
        let mut replace = vec![false; natts];
        for (attnum, value) in values {
            let i = attnum.get() - 1;
            assert!(i < natts, "attribute {} of {natts}", attnum.get());
            datums[i] = value.unwrap_or(pg_sys::Datum::from(0usize));
            nulls[i] = value.is_none();
            replace[i] = true;
        }
        let modified = pg_sys::heap_modify_tuple(
            tuple,
            tupdesc,
            datums.as_mut_ptr(),
            nulls.as_mut_ptr(),
            replace.as_mut_ptr(),
        );
        Some(pgrx::heap_tuple::PgHeapTuple::from_heap_tuple(
            pgrx::PgTupleDesc::from_pg_unchecked(tupdesc),
            modified,
        ))
    }
}

/// A `regrole` column's value: pgrx reads `pg_sys::Oid` only from `oid` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegRole(pub pg_sys::Oid);

impl pgrx::datum::FromDatum for RegRole {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        // SAFETY: a regrole datum is an Oid passed by value, like DatumGetObjectId.
        (!is_null).then(|| RegRole(pg_sys::Oid::from(datum.value() as u32)))
    }
}

// SAFETY: a regrole datum is an Oid passed by value; nothing is borrowed.
unsafe impl pgrx::datum::UnboxDatum for RegRole {
    type As<'src> = RegRole;
    unsafe fn unbox<'src>(datum: pgrx::datum::Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        RegRole(pg_sys::Oid::from(datum.sans_lifetime().value() as u32))
    }
}

impl pgrx::datum::IntoDatum for RegRole {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0.to_u32()))
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGROLEOID
    }
}

/// `TRUNCATE vault.secrets` also truncates vault.secret_acl and vault.secret_versions (their
/// foreign keys would refuse it otherwise, 0A000), as if the user had listed them: supabase_vault
/// has no such tables and its users truncate vault.secrets. Other tables referencing
/// vault.secrets still refuse, as PostgreSQL does. Install once, in the postmaster.
pub fn install_truncate_hook() {
    // SAFETY: hooks are process globals set in the postmaster before any backend forks.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(truncate_hook);
    }
}

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

unsafe extern "C-unwind" {
    /// PostgreSQL's own ProcessUtility, called directly rather than through pgrx's wrapper.
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility_raw(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// Not `#[pg_guard]`, on purpose: every utility statement (COPY, CALL, DO, DDL) runs through
/// this hook, and an ERROR it raises must reach PostgreSQL untouched. Through pgrx's error
/// boundary it would be caught and raised again, losing its CONTEXT (a COPY's line number) and,
/// with RUST_BACKTRACE set, gaining a Rust backtrace as DETAIL. This frame owns nothing that
/// needs dropping, so PostgreSQL's longjmp may pass through it; the TRUNCATE rewrite, which
/// allocates and may raise, runs in a guarded function of its own before the call.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn truncate_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: the executor hands a valid PlannedStmt and the other arguments of the hook;
    // they are passed on unchanged (or with the statement copied and extended).
    unsafe {
        let stmt = with_truncate_companions(pstmt);
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(stmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => {
                standard_process_utility_raw(stmt, query_string, read_only_tree, context, params, query_env, dest, qc)
            }
        }
    }
}

/// `pstmt`, or for a TRUNCATE naming vault.secrets a copy that also names its companions.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn with_truncate_companions(pstmt: *mut pg_sys::PlannedStmt) -> *mut pg_sys::PlannedStmt {
    // SAFETY: a TruncateStmt's relations is a List of RangeVar. The statement is copied before
    // it is changed (it may belong to a cached plan); the copy lives in the current memory
    // context for the duration of the call.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() || (*utility).type_ != pg_sys::NodeTag::T_TruncateStmt {
            return pstmt;
        }
        let Some(extra) = truncate_companions(utility as *mut pg_sys::TruncateStmt) else {
            return pstmt;
        };
        let stmt: *mut pg_sys::PlannedStmt = pg_sys::copyObjectImpl(pstmt.cast()).cast();
        let t = (*stmt).utilityStmt as *mut pg_sys::TruncateStmt;
        for rv in extra {
            (*t).relations = pg_sys::lappend((*t).relations, rv.cast());
        }
        stmt
    }
}

/// The RangeVars to add to a TRUNCATE naming vault.secrets: vault.secret_acl,
/// vault.secret_versions and vault.secret_kinds unless already listed. None when it does not name vault.secrets.
unsafe fn truncate_companions(t: *mut pg_sys::TruncateStmt) -> Option<Vec<*mut pg_sys::RangeVar>> {
    // SAFETY: see truncate_hook; lookups with missing_ok and NoLock never raise for a missing
    // relation (a lock is taken by TRUNCATE itself).
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"vault".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let rel = |name: &CStr| pg_sys::get_relname_relid(name.as_ptr(), nsp);
        let (secrets, acl, versions) = (rel(c"secrets"), rel(c"secret_acl"), rel(c"secret_versions"));
        let kinds = rel(c"secret_kinds");
        if secrets == pg_sys::InvalidOid {
            return None;
        }
        let list = (*t).relations;
        let n = if list.is_null() { 0 } else { (*list).length };
        let mut listed = Vec::new();
        for i in 0..n {
            let rv = (*(*list).elements.add(i as usize)).ptr_value as *mut pg_sys::RangeVar;
            listed.push(pg_sys::RangeVarGetRelidExtended(
                rv,
                pg_sys::NoLock as i32,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            ));
        }
        if !listed.contains(&secrets) {
            return None;
        }
        let mut extra = Vec::new();
        for (oid, name) in [
            (acl, c"secret_acl"),
            (versions, c"secret_versions"),
            (kinds, c"secret_kinds"),
        ] {
            if oid != pg_sys::InvalidOid && !listed.contains(&oid) {
                extra.push(pg_sys::makeRangeVar(
                    pg_sys::pstrdup(c"vault".as_ptr()),
                    pg_sys::pstrdup(name.as_ptr()),
                    -1,
                ));
            }
        }
        (!extra.is_empty()).then_some(extra)
    }
}

/// The bootstrap superuser (the role that ran initdb): `as_user` it to read the catalogs even
/// where their privileges were revoked from PUBLIC.
pub fn bootstrap_superuser() -> pg_sys::Oid {
    pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID)
}

/// Call `f` on every pg_proc syscache invalidation this process receives (a function created,
/// replaced, altered or dropped, here or by a committed transaction elsewhere, or a cache
/// reset). Register once, in the postmaster while preloading.
pub fn on_function_invalidation(f: fn()) {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn trampoline(arg: pg_sys::Datum, _cacheid: std::ffi::c_int, _hash: u32) {
        // SAFETY: `arg` is the `fn()` pointer registered below, converted losslessly.
        let f: fn() = unsafe { std::mem::transmute::<usize, fn()>(arg.value()) };
        f();
    }
    // SAFETY: as for the relcache callback: a per-process table inherited by forked backends;
    // PROCOID is a valid syscache id on every supported version.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as std::ffi::c_int,
            Some(trampoline),
            pg_sys::Datum::from(f as usize),
        )
    };
}

static mut PREVIOUS_POST_PARSE_ANALYZE: pg_sys::post_parse_analyze_hook_type = None;
static mut AFTER_PARSE_ANALYSIS: Option<fn()> = None;

/// Call `f` after the parse analysis of every statement (post_parse_analyze_hook), when the
/// backend is inside a transaction that is neither aborted nor in parallel mode: a point where
/// catalogs may be read. Install once, in the postmaster while preloading.
pub fn after_parse_analysis(f: fn()) {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn hook(
        pstate: *mut pg_sys::ParseState,
        query: *mut pg_sys::Query,
        jstate: *mut pg_sys::JumbleState,
    ) {
        // SAFETY: the hook variables were set once in the postmaster before any backend
        // existed; the previous hook gets the arguments Postgres gave us.
        unsafe {
            if let Some(previous) = PREVIOUS_POST_PARSE_ANALYZE {
                previous(pstate, query, jstate);
            }
            // Only for statements that will take a snapshot anyway: a catalog query made while
            // analysing BEGIN / SET TRANSACTION ISOLATION LEVEL would take the transaction's
            // snapshot first, and SET TRANSACTION would then fail (25001).
            let plannable = !query.is_null() && (*query).commandType != pg_sys::CmdType::CMD_UTILITY;
            if plannable
                && pg_sys::IsTransactionState()
                && !pg_sys::IsAbortedTransactionBlockState()
                && !pg_sys::IsInParallelMode()
            {
                if let Some(f) = AFTER_PARSE_ANALYSIS {
                    f();
                }
            }
        }
    }
    // SAFETY: _PG_init runs once in the postmaster before any backend exists; chaining the
    // previous hook is the documented way to share post_parse_analyze_hook.
    unsafe {
        AFTER_PARSE_ANALYSIS = Some(f);
        PREVIOUS_POST_PARSE_ANALYZE = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(hook);
    }
}
