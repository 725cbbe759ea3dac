//! Non-exportable secrets (SPEC §11): their value is used inside the server and never
//! returned, also not to vault_admin. Every secret id that was ever non-exportable is kept in
//! `vault.unexportable_secrets` (written by a trigger as the owner, never emptied by a delete of
//! the secret), so a row restored or re-inserted under the same id with `exportable = true`
//! stays unreadable (the trigger refuses it with 22023, and the read path checks the ids here).
//!
//! The read path asks for every row it decrypts, so the ids are cached like the grants: loaded
//! once, kept until a change of the table (a statement trigger announces it, cache::epoch).

use crate::cache::{self, Stamp};
use crate::error::{VResult, VaultError};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::Uuid;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

/// The ids, and the stamp they are valid under.
type Kept = Option<(Rc<HashSet<[u8; 16]>>, Stamp)>;

thread_local! {
    static IDS: RefCell<Kept> = const { RefCell::new(None) };
    static QUERY: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

const SQL: &str = "SELECT u.secret_id FROM vault.unexportable_secrets u";

/// Whether the table exists: not in 0.1.0's schema, between installing this library and ALTER
/// EXTENSION UPDATE (no secret is non-exportable there).
const EXISTS_SQL: &str = "SELECT pg_catalog.to_regclass('vault.unexportable_secrets') IS NOT NULL";

fn load() -> VResult<HashSet<[u8; 16]>> {
    let mut ids = HashSet::new();
    Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
        if !client
            .select(EXISTS_SQL, Some(1), &[])?
            .first()
            .get::<bool>(1)?
            .unwrap_or(false)
        {
            return Ok(());
        }
        for row in cache::plans::select(&QUERY, client, SQL, &[], None, &[])? {
            if let Some(id) = row.get::<Uuid>(1)? {
                ids.insert(*id.as_bytes());
            }
        }
        Ok(())
    })
    .map_err(VaultError::spi("read vault.unexportable_secrets"))?;
    Ok(ids)
}

/// Whether secret `id` is (or ever was) non-exportable.
pub fn is_unexportable(id: &[u8; 16]) -> VResult<bool> {
    let kept = IDS.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(_, s)| s.is_valid())
            .map(|(ids, _)| ids.clone())
    });
    let ids = match kept {
        Some(ids) => ids,
        None => {
            let (ids, stamp) = cache::epoch::load(load)?;
            let ids = Rc::new(ids);
            IDS.with(|c| *c.borrow_mut() = Some((ids.clone(), stamp)));
            ids
        }
    };
    Ok(ids.contains(id))
}
