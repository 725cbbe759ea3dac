//! What a ciphertext is bound to besides its key and nonce: the associated data.
//!
//! An *open* secret is bound to its row id as text, exactly as supabase_vault does, so its
//! ciphertext stays compatible. A *restricted* secret (one with per-secret grants) is bound to
//! its id plus a fixed mark. Ciphertext is self-describing this way: whoever decrypts a
//! restricted ciphertext learns that grants must allow it, even where no grant row says so
//! (another database of the cluster, a deleted or renamed secret, a backup), and can deny by
//! default. Nobody without the data key can move a ciphertext from one binding to the other.
#![forbid(unsafe_code)]

use crate::crypto::encoding::uuid_text;

/// Appended to the id text for restricted secrets. The NUL cannot occur in a UUID's text.
const RESTRICTED_MARK: &[u8] = b"\0vault_ext restricted";
const MAX: usize = 36 + RESTRICTED_MARK.len();

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Binding {
    /// Bound to the id only (supabase_vault's format).
    Open,
    /// Bound to the id and the restricted mark: only for callers the grants allow.
    Restricted,
}

impl Binding {
    /// The other binding (the fallback candidate when decrypting).
    pub fn other(self) -> Binding {
        match self {
            Binding::Open => Binding::Restricted,
            Binding::Restricted => Binding::Open,
        }
    }
}

/// The associated data of secret `id` under `binding`, on the stack.
pub struct AssociatedData {
    buf: [u8; MAX],
    len: usize,
}

impl AssociatedData {
    pub fn new(id: &[u8; 16], binding: Binding) -> AssociatedData {
        let mut buf = [0u8; MAX];
        buf[..36].copy_from_slice(&uuid_text(id));
        let len = match binding {
            Binding::Open => 36,
            Binding::Restricted => {
                buf[36..].copy_from_slice(RESTRICTED_MARK);
                MAX
            }
        };
        AssociatedData { buf, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cipher::{DataKey, KeyType};
    use crate::ffi::sodium::{self, SecretVec};

    #[test]
    fn open_binding_is_the_id_text_and_restricted_differs() {
        let id = [0xabu8; 16];
        assert_eq!(AssociatedData::new(&id, Binding::Open).as_slice(), &uuid_text(&id)[..]);
        let r = AssociatedData::new(&id, Binding::Restricted);
        assert!(r.as_slice().starts_with(&uuid_text(&id)));
        assert_ne!(r.as_slice(), AssociatedData::new(&id, Binding::Open).as_slice());
        assert_eq!(Binding::Open.other(), Binding::Restricted);
    }

    #[test]
    fn a_restricted_ciphertext_only_decrypts_as_restricted() {
        sodium::init().unwrap();
        for kt in [KeyType::AeadDet, KeyType::AeadIetf] {
            let key = DataKey::new(kt, &[5u8; 32]).unwrap();
            let id = [7u8; 16];
            let nonce = vec![1u8; kt.nonce_bytes()];
            let (open, restricted) = (
                AssociatedData::new(&id, Binding::Open),
                AssociatedData::new(&id, Binding::Restricted),
            );
            let blob = key.encrypt(b"v", restricted.as_slice(), Some(&nonce)).unwrap();
            let only_open = key.decrypt(SecretVec::from_vec(blob.clone()), open.as_slice(), Some(&nonce));
            assert!(
                only_open.is_err(),
                "{kt:?}: a restricted ciphertext must not pass as open"
            );
            let (plain, which) = key
                .decrypt_any(
                    SecretVec::from_vec(blob),
                    &[open.as_slice(), restricted.as_slice()],
                    Some(&nonce),
                )
                .unwrap();
            assert_eq!((plain.as_slice(), which), (&b"v"[..], 1));
        }
    }
}
