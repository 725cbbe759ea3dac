//! Data keys: derived from the root key with libsodium's `crypto_kdf_derive_from_key` (key id
//! and 8-byte context, as pgsodium does), never stored. Caching them is the caller's business.
#![forbid(unsafe_code)]

use crate::crypto::cipher::{DataKey, KeyType};
use crate::ffi::sodium::{self, SecretBytes};

/// The data key of `key_type` for subkey `key_num` and `context` under `root_key` (32 bytes).
/// None only when guarded memory is exhausted.
pub fn derive(root_key: &[u8], key_type: KeyType, key_num: u64, context: &[u8; 8]) -> Option<DataKey> {
    let mut sub = SecretBytes::zeroed(32)?;
    sodium::kdf_derive(sub.as_mut_slice(), key_num, context, root_key);
    DataKey::new(key_type, sub.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_id_context_and_root() {
        sodium::init().unwrap();
        let root = [3u8; 32];
        let ad = b"00000000-0000-0000-0000-000000000001";
        let nonce = [9u8; 16];
        let blob = |k: DataKey| k.encrypt(b"value", ad, Some(&nonce));
        let base = blob(derive(&root, KeyType::AeadDet, 1, b"pgsodium").unwrap());
        assert_eq!(base, blob(derive(&root, KeyType::AeadDet, 1, b"pgsodium").unwrap()));
        assert_ne!(base, blob(derive(&root, KeyType::AeadDet, 2, b"pgsodium").unwrap()));
        assert_ne!(base, blob(derive(&root, KeyType::AeadDet, 1, b"otherctx").unwrap()));
        assert_ne!(
            base,
            blob(derive(&[4u8; 32], KeyType::AeadDet, 1, b"pgsodium").unwrap())
        );
    }
}
