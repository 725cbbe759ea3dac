//! The emit_log_hook that keeps secrets out of the server log.
//!
//! Under `vault.log_redact = vault` (the default), when a log record touches the vault (any part
//! of it, message, detail, context, hint, internal query, or the statement printed as
//! `STATEMENT:`, names it: the `touches_vault` given at install, vault::log_names; or it is about
//! a vault table; or this transaction has decrypted a value), every SQL string literal in them is
//! shown as `'***'`: statements logged by log_statement / log_min_duration_statement, bind
//! parameters (`Parameters: $1 = '...'`), PL/pgSQL CONTEXT lines, auto_explain's query text, the
//! input line COPY quotes, the input JSON errors show. An error, warning or notice that touches
//! the vault (not one of vault_ext's own, which never carry a value) has its quoted text masked in
//! the message, detail and hint too (a cast of a decrypted value quotes it), and its "Failing row
//! contains" detail and XML input withheld. Under `all` every record's literals are masked; under
//! `off` nothing is. Whatever the mode but off, the node trees that debug_print_parse /
//! _rewritten / _plan print lose their constants and strings. The lexer is vault_core's
//! `text::redact`; this file only reads and replaces the record's fields.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;
use vault_core::text::redact::{
    is_node_dump_title, is_statement_line, redact_context, redact_literals, redact_message, redact_node_dump,
    redact_sql,
};

/// Which records are redacted (vault.log_redact).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Redaction {
    /// Records that touch the vault.
    Vault,
    /// Every record.
    All,
    /// None.
    Off,
}

struct Policy {
    mode: fn() -> Redaction,
    touches_vault: fn(&[u8]) -> bool,
    decrypted: fn() -> bool,
}

static POLICY: OnceLock<Policy> = OnceLock::new();
static mut PREVIOUS_HOOK: pg_sys::emit_log_hook_type = None;

