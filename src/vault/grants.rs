//! Per-secret grants: a secret with at least one row in `vault.secret_acl` is readable only by
//! superusers, vault_admin members and the granted roles (and roles that inherit from them).
//! Checked inside the decrypt function itself, so calling it directly bypasses nothing: the
//! row id is the ciphertext's associated data, so another row's ciphertext cannot be passed
//! under an id the caller may read.

use crate::cache::{self, Stamp};
use crate::error::{VResult, VaultError};
use crate::ffi::pg;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{pg_sys, Uuid};
use std::cell::RefCell;
use std::collections::HashMap;

/// Cached per transaction. Who the caller is is NOT cached: SET ROLE and SECURITY DEFINER
/// functions change the current user within a transaction, even within a statement.
struct Acl {
    vault_admin: Option<pg_sys::Oid>,
    /// Per secret: the grantees, and whether each may read (`read`) or only use (`use`).
    grants: HashMap<[u8; 16], Vec<(pg_sys::Oid, bool)>>,
}

thread_local! {
    /// The grants, and the stamp they are valid under (cache::epoch).
    static ACL: RefCell<Option<(std::rc::Rc<Acl>, Stamp)>> = const { RefCell::new(None) };
    /// The ACL query, planned once per backend (point lookups run it once per transaction).
    static ACL_QUERY: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

/// Whether a grant allows reading: `privilege` is not 'use'. Read through to_jsonb so the query
/// also runs against 0.1.0's table (no such column; every grant reads) between installing this
/// library and ALTER EXTENSION UPDATE.
const ACL_SQL: &str = "SELECT a.secret_id, a.grantee::oid, \
                       (pg_catalog.to_jsonb(a) OPERATOR(pg_catalog.->>) 'privilege') IS DISTINCT FROM 'use' \
                       FROM vault.secret_acl a";

fn load() -> VResult<Acl> {
    let mut grants: HashMap<[u8; 16], Vec<(pg_sys::Oid, bool)>> = HashMap::new();
    Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
        let rows = cache::plans::select(&ACL_QUERY, client, ACL_SQL, &[], None, &[])?;
        for row in rows {
            if let (Some(id), Some(role)) = (row.get::<Uuid>(1)?, row.get::<pg_sys::Oid>(2)?) {
                let read = row.get::<bool>(3)?.unwrap_or(false);
                grants.entry(*id.as_bytes()).or_default().push((role, read));
            }
        }
        Ok(())
    })
    .map_err(VaultError::spi("read vault.secret_acl"))?;
    Ok(Acl {
        vault_admin: pg::role_oid(c"vault_admin"),
        grants,
    })
}

fn acl() -> VResult<std::rc::Rc<Acl>> {
    let kept = ACL.with(|a| {
        a.borrow()
            .as_ref()
            .filter(|(_, stamp)| stamp.is_valid())
            .map(|(acl, _)| acl.clone())
    });
    Ok(match kept {
        Some(acl) => acl,
        None => {
            let (acl, stamp) = cache::epoch::load(load)?;
            let acl = std::rc::Rc::new(acl);
            ACL.with(|a| *a.borrow_mut() = Some((acl.clone(), stamp)));
            acl
        }
    })
}

/// What the per-secret grants say about the current user and secret `id`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// The secret has no grants: every role that may read the view may read it.
    Open,
    /// The secret has grants and the current user is a superuser, a vault_admin member or a
    /// grantee.
    Granted,
    /// The secret has grants and none of them is the current user's.
    Denied,
}

/// What the caller wants to do with a secret: read its value, or only use it (vault.hmac, ...).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    Read,
    Use,
}

/// The current user's access to secret `id` for reading it.
pub fn access(id: &[u8; 16]) -> VResult<Access> {
    access_to(id, Need::Read)
}

/// The current user's access to secret `id` for `need`: a `read` grant allows both, a `use`
/// grant only using.
pub fn access_to(id: &[u8; 16], need: Need) -> VResult<Access> {
    let acl = acl()?;
    if acl.grants.is_empty() {
        return Ok(Access::Open);
    }
    Ok(match acl.grants.get(id) {
        None => Access::Open,
        Some(roles)
            if is_admin(&acl)
                || roles
                    .iter()
                    .any(|&(r, read)| (read || need == Need::Use) && pg::current_user_has_privs_of(r)) =>
        {
            Access::Granted
        }
        Some(_) => Access::Denied,
    })
}

thread_local! {
    static HAS_GRANTS_QUERY: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

/// Whether secret `id` has per-secret grants as of now, for writes (which bind the ciphertext
/// as restricted when it does). Read afresh under the latest snapshot, not from the cache: a
/// write that waited for another transaction's row lock must see the grant that transaction
/// committed, whose invalidation this backend has not processed yet.
pub fn has_grants_now(id: &[u8; 16]) -> VResult<bool> {
    const SQL: &str = "SELECT EXISTS (SELECT FROM vault.secret_acl a WHERE a.secret_id OPERATOR(pg_catalog.=) $1)";
    let read = || {
        Spi::connect(|client| -> Result<bool, pgrx::spi::Error> {
            let uuid = [pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::UUIDOID)];
            let rows = cache::plans::select(
                &HAS_GRANTS_QUERY,
                client,
                SQL,
                &uuid,
                Some(1),
                &[Uuid::from_bytes(*id).into()],
            )?;
            Ok(rows.first().get::<bool>(1)?.unwrap_or(false))
        })
        .map_err(VaultError::spi("read vault.secret_acl"))
    };
    pg::with_latest_snapshot(read).unwrap_or_else(read)
}

/// Whether the current user may read every secret: a superuser or a vault_admin member.
pub fn caller_is_admin() -> VResult<bool> {
    Ok(is_admin(&*acl()?))
}

fn is_admin(acl: &Acl) -> bool {
    pg::current_user_is_superuser() || acl.vault_admin.is_some_and(pg::current_user_has_privs_of)
}
