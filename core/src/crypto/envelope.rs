//! Column encryption for `vault.encrypt` / `vault.decrypt` (SPEC §11), and how the generated
//! keys (encryption keys, signing keys) are kept as the value of a non-exportable secret.
//!
//! Ciphertext: `vault:v<N>:` + standard base64 (with padding) of nonce (24) || ciphertext ||
//! tag (16), XChaCha20-Poly1305-IETF with a random nonce and the caller's context as associated
//! data; N is the key version (1-based).
//!
//! An encryption key's value: its versions' 32-byte keys, standard base64, separated by one
//! space, oldest first. A signing key's value: the Ed25519 secret key (seed || public key),
//! standard base64.
#![forbid(unsafe_code)]

use crate::ffi::sodium::{self, Aead, OutOfMemory, SecretVec, AEAD_TAG_BYTES};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const PREFIX: &str = "vault:v";
const NONCE_BYTES: usize = 24;
pub const KEY_BYTES: usize = 32;

/// Why a ciphertext was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not `vault:v<N>:<base64>` of at least nonce + tag.
    Malformed,
    /// Wrong key, wrong context or tampered.
    Forged,
    OutOfMemory(usize),
}

/// `vault:v<version>:...` of `plaintext` under `key` with `context` as associated data.
pub fn seal(version: u32, key: &[u8; KEY_BYTES], plaintext: &[u8], context: &[u8]) -> Result<String, OutOfMemory> {
    let mut nonce = [0u8; NONCE_BYTES];
    sodium::random_nonce(&mut nonce);
    let ct = Aead::XChaCha20Poly1305Ietf.encrypt(plaintext, context, &nonce, key)?;
    let mut blob = sodium::try_with_capacity(NONCE_BYTES + ct.len())?;
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    let mut out = format!("{PREFIX}{version}:");
    STANDARD.encode_string(&blob, &mut out);
    Ok(out)
}

/// The version a ciphertext names, and its decoded blob.
pub fn parse(ciphertext: &str) -> Result<(u32, Vec<u8>), OpenError> {
    let rest = ciphertext.strip_prefix(PREFIX).ok_or(OpenError::Malformed)?;
    let (v, b64) = rest.split_once(':').ok_or(OpenError::Malformed)?;
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(OpenError::Malformed);
    }
    let version: u32 = v.parse().map_err(|_| OpenError::Malformed)?;
    let blob = STANDARD.decode(b64).map_err(|_| OpenError::Malformed)?;
    if version == 0 || blob.len() < NONCE_BYTES + AEAD_TAG_BYTES {
        return Err(OpenError::Malformed);
    }
    Ok((version, blob))
}

/// The plaintext of a parsed blob under `key` and `context`.
pub fn open(key: &[u8; KEY_BYTES], blob: &[u8], context: &[u8]) -> Result<SecretVec, OpenError> {
    let (nonce, ct) = blob.split_at(NONCE_BYTES);
    match Aead::XChaCha20Poly1305Ietf.decrypt(ct, context, nonce, key) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(OpenError::Forged),
        Err(e) => Err(OpenError::OutOfMemory(e.bytes)),
    }
}

/// An encryption key's versions, decoded from its value (None: not such a value).
pub struct KeyRing(Vec<SecretVec>);

impl KeyRing {
    pub fn decode(value: &[u8]) -> Option<KeyRing> {
        let text = std::str::from_utf8(value).ok()?;
        let mut keys = Vec::new();
        for part in text.split(' ') {
            let k = SecretVec::from_vec(STANDARD.decode(part).ok()?);
            if k.as_slice().len() != KEY_BYTES {
                return None;
            }
            keys.push(k);
        }
        (!keys.is_empty()).then_some(KeyRing(keys))
    }

    /// A ring of one new random key.
    pub fn generate() -> KeyRing {
        KeyRing(vec![random_key()])
    }

