//! Which words make a log record touch the vault, for the log hook (vault.log_redact = vault).
//!
//! The `statement:` line is written before the statement is parsed and analysed, so the decision
//! must be made from its text alone. A text touches the vault when it says `vault` or `_secret`
//! (vault_core's `mentions_vault`, also true for any Unicode-escaped identifier), or names:
//! - an object of schema vault, qualified or not (`INSERT INTO secrets` under a search_path
//!   holding vault; the COPY CONTEXT line `COPY secrets, line 1: "..."`);
//! - a function or procedure whose body or settings (`SET search_path = vault`) use the vault,
//!   directly or through other such functions, by name or through the dependencies PostgreSQL
//!   records for SQL-standard bodies (`BEGIN ATOMIC`). Functions in C or internal are opaque
//!   and ignored; so are pg_catalog and information_schema.
//!
//! The set of names is computed per backend at a safe point (after a statement's parse analysis,
//! inside a normal transaction, never in the log hook) and stamped (cache::epoch): any pg_proc
//! or relcache invalidation makes it stale. While it is stale or not yet computed the log hook
//! fails closed: the vault's own names (vault_core's `VAULT_NAMES`) still count, and so does any
//! statement that may call a function. Names are compared as PostgreSQL compares identifiers,
//! lowercased, ignoring schemas and argument types: a name shared with an unrelated object only
//! masks more.

use crate::cache::{self, Stamp};
use crate::error::{VResult, VaultError};
use crate::ffi::pg;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use vault_core::text::redact::{any_word, may_call_function, mentions_vault, VAULT_NAMES};

thread_local! {
    /// The names (lowercase) and the stamp they are valid under.
    static NAMES: RefCell<Option<(HashSet<Vec<u8>>, Stamp)>> = const { RefCell::new(None) };
    /// Set while the names are being computed: the catalog queries are parsed too.
    static REFRESHING: Cell<bool> = const { Cell::new(false) };
    /// Set when this backend decrypts a value, for the rest of the session: a value outlives its
    /// transaction in a WITH HOLD cursor or a setting (the second review of issue 26 logged one
    /// through both after the transaction that decrypted it had ended).
    static DECRYPTED: Cell<bool> = const { Cell::new(false) };
}

/// Note that a value was decrypted in this session: from then on every log record counts as
/// touching the vault (an error may quote the value, reached through a view or a function whose
/// name the log text does not show).
pub fn note_decryption() {
    DECRYPTED.with(|d| d.set(true));
}

/// Whether this session has decrypted a value (for the log hook).
pub fn decrypted() -> bool {
    DECRYPTED.with(Cell::get)
}

/// Objects of schema vault (any kind), with their OIDs.
const VAULT_OBJECTS_SQL: &str = "\
SELECT c.oid::pg_catalog.int8, c.relname::pg_catalog.text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE n.nspname OPERATOR(pg_catalog.=) 'vault'
UNION ALL
SELECT p.oid::pg_catalog.int8, p.proname::pg_catalog.text
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
 WHERE n.nspname OPERATOR(pg_catalog.=) 'vault'";

/// Functions whose body PostgreSQL keeps as text (or as a SQL-standard body, whose references
/// are in pg_depend): body and settings as text, and the functions and relations they depend on.
/// 1255 and 1259 are the fixed OIDs of pg_proc and pg_class.
const FUNCTIONS_SQL: &str = "\
SELECT p.oid::pg_catalog.int8, p.proname::pg_catalog.text,
       pg_catalog.concat_ws(' ', p.prosrc, p.proconfig::pg_catalog.text),
       ARRAY(SELECT d.refobjid::pg_catalog.int8 FROM pg_catalog.pg_depend d
              WHERE d.classid OPERATOR(pg_catalog.=) 1255::pg_catalog.oid
                AND d.objid OPERATOR(pg_catalog.=) p.oid
                AND d.refclassid OPERATOR(pg_catalog.=) ANY ('{1255,1259}'::pg_catalog.oid[]))
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
 WHERE l.lanname OPERATOR(pg_catalog.<>) ALL ('{internal,c}'::pg_catalog.name[])
   AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema}'::pg_catalog.name[])";

