//! Per-secret grants: a secret with at least one row in `vault.secret_acl` is readable only by
//! superusers, vault_admin members and the granted roles (and roles that inherit from them).
//! Checked inside the decrypt function itself, so calling it directly bypasses nothing: the
//! row id is the ciphertext's associated data, so another row's ciphertext cannot be passed
//! under an id the caller may read.
#![forbid(unsafe_code)]

use crate::errors::{VResult, VaultError};
use crate::hooks;
use crate::keys;
use crate::readcache;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{pg_sys, Uuid};
use std::cell::RefCell;
use std::collections::HashMap;

/// Cached per transaction. Who the caller is is NOT cached: SET ROLE and SECURITY DEFINER
/// functions change the current user within a transaction, even within a statement.
struct Acl {
    vault_admin: Option<pg_sys::Oid>,
    grants: HashMap<[u8; 16], Vec<pg_sys::Oid>>,
}

thread_local! {
    /// The grants, and whether they may outlive this transaction (see readcache.rs).
    static ACL: RefCell<Option<(std::rc::Rc<Acl>, bool)>> = const { RefCell::new(None) };
    /// The ACL query, planned once per backend (point lookups run it once per transaction).
    static ACL_QUERY: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

const ACL_SQL: &str = "SELECT secret_id, grantee::oid FROM vault.secret_acl";

/// Drop the cached grants (`only_transient`: unless they may outlive the transaction).
pub fn forget(only_transient: bool) {
    ACL.with(|a| {
        let mut a = a.borrow_mut();
        if !only_transient || a.as_ref().is_some_and(|(_, keep)| !keep) {
            a.take();
        }
    });
}

fn load() -> VResult<Acl> {
    let mut grants: HashMap<[u8; 16], Vec<pg_sys::Oid>> = HashMap::new();
    Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
        let rows = crate::plans::select(&ACL_QUERY, client, ACL_SQL, &[], None, &[])?;
        for row in rows {
            if let (Some(id), Some(role)) = (row.get::<Uuid>(1)?, row.get::<pg_sys::Oid>(2)?) {
                grants.entry(*id.as_bytes()).or_default().push(role);
            }
        }
        Ok(())
    })
    .map_err(|e| VaultError::BadArgument {
        message: format!("could not read vault.secret_acl: {e}"),
        hint: None,
    })?;
    Ok(Acl {
        vault_admin: hooks::role_oid(c"vault_admin"),
        grants,
    })
}

/// Whether the current user may read the plaintext of secret `id`.
pub fn may_read(id: &[u8; 16]) -> VResult<bool> {
    let acl = match ACL.with(|a| a.borrow().as_ref().map(|(acl, _)| acl.clone())) {
        Some(acl) => acl,
        None => {
            let (acl, keep) = readcache::load(load)?;
            let acl = std::rc::Rc::new(acl);
            keys::clear_at_transaction_end();
            ACL.with(|a| *a.borrow_mut() = Some((acl.clone(), keep)));
            acl
        }
    };
    if acl.grants.is_empty() {
        return Ok(true);
    }
    Ok(match acl.grants.get(id) {
        None => true,
        Some(roles) => {
            acl.vault_admin.is_some_and(hooks::current_user_has_privs_of)
                || roles.iter().any(|&r| hooks::current_user_has_privs_of(r))
        }
    })
}

/// Statement trigger on vault.secret_acl: drop the cached grants so this transaction sees
/// them, and tell every other backend when it commits.
#[pg_trigger]
fn grants_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    readcache::changed_here(trigger.relation()?.oid());
    Ok(None)
}