thread_local! {
    /// The redacted copy `debug_query_string` points at while the original is being logged.
    static STATEMENT: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Install the hook (from _PG_init, while preloading: every backend inherits it). `mode` reads
/// the setting; `touches_vault` decides for one text; `decrypted` says whether this backend's
/// transaction has decrypted a value.
pub fn install(mode: fn() -> Redaction, touches_vault: fn(&[u8]) -> bool, decrypted: fn() -> bool) {
    let _ = POLICY.set(Policy {
        mode,
        touches_vault,
        decrypted,
    });
    // SAFETY: _PG_init runs once in the postmaster before any backend exists; chaining the
    // previous hook is the documented way to share emit_log_hook.
    unsafe {
        PREVIOUS_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(redact_hook);
    }
}

fn always(_: &[u8]) -> bool {
    true
}

fn yes() -> bool {
    true
}

/// SQLSTATEs of XML input errors, whose DETAIL quotes the input without quotes (libxml's lines).
const XML_INPUT_ERRORS: [pgrx::PgSqlErrorCode; 4] = [
    pgrx::PgSqlErrorCode::ERRCODE_INVALID_XML_DOCUMENT,
    pgrx::PgSqlErrorCode::ERRCODE_INVALID_XML_CONTENT,
    pgrx::PgSqlErrorCode::ERRCODE_INVALID_XML_COMMENT,
    pgrx::PgSqlErrorCode::ERRCODE_INVALID_XML_PROCESSING_INSTRUCTION,
];

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: guaranteed by the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// The first line of a CONTEXT says a RAISE in a PL/pgSQL function of schema vault.
fn raised_by_vault_plpgsql(context: &[u8]) -> bool {
    let first = context.split(|&b| b == b'\n').next().unwrap_or_default();
    first.starts_with(b"PL/pgSQL function vault.") && first.ends_with(b" at RAISE")
}

/// Everything after the first ": " of a message (where PostgreSQL puts input it could not use,
/// often unquoted: `operator does not exist: ...`), for records of a session that decrypted.
fn mask_after_colon(text: &[u8]) -> Option<Vec<u8>> {
    let p = text.windows(2).position(|w| w == b": ")?;
    if &text[p + 2..] == b"\"***\"" {
        return None; // already masked where it was quoted
    }
    let mut out = text[..p + 2].to_vec();
    out.extend_from_slice(b"***");
    Some(out)
}

/// `redact_message` on each line of a CONTEXT (a line quotes input: `invalid type name "..."`).
fn redact_message_lines(text: &[u8]) -> Option<Vec<u8>> {
    let lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .map(|l| redact_message(l).unwrap_or_else(|| l.to_vec()))
        .collect();
    let out = lines.join(&b'\n');
    (out != text).then_some(out)
}

/// For a record of a session that decrypted a value: the internal query and the CONTEXT lines
/// `SQL statement "..."` are withheld (dynamic SQL may be built from the value, and only its
/// literals and numbers would be masked: identifiers and comments carry it too), and so is
/// auto_explain's Query Text of a statement other than the one the client sent (nested).
///
/// # Safety
/// `e` is the ErrorData being reported (see `redact_hook`).
unsafe fn withhold_dynamic_sql(e: &mut pg_sys::ErrorData, statement: Option<&[u8]>, server_only: bool) {
    // SAFETY: the fields are NULL or valid C strings; the copies are palloc'd in the current
    // (error) memory context, as `redact_field` does.
    unsafe {
        if !e.internalquery.is_null() {
            e.internalquery = pg_sys::pstrdup(c"(withheld by vault_ext)".as_ptr());
            e.internalpos = 0;
        }
        redact_field(&mut e.context, |c| {
            let mut changed = false;
            let lines: Vec<&[u8]> = c
                .split(|&b| b == b'\n')
                .map(|l| {
                    if l.starts_with(b"SQL statement \"") {
                        changed = true;
                        b"SQL statement (withheld by vault_ext)".as_slice()
                    } else {
                        l
                    }
                })
                .collect();
            changed.then(|| lines.join(&b'\n'))
        });
        if server_only {
            redact_field(&mut e.message, |m| {
                let p = m.windows(12).position(|w| w == b"Query Text: ")?;
                let query = &m[p + 12..];
                let top = statement.is_some_and(|s| !s.is_empty() && query.starts_with(s));
                if top {
                    return None;
                }
                let mut out = m[..p + 12].to_vec();
                out.extend_from_slice(b"(a nested statement, withheld by vault_ext)");
                Some(out)
            });
        }
    }
}

/// Replace `*field` with its redacted copy (palloc'd in the current, error, memory context).
///
/// # Safety
/// `*field` is NULL or a NUL-terminated string owned by the error data.
unsafe fn redact_field(field: &mut *mut c_char, redact: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    // SAFETY: see the function's contract.
    let Some(text) = (unsafe { bytes(*field) }) else { return };
    if text.len() > MAX_MASKED {
        // SAFETY: pstrdup copies a static C string into the current memory context.
        *field = unsafe { pg_sys::pstrdup(TOO_LONG.as_ptr()) };
        return;
    }
    if let Some(new) = redact(text).and_then(|v| CString::new(v).ok()) {
        // SAFETY: pstrdup copies a valid C string into the current memory context.
        *field = unsafe { pg_sys::pstrdup(new.as_ptr()) };
    }
}

/// Texts longer than this are withheld whole instead of masked: masking copies the text, and a
/// statement of hundreds of megabytes (which any role may send) must not make this hook
/// allocate its size while the server logs it (an allocation failure here aborts the backend).
const MAX_MASKED: usize = 1 << 20;
const TOO_LONG: &std::ffi::CStr = c"(text of more than 1 MiB withheld by vault_ext)";

#[pg_guard]
unsafe extern "C-unwind" fn redact_hook(edata: *mut pg_sys::ErrorData) {
    // SAFETY: Postgres passes the ErrorData being reported; it is valid and ours to modify
    // for the duration of the hook. debug_query_string is NULL or the current query's text.
    unsafe {
        if !edata.is_null() && (*edata).output_to_server {
            let e = &mut *edata;
            let (mode, touches_vault, decrypted) = match POLICY.get() {
                Some(p) => ((p.mode)(), p.touches_vault, p.decrypted),
                None => (Redaction::All, always as fn(&[u8]) -> bool, yes as fn() -> bool),
            };
            if mode == Redaction::Off {
                if let Some(previous) = PREVIOUS_HOOK {
                    previous(edata);
                }
                return;
            }
            // debug_print_*: constants are printed as bytes, whatever the statement.
            let dump = |f: *mut c_char| bytes(f).is_some_and(|d| d.windows(12).any(|w| w == b":constvalue "));
            if bytes(e.message).is_some_and(is_node_dump_title) || dump(e.detail) || dump(e.detail_log) {
                redact_field(&mut e.detail, redact_node_dump);
                redact_field(&mut e.detail_log, redact_node_dump);
            }
            let statement = bytes(pg_sys::debug_query_string);
            let in_vault_table = bytes(e.schema_name).is_some_and(|s| s == b"vault");
            let fields = [e.message, e.detail, e.detail_log, e.context, e.internalquery, e.hint];
            // A record touches the vault when its text or statement does, when it is about a vault
            // table, or when this transaction has decrypted a value (the value may be what the
            // error quotes, reached through a view or function whose name says nothing), here or
            // in a parallel worker: an error a worker raised is rethrown in the leader with the
            // CONTEXT line "parallel worker", and the worker may have decrypted what it quotes.
            let from_worker =
                bytes(e.context).is_some_and(|c| c.split(|&b| b == b'\n').any(|l| l == b"parallel worker"));
            let touches = in_vault_table
                || from_worker
                || decrypted()
                || statement.is_some_and(touches_vault)
                || fields.iter().any(|&f| bytes(f).is_some_and(touches_vault));
            let sensitive = mode == Redaction::All || touches;
            if sensitive {
                // Server-only records (statement, duration and auto_explain lines are LOG): their
                // primary message is SQL text, its literals masked. Other records' messages are
                // handled below (they also go to the client).
                let server_only = e.elevel <= pg_sys::LOG as i32 || e.elevel == pg_sys::LOG_SERVER_ONLY as i32;
                // vault_ext's own records (funcname "vault_ext": its errors, its audit lines)
                // never carry a value: their message and DETAIL keep ids and quoted names.
                // A RAISE in one of vault's own PL/pgSQL functions (nobody else may create one in
                // schema vault) is its own too: its message names arguments, never a value.
                let own = bytes(e.funcname).is_some_and(|f| f == b"vault_ext")
                    || bytes(e.context).is_some_and(raised_by_vault_plpgsql);
                // This session has decrypted a value (it may be anywhere now: a cursor, a setting,
                // dynamic SQL built from it): the second review of issue 26 logged values through
                // the text of dynamic statements (QUERY, CONTEXT "SQL statement", auto_explain's
                // nested Query Text) and through unquoted input in messages (`operator does not
                // exist: ...`). Such records lose those texts.
                let tainted = decrypted() && !own;
                if tainted {
                    withhold_dynamic_sql(e, statement, server_only);
                }
                if server_only && !own {
                    let sql = bytes(e.message).is_some_and(is_statement_line);
                    redact_field(&mut e.message, if sql { redact_sql } else { redact_literals });
                }
                redact_field(&mut e.internalquery, redact_sql);
                for field in [&mut e.detail, &mut e.detail_log] {
                    redact_field(field, if own { redact_literals } else { redact_context });
                }
                redact_field(&mut e.context, redact_context);
                // Errors (and warnings, notices) that touch the vault may quote a decrypted value
                // they could not read (`invalid input syntax for type integer: "..."`, a JSON
                // token in DETAIL, `relation "..." does not exist` for a `::regclass`): their
                // quoted text is masked in the message, DETAIL and HINT, for the log and the
                // client alike (PostgreSQL sends the client the same fields). Integrity
                // violations (class 23) quote only constraint, table and column names in their
                // message; their values are in DETAIL.
                let integrity =
                    e.sqlerrcode & 0xfff == pgrx::PgSqlErrorCode::ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION as i32;
                if touches && !server_only && !own {
                    let mut fields = vec![&mut e.hint, &mut e.detail, &mut e.detail_log];
                    if !integrity {
                        fields.push(&mut e.message);
                    }
                    for field in fields {
                        redact_field(field, redact_message);
                    }
                    if tainted {
                        redact_field(&mut e.message, mask_after_colon);
                        redact_field(&mut e.context, redact_message_lines);
                    }
                    if XML_INPUT_ERRORS.iter().any(|&c| c as i32 == e.sqlerrcode) {
                        for field in [&mut e.detail, &mut e.detail_log] {
                            if !field.is_null() {
                                *field = pg_sys::pstrdup(c"(XML input withheld by vault_ext)".as_ptr());
                            }
                        }
                    }
                }
                if in_vault_table || (touches && !own) {
                    for field in [&mut e.detail, &mut e.detail_log] {
                        if bytes(*field).is_some_and(|d| d.starts_with(b"Failing row contains")) {
                            *field = pg_sys::pstrdup(c"Failing row contains (withheld by vault_ext).".as_ptr());
                        }
                    }
                }
                let masked = match statement {
                    Some(text) if text.len() > MAX_MASKED => Some(TOO_LONG.to_owned()),
                    Some(text) => redact_sql(text).and_then(|v| CString::new(v).ok()),
                    None => None,
                };
                if let Some(new) = masked {
                    // Postgres prints debug_query_string as STATEMENT after this hook; point it at
                    // a redacted copy that lives until the next one replaces it.
                    STATEMENT.with(|s| {
                        let mut s = s.borrow_mut();
                        pg_sys::debug_query_string = new.as_ptr();
                        *s = Some(new);
                    });
                }
            }
        }
        if let Some(previous) = PREVIOUS_HOOK {
            previous(edata);
        }
    }
}