struct Function {
    oid: i64,
    name: Vec<u8>,
    direct: bool,
    words: HashSet<Vec<u8>>,
    depends_on: Vec<i64>,
}

fn load() -> VResult<HashSet<Vec<u8>>> {
    let mut names: HashSet<Vec<u8>> = VAULT_NAMES.iter().map(|n| n.as_bytes().to_vec()).collect();
    let mut oids: HashSet<i64> = HashSet::new();
    let mut functions = Vec::new();
    // As the bootstrap superuser: a role without access to the catalogs (hardened servers revoke
    // it) must not make every statement fail. Every name in the queries is schema-qualified.
    pg::as_user(pg::bootstrap_superuser(), || {
        Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
            for row in client.select(VAULT_OBJECTS_SQL, None, &[])? {
                if let (Some(oid), Some(name)) = (row.get::<i64>(1)?, row.get::<String>(2)?) {
                    oids.insert(oid);
                    names.insert(name.to_ascii_lowercase().into_bytes());
                }
            }
            for row in client.select(FUNCTIONS_SQL, None, &[])? {
                let (Some(oid), Some(name)) = (row.get::<i64>(1)?, row.get::<String>(2)?) else {
                    continue;
                };
                let body = row.get::<String>(3)?.unwrap_or_default();
                let mut words = HashSet::new();
                any_word(body.as_bytes(), |w| {
                    words.insert(w.to_vec());
                    false
                });
                functions.push(Function {
                    oid,
                    name: name.to_ascii_lowercase().into_bytes(),
                    direct: mentions_vault(body.as_bytes()),
                    words,
                    depends_on: row.get::<Vec<i64>>(4)?.unwrap_or_default(),
                });
            }
            Ok(())
        })
    })
    .map_err(VaultError::spi("read the catalog for log redaction"))?;
    // Close over calls: a function is sensitive when it uses the vault or a sensitive function.
    let mut sensitive = vec![false; functions.len()];
    loop {
        let mut changed = false;
        for (f, done) in functions.iter().zip(sensitive.iter_mut()) {
            if !*done
                && (f.direct
                    || f.depends_on.iter().any(|o| oids.contains(o))
                    || f.words.iter().any(|w| names.contains(w)))
            {
                *done = true;
                changed = true;
                oids.insert(f.oid);
                names.insert(f.name.clone());
            }
        }
        if !changed {
            return Ok(names);
        }
    }
}

/// Bring the names up to date if they are stale. Called after parse analysis, inside a
/// transaction that is neither aborted nor parallel (see `ffi::pg::after_parse_analysis`).
pub fn refresh() {
    if REFRESHING.with(Cell::get) || NAMES.with(|n| n.borrow().as_ref().is_some_and(|(_, s)| s.is_valid())) {
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REFRESHING.with(|r| r.set(false));
        }
    }
    REFRESHING.with(|r| r.set(true));
    let _reset = Reset;
    // An error leaves the names stale: the log hook keeps failing closed.
    if let Ok((names, stamp)) = cache::epoch::load(load) {
        NAMES.with(|n| *n.borrow_mut() = Some((names, stamp)));
    }
}

/// Whether a log text touches the vault (see the module's documentation). Called by the log
/// hook: reads what `refresh` computed, never the catalog.
pub fn touches_vault(text: &[u8]) -> bool {
    if mentions_vault(text) {
        return true;
    }
    NAMES.with(|n| match n.try_borrow() {
        Ok(kept) => match kept.as_ref().filter(|(_, stamp)| stamp.is_valid()) {
            Some((names, _)) => any_word(text, |w| names.contains(w)),
            None => any_word(text, |w| VAULT_NAMES.iter().any(|n| n.as_bytes() == w)) || may_call_function(text),
        },
        Err(_) => true,
    })
}