    /// The value to store (wiped when dropped).
    pub fn encode(&self) -> SecretVec {
        let mut out = SecretVec::with_capacity(self.0.len() * 45);
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                out.vec_mut().push(b' ');
            }
            let mut b64 = STANDARD.encode(k.as_slice()).into_bytes();
            out.vec_mut().extend_from_slice(&b64);
            sodium::memzero(&mut b64);
        }
        out
    }

    /// Add a new random key; returns its version.
    pub fn rotate(&mut self) -> u32 {
        self.0.push(random_key());
        self.latest()
    }

    pub fn latest(&self) -> u32 {
        self.0.len() as u32
    }

    /// The key of `version` (1-based).
    pub fn key(&self, version: u32) -> Option<&[u8; KEY_BYTES]> {
        let k = self.0.get((version as usize).checked_sub(1)?)?;
        k.as_slice().try_into().ok()
    }
}

fn random_key() -> SecretVec {
    let mut k = SecretVec::from_vec(vec![0u8; KEY_BYTES]);
    sodium::random_bytes(k.vec_mut());
    k
}

/// A signing key's value: base64 of the 64-byte Ed25519 secret key.
pub fn encode_signing_key(sk: &[u8]) -> SecretVec {
    SecretVec::from_vec(STANDARD.encode(sk).into_bytes())
}

/// The Ed25519 secret key in a signing key's value (None: not such a value).
pub fn decode_signing_key(value: &[u8]) -> Option<SecretVec> {
    let sk = SecretVec::from_vec(STANDARD.decode(value).ok()?);
    (sk.as_slice().len() == crate::ffi::sodium_use::ED25519_SECRET_BYTES).then_some(sk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_with_context_and_version() {
        sodium::init().unwrap();
        let mut ring = KeyRing::generate();
        let ct = seal(1, ring.key(1).unwrap(), b"4111 1111", b"user:1").unwrap();
        assert!(ct.starts_with("vault:v1:"));
        let (v, blob) = parse(&ct).unwrap();
        assert_eq!(v, 1);
        assert_eq!(blob.len(), 24 + 9 + 16);
        assert_eq!(
            open(ring.key(1).unwrap(), &blob, b"user:1").unwrap().as_slice(),
            b"4111 1111"
        );
        assert_eq!(
            open(ring.key(1).unwrap(), &blob, b"user:2").err(),
            Some(OpenError::Forged)
        );
        assert_eq!(ring.rotate(), 2);
        assert_eq!(
            open(ring.key(2).unwrap(), &blob, b"user:1").err(),
            Some(OpenError::Forged)
        );
        let mut tampered = blob.clone();
        tampered[30] ^= 1;
        assert_eq!(
            open(ring.key(1).unwrap(), &tampered, b"user:1").err(),
            Some(OpenError::Forged)
        );
        // The ring survives its encoding; versions keep their keys.
        let again = KeyRing::decode(ring.encode().as_slice()).unwrap();
        assert_eq!(again.latest(), 2);
        assert_eq!(
            open(again.key(1).unwrap(), &blob, b"user:1").unwrap().as_slice(),
            b"4111 1111"
        );
        assert!(again.key(0).is_none() && again.key(3).is_none());
        // Two encryptions of the same plaintext differ (random nonce).
        assert_ne!(
            seal(1, ring.key(1).unwrap(), b"x", b"").unwrap(),
            seal(1, ring.key(1).unwrap(), b"x", b"").unwrap()
        );
    }

    #[test]
    fn malformed_ciphertexts() {
        for bad in [
            "",
            "vault:v1",
            "vault:v:AAAA",
            "vault:vx:AAAA",
            "vault:v0:",
            "vault:v1:not base64!",
            "vault:v1:AAAA",
            "vault:v-1:AAAA",
            "VAULT:v1:AAAA",
        ] {
            assert_eq!(parse(bad).err(), Some(OpenError::Malformed), "{bad}");
        }
        assert!(KeyRing::decode(b"").is_none());
        assert!(KeyRing::decode(b"AAAA").is_none());
        assert!(decode_signing_key(b"AAAA").is_none());
    }
}
