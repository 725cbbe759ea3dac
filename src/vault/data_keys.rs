//! Data keys for this backend: derived from a loaded root key on first use (vault_core's
//! `kdf::derive`), kept in guarded memory, wiped when the backend exits. The cache is keyed by
//! everything the derivation uses, so an entry can never be stale.

use crate::error::{VResult, VaultError};
use crate::ffi::pg;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use vault_core::crypto::cipher::{DataKey, KeyType};
use vault_core::crypto::kdf;
use vault_core::crypto::root_key::{self, Root};

type CacheKey = (Root, KeyType, u64, [u8; 8]);

/// Most data keys kept per backend. Each holds guarded pages (mlock'd, with guard mappings), and
/// a backend that touched tens of thousands of keys could no longer allocate any; past this
/// many, the oldest is dropped (and wiped) before a new one is kept.
const MAX_KEYS: usize = 256;

thread_local! {
    static CACHE: RefCell<HashMap<CacheKey, Rc<DataKey>>> = RefCell::new(HashMap::new());
    /// The cached keys in the order they were derived (oldest first), for eviction.
    static ORDER: RefCell<std::collections::VecDeque<CacheKey>> = const { RefCell::new(std::collections::VecDeque::new()) };
    /// The key used last: a scan decrypts row after row with the same key.
    static LAST: RefCell<Option<(CacheKey, Rc<DataKey>)>> = const { RefCell::new(None) };
}

/// Wipe every cached data key (guarded memory is zeroed when freed).
fn wipe_cache() {
    let _ = LAST.try_with(|l| l.borrow_mut().take());
    let _ = CACHE.try_with(|c| c.borrow_mut().clear());
    let _ = ORDER.try_with(|o| o.borrow_mut().clear());
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
    let key = root_key::with_key(root, |rk| kdf::derive(rk, key_type, key_num, context))
        .ok_or(VaultError::NoRootKey)?
        .ok_or(VaultError::OutOfMemory)?;
    let key = Rc::new(key);
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.is_empty() {
            // First key in this backend: wipe them all when it exits.
            pg::at_process_exit(wipe_cache);
        }
        ORDER.with(|o| {
            let mut order = o.borrow_mut();
            while order.len() >= MAX_KEYS {
                if let Some(oldest) = order.pop_front() {
                    cache.remove(&oldest); // its guarded memory is wiped when the last Rc goes
                }
            }
            order.push_back(ck);
        });
        cache.insert(ck, key.clone());
    });
    Ok(key)
}
