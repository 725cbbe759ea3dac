//! Data keys: derived from the root key with crypto_kdf_derive_from_key, never stored, cached
//! per backend (zeroed when dropped: guarded memory is wiped on free).
#![forbid(unsafe_code)]

use crate::cipher::{DataKey, KeyType};
use crate::errors::{VResult, VaultError};
use crate::root_key::{self, Root};
use crate::sodium::{self, SecretBytes};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

type CacheKey = (Root, KeyType, u64, [u8; 8]);

thread_local! {
    static CACHE: RefCell<HashMap<CacheKey, Rc<DataKey>>> = RefCell::new(HashMap::new());
    /// The key used last: a scan decrypts row after row with the same key.
    static LAST: RefCell<Option<(CacheKey, Rc<DataKey>)>> = const { RefCell::new(None) };
}

/// Wipe every cached data key (guarded memory is zeroed when freed).
fn wipe_cache() {
    let _ = LAST.try_with(|l| l.borrow_mut().take());
    let _ = CACHE.try_with(|c| c.borrow_mut().clear());
}

/// The data key for (root key, type, subkey id, context), derived on first use in this backend.
pub fn data_key(root: Root, key_type: KeyType, key_num: u64, context: &[u8; 8]) -> VResult<Rc<DataKey>> {
    let ck = (root, key_type, key_num, *context);
    if let Some(k) = LAST.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(last, _)| *last == ck)
            .map(|(_, k)| k.clone())
    }) {
        return Ok(k);
    }
    if let Some(k) = CACHE.with(|c| c.borrow().get(&ck).cloned()) {
        LAST.with(|l| *l.borrow_mut() = Some((ck, k.clone())));
        return Ok(k);
    }
    if root_key::fingerprint().is_none() {
        return Err(VaultError::NoRootKey);
    }
    if !key_type.supported() {
        return Err(VaultError::KeyTypeUnsupported(key_type.as_str()));
    }
    let mut sub = SecretBytes::zeroed(32).ok_or(VaultError::OutOfMemory)?;
    root_key::with_key(root, |rk| sodium::kdf_derive(sub.as_mut_slice(), key_num, context, rk))
        .ok_or(VaultError::NoRootKey)?;
    let key = Rc::new(DataKey::new(key_type, sub.as_slice()).ok_or(VaultError::OutOfMemory)?);
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.is_empty() {
            // First key in this backend: wipe them all when it exits.
            crate::hooks::at_process_exit(wipe_cache);
        }
        cache.insert(ck, key.clone());
    });
    Ok(key)
}
