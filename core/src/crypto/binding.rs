//! What a ciphertext is bound to besides its key and nonce: the associated data.
//!
//! An *open* secret is bound to its row id as text, exactly as supabase_vault does, so its
//! ciphertext stays compatible. A *restricted* secret (one with per-secret grants) is bound to
//! its id plus a fixed mark. Ciphertext is self-describing this way: whoever decrypts a
//! restricted ciphertext learns that grants must allow it, even where no grant row says so
//! (another database of the cluster, a deleted or renamed secret, a backup), and can deny by
//! default. Nobody without the data key can move a ciphertext from one binding to the other.
//!
//! A *sealed* secret (non-exportable, SPEC §11) is bound to a second mark as well: its value is
//! only ever used inside the server, and the read path refuses a sealed ciphertext wherever it
//! turns up (another database, a restored or edited row), whatever the row claims.
#![forbid(unsafe_code)]

use crate::crypto::encoding::uuid_text;

/// Appended to the id text for restricted secrets. The NUL cannot occur in a UUID's text.
const RESTRICTED_MARK: &[u8] = b"\0vault_ext restricted";
/// Appended (after the restricted mark, if any) for sealed secrets.
const SEALED_MARK: &[u8] = b"\0vault_ext non-exportable";
const MAX: usize = 36 + RESTRICTED_MARK.len() + SEALED_MARK.len();

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Binding {
    /// Bound to the id only (supabase_vault's format).
    Open,
    /// Bound to the id and the restricted mark: only for callers the grants allow.
    Restricted,
    /// Open, and sealed: used inside the server, never returned.
    SealedOpen,
    /// Restricted, and sealed.
    SealedRestricted,
}

impl Binding {
    /// The other restriction, with the same seal (the fallback candidate when decrypting).
    pub fn other(self) -> Binding {
        match self {
            Binding::Open => Binding::Restricted,
            Binding::Restricted => Binding::Open,
            Binding::SealedOpen => Binding::SealedRestricted,
            Binding::SealedRestricted => Binding::SealedOpen,
        }
    }

    pub fn is_restricted(self) -> bool {
        matches!(self, Binding::Restricted | Binding::SealedRestricted)
    }

    pub fn is_sealed(self) -> bool {
        matches!(self, Binding::SealedOpen | Binding::SealedRestricted)
    }

    /// This binding with the seal on or off.
    pub fn sealed(self, seal: bool) -> Binding {
        match (self.is_restricted(), seal) {
            (false, false) => Binding::Open,
            (true, false) => Binding::Restricted,
            (false, true) => Binding::SealedOpen,
            (true, true) => Binding::SealedRestricted,
        }
    }

    /// `other()` when `flip`, else `self`.
    pub fn other_if(self, flip: bool) -> Binding {
        if flip {
            self.other()
        } else {
            self
        }
    }

    /// The four bindings, `self` first, then the other restriction, then both with the other
    /// seal: the order to try when decrypting.
    pub fn candidates(self) -> [Binding; 4] {
        let flipped = self.sealed(!self.is_sealed());
        [self, self.other(), flipped, flipped.other()]
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
        let mut len = 36;
        if binding.is_restricted() {
            buf[len..len + RESTRICTED_MARK.len()].copy_from_slice(RESTRICTED_MARK);
            len += RESTRICTED_MARK.len();
        }
        if binding.is_sealed() {
            buf[len..len + SEALED_MARK.len()].copy_from_slice(SEALED_MARK);
            len += SEALED_MARK.len();
        }
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
    fn the_four_bindings_have_four_associated_data() {
        let id = [0x11u8; 16];
        let all = Binding::Open.candidates();
        let ads: std::collections::HashSet<Vec<u8>> = all
            .iter()
            .map(|b| AssociatedData::new(&id, *b).as_slice().to_vec())
            .collect();
        assert_eq!(ads.len(), 4);
        assert_eq!(
            all,
            [
                Binding::Open,
                Binding::Restricted,
                Binding::SealedOpen,
                Binding::SealedRestricted
            ]
        );
        assert_eq!(Binding::SealedRestricted.other(), Binding::SealedOpen);
        assert!(Binding::SealedRestricted.is_restricted() && Binding::SealedOpen.is_sealed());
        assert_eq!(Binding::Restricted.sealed(true), Binding::SealedRestricted);
        assert_eq!(Binding::SealedOpen.sealed(false), Binding::Open);
    }

    #[test]
    fn a_sealed_ciphertext_does_not_decrypt_as_unsealed() {
        sodium::init().unwrap();
        let key = DataKey::new(KeyType::AeadDet, &[5u8; 32]).unwrap();
        let id = [7u8; 16];
        let nonce = vec![1u8; KeyType::AeadDet.nonce_bytes()];
        let sealed = AssociatedData::new(&id, Binding::SealedOpen);
        let blob = key.encrypt(b"v", sealed.as_slice(), Some(&nonce)).unwrap();
        let unsealed = [
            AssociatedData::new(&id, Binding::Open),
            AssociatedData::new(&id, Binding::Restricted),
        ];
        let ads = [unsealed[0].as_slice(), unsealed[1].as_slice()];
        assert!(key
            .decrypt_any(SecretVec::from_vec(blob.clone()), &ads, Some(&nonce))
            .is_err());
        let all = Binding::Open.candidates().map(|b| AssociatedData::new(&id, b));
        let ads: Vec<&[u8]> = all.iter().map(|a| a.as_slice()).collect();
        let (_, which) = key.decrypt_any(SecretVec::from_vec(blob), &ads, Some(&nonce)).unwrap();
        assert_eq!(Binding::Open.candidates()[which], Binding::SealedOpen);
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
