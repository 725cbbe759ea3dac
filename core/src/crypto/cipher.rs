//! Ciphers for secrets, on top of the safe libsodium wrapper.
//!
//! `aead-det` is XChaCha20-SIV exactly as supabase_vault / pgsodium implement it (see
//! tests/data/README.md): blob = ciphertext || 32-byte S2V tag, optional 16-byte nonce.
//! `aead-ietf` and `aes256gcm` are libsodium's combined-mode AEADs (blob = ciphertext || 16-byte
//! tag). Ciphertext is stored as PostgreSQL `encode(blob, 'base64')` text.
#![forbid(unsafe_code)]

use crate::ffi::sodium::{self, Aead, Blake2b256, OutOfMemory, SecretBytes, SecretVec};

pub const DET_TAG_BYTES: usize = 32;
pub const DET_NONCE_BYTES: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KeyType {
    AeadDet,
    AeadIetf,
    Aes256Gcm,
}

impl KeyType {
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "aead-det" => Some(KeyType::AeadDet),
            "aead-ietf" => Some(KeyType::AeadIetf),
            "aes256gcm" => Some(KeyType::Aes256Gcm),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::AeadDet => "aead-det",
            KeyType::AeadIetf => "aead-ietf",
            KeyType::Aes256Gcm => "aes256gcm",
        }
    }

    /// Whether this machine can use the key type (AES-GCM needs AES-NI + CLMUL).
    pub fn supported(self) -> bool {
        self != KeyType::Aes256Gcm || sodium::aes256gcm_available()
    }

    pub fn nonce_bytes(self) -> usize {
        match self {
            KeyType::AeadDet => DET_NONCE_BYTES,
            KeyType::AeadIetf => Aead::XChaCha20Poly1305Ietf.nonce_bytes(),
            KeyType::Aes256Gcm => Aead::Aes256Gcm.nonce_bytes(),
        }
    }

    /// The shortest well-formed blob (an empty message's tag).
    pub fn min_blob_bytes(self) -> usize {
        match self {
            KeyType::AeadDet => DET_TAG_BYTES,
            _ => sodium::AEAD_TAG_BYTES,
        }
    }

    fn aead(self) -> Option<Aead> {
        match self {
            KeyType::AeadDet => None,
            KeyType::AeadIetf => Some(Aead::XChaCha20Poly1305Ietf),
            KeyType::Aes256Gcm => Some(Aead::Aes256Gcm),
        }
    }
}

/// A data key ready for use. For aead-det it holds the split keys and the per-key S2V
/// constant: ka (MAC key) | ke (stream key) | d0 = H_ka(32 zero bytes).
pub struct DataKey {
    key_type: KeyType,
    material: SecretBytes,
    /// aead-det: BLAKE2b keyed with ka, ready to copy.
    mac: Option<sodium::KeyedBlake2b256>,
}

/// Why a blob could not be decrypted. Deliberately carries no data.
#[derive(Debug, PartialEq, Eq)]
pub enum CipherError {
    /// Shorter than the tag, or a nonce of the wrong size.
    Malformed,
    /// The tag does not authenticate (wrong key, id, nonce, or tampered bytes).
    Forged,
    /// The output buffer could not be allocated (its size is the input's).
    OutOfMemory(usize),
}

impl From<OutOfMemory> for CipherError {
    fn from(e: OutOfMemory) -> Self {
        CipherError::OutOfMemory(e.bytes)
    }
}

impl DataKey {
    /// Build from a 32-byte derived data key. None only when guarded memory is exhausted.
    pub fn new(key_type: KeyType, data_key: &[u8]) -> Option<DataKey> {
        assert_eq!(data_key.len(), 32);
        let material = match key_type {
            KeyType::AeadDet => {
                let mut m = SecretBytes::zeroed(96)?;
                let buf = m.as_mut_slice();
                sodium::generichash(&mut buf[..64], &[], data_key);
                let ka: [u8; 32] = buf[..32].try_into().expect("32 bytes");
                let d0 = hash32(&ka, &[&[0u8; 32]]);
                buf[64..].copy_from_slice(&d0);
                m
            }
            _ => {
                let mut m = SecretBytes::zeroed(32)?;
                m.as_mut_slice().copy_from_slice(data_key);
                m
            }
        };
        let mac = match key_type {
            KeyType::AeadDet => Some(sodium::KeyedBlake2b256::new(
                material.as_slice()[..32].try_into().expect("32"),
            )?),
            _ => None,
        };
        material.set_read_only();
        Some(DataKey {
            key_type,
            material,
            mac,
        })
    }

    fn part(&self, i: usize) -> &[u8; 32] {
        self.material.as_slice()[i * 32..(i + 1) * 32]
            .try_into()
            .expect("32 bytes")
    }

    /// Encrypt `msg` bound to `ad` and `nonce`; returns the blob (ciphertext || tag).
    /// For aead-det the nonce may be None (skipped in S2V, as supabase_vault allows).
    pub fn encrypt(&self, msg: &[u8], ad: &[u8], nonce: Option<&[u8]>) -> Result<Vec<u8>, OutOfMemory> {
        match self.key_type.aead() {
            None => {
                let tag = self.s2v(ad, nonce, msg);
                let mut blob = sodium::try_with_capacity(msg.len().saturating_add(DET_TAG_BYTES))?;
                blob.extend_from_slice(msg);
                sodium::xchacha20_xor_in_place(&mut blob, tag[..24].try_into().expect("24"), self.part(1));
                blob.extend_from_slice(&tag);
                Ok(blob)
            }
            Some(aead) => aead.encrypt(msg, ad, nonce.expect("AEAD key types need a nonce"), self.part(0)),
        }
    }

    /// Decrypt a blob in place (it is consumed); returns the plaintext.
    pub fn decrypt(&self, blob: SecretVec, ad: &[u8], nonce: Option<&[u8]>) -> Result<SecretVec, CipherError> {
        self.decrypt_any(blob, &[ad], nonce).map(|(plain, _)| plain)
    }

    /// Decrypt a blob that was encrypted under one of `ads` (tried in order; the first is the
    /// expected one, so the usual case costs one decryption). Returns the plaintext and the
    /// index of the associated data that authenticated.
    pub fn decrypt_any(
        &self,
        mut blob: SecretVec,
        ads: &[&[u8]],
        nonce: Option<&[u8]>,
    ) -> Result<(SecretVec, usize), CipherError> {
        match self.key_type.aead() {
            None => {
                if nonce.is_some_and(|n| n.len() != DET_NONCE_BYTES) {
                    return Err(CipherError::Malformed);
                }
                let b = blob.vec_mut();
                if b.len() < DET_TAG_BYTES {
                    return Err(CipherError::Malformed);
                }
                let split = b.len() - DET_TAG_BYTES;
                let tag: [u8; 32] = b[split..].try_into().expect("32");
                b.truncate(split);
                // The keystream depends on the tag only, so one XOR serves every candidate.
                sodium::xchacha20_xor_in_place(b, tag[..24].try_into().expect("24"), self.part(1));
                for (i, ad) in ads.iter().enumerate() {
                    let expected = self.s2v(ad, nonce, blob.as_slice());
                    if sodium::verify_32(&tag, &expected) {
                        return Ok((blob, i));
                    }
                }
                sodium::memzero(blob.vec_mut());
                Err(CipherError::Forged)
            }
            Some(aead) => {
                let n = nonce.ok_or(CipherError::Malformed)?;
                if n.len() != aead.nonce_bytes() || blob.as_slice().len() < sodium::AEAD_TAG_BYTES {
                    return Err(CipherError::Malformed);
                }
                for (i, ad) in ads.iter().enumerate() {
                    if let Some(plain) = aead.decrypt(blob.as_slice(), ad, n, self.part(0))? {
                        return Ok((plain, i));
                    }
                }
                Err(CipherError::Forged)
            }
        }
    }

    /// S2V over (AD, nonce, message) with BLAKE2b-256 keyed by ka.
    fn s2v(&self, ad: &[u8], nonce: Option<&[u8]>, msg: &[u8]) -> [u8; 32] {
        let Some(mac) = &self.mac else {
            unreachable!("s2v is only used by aead-det keys, which have a MAC state")
        };
        let ka = |parts: &[&[u8]]| mac.hash(parts);
        let mut d = *self.part(2);
        if !ad.is_empty() {
            dbl(&mut d);
            xor32(&mut d, &ka(&[ad]));
        }
        if let Some(n) = nonce {
            dbl(&mut d);
            xor32(&mut d, &ka(&[n]));
        }
        let tag = if msg.len() >= 32 {
            let (head, last) = msg.split_at(msg.len() - 32);
            let mut t: [u8; 32] = last.try_into().expect("32");
            xor32(&mut t, &d);
            let out = ka(&[head, &t]);
            sodium::memzero(&mut t);
            out
        } else {
            dbl(&mut d);
            for (x, m) in d.iter_mut().zip(msg) {
                *x ^= m;
            }
            d[msg.len()] ^= 0x80;
            ka(&[&d])
        };
        sodium::memzero(&mut d);
        tag
    }
}

fn hash32(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b256::new(key);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn xor32(a: &mut [u8; 32], b: &[u8; 32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Doubling in GF(2^256) as S2V uses it: big-endian shift left by one, reduce with 0x425.
fn dbl(x: &mut [u8; 32]) {
    let (hi, lo) = x.split_at_mut(16);
    let h = u128::from_be_bytes((&*hi).try_into().expect("16"));
    let l = u128::from_be_bytes((&*lo).try_into().expect("16"));
    let reduce = 0u128.wrapping_sub(h >> 127) & 0x425;
    hi.copy_from_slice(&((h << 1) | (l >> 127)).to_be_bytes());
    lo.copy_from_slice(&((l << 1) ^ reduce).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::encoding::{base64_decode, base64_encode, hex_encode};
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/supabase_vault_0.3.1.json");
        let text = std::fs::read_to_string(path).expect("the compatibility vectors in tests/data");
        serde_json::from_str(&text).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        s.as_bytes()
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn dbl_shifts_left_and_reduces_with_0x425() {
        // Bit by bit, as the S2V definition states it: shift the 256-bit big-endian number
        // left by one; if the top bit fell off, XOR 0x425 into the low end.
        fn reference(x: &[u8; 32]) -> [u8; 32] {
            let mut out = [0u8; 32];
            for i in 0..32 {
                out[i] = (x[i] << 1) | x.get(i + 1).map_or(0, |n| n >> 7);
            }
            if x[0] & 0x80 != 0 {
                out[30] ^= 0x04;
                out[31] ^= 0x25;
            }
            out
        }
        let mut cases = vec![[0u8; 32], [0xff; 32], [0x80; 32], [0x01; 32]];
        let mut carry_between_halves = [0u8; 32];
        carry_between_halves[16] = 0x80;
        cases.push(carry_between_halves);
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..64 {
            let mut c = [0u8; 32];
            for b in c.iter_mut() {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (seed >> 24) as u8;
            }
            cases.push(c);
        }
        for c in cases {
            let mut x = c;
            dbl(&mut x);
            assert_eq!(x, reference(&c), "dbl of {}", hex_encode(&c));
        }
    }

    fn compat_key(root: &[u8]) -> DataKey {
        let mut dk = [0u8; 32];
        sodium::kdf_derive(&mut dk, 0, b"pgsodium", root);
        DataKey::new(KeyType::AeadDet, &dk).unwrap()
    }

    /// Every stored secret of a vector (final state and each pre-update state).
    fn cases(v: &Value) -> Vec<(String, String, String, String)> {
        let mut out = vec![];
        let id = v["id"].as_str().unwrap().to_string();
        let push = |out: &mut Vec<_>, s: &Value| {
            out.push((
                id.clone(),
                s["secret"].as_str().unwrap().to_string(),
                s["nonce"].as_str().unwrap().to_string(),
                s["plaintext"].as_str().unwrap().to_string(),
            ))
        };
        push(&mut out, v);
        for u in v["updates"].as_array().into_iter().flatten() {
            push(&mut out, &u["before"]);
        }
        out
    }

    #[test]
    fn kdf_matches_supabase_vault() {
        sodium::init().unwrap();
        let j = vectors();
        let mut dk = [0u8; 32];
        sodium::kdf_derive(&mut dk, 0, b"pgsodium", &hex(j["root_key_hex"].as_str().unwrap()));
        assert_eq!(hex_encode(&dk), j["kdf"]["derived_key_hex"].as_str().unwrap());
    }

    #[test]
    fn all_vectors_decrypt_and_reencrypt_byte_for_byte() {
        sodium::init().unwrap();
        let j = vectors();
        let vs = j["vectors"].as_array().unwrap();
        assert_eq!(vs.len(), 35);
        let mut checked = 0;
        for v in vs {
            let key = compat_key(&hex(v["root_key_hex"].as_str().unwrap()));
            for (id, secret, nonce, plain) in cases(v) {
                let nonce = hex(&nonce);
                let blob = base64_decode(secret.as_bytes()).expect("valid base64");
                let pt = key.decrypt(blob, id.as_bytes(), Some(&nonce)).expect("decrypts");
                assert_eq!(pt.as_slice(), plain.as_bytes(), "{}", v["label"]);
                let again = key.encrypt(plain.as_bytes(), id.as_bytes(), Some(&nonce)).unwrap();
                assert_eq!(
                    base64_encode(&again).unwrap(),
                    secret,
                    "{}: base64 text identical",
                    v["label"]
                );
                checked += 1;
            }
        }
        assert!(checked > 35);
    }

    #[test]
    fn every_tampered_bit_is_rejected() {
        sodium::init().unwrap();
        let j = vectors();
        for v in j["vectors"].as_array().unwrap() {
            if v["plaintext_bytes"].as_u64().unwrap() > 200 {
                continue; // long ones add time, not coverage: the tag covers every byte alike
            }
            let key = compat_key(&hex(v["root_key_hex"].as_str().unwrap()));
            let (id, secret, nonce, _) = cases(v).remove(0);
            let nonce = hex(&nonce);
            let blob = base64_decode(secret.as_bytes()).unwrap().as_slice().to_vec();
            // The same blob under a second candidate AD: found at index 1, and a wrong pair
            // of candidates is still rejected.
            let (pt, which) = key
                .decrypt_any(
                    SecretVec::from_vec(blob.clone()),
                    &[b"other", id.as_bytes()],
                    Some(&nonce),
                )
                .unwrap();
            assert_eq!((pt.as_slice(), which), (cases(v)[0].3.as_bytes(), 1));
            assert_eq!(
                key.decrypt_any(SecretVec::from_vec(blob.clone()), &[b"a", b"b"], Some(&nonce))
                    .err(),
                Some(CipherError::Forged)
            );
            for bit in 0..blob.len() * 8 {
                let mut b = blob.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    key.decrypt(SecretVec::from_vec(b), id.as_bytes(), Some(&nonce)).err(),
                    Some(CipherError::Forged)
                );
            }
            for bit in 0..nonce.len() * 8 {
                let mut n = nonce.clone();
                n[bit / 8] ^= 1 << (bit % 8);
                assert!(key
                    .decrypt(SecretVec::from_vec(blob.clone()), id.as_bytes(), Some(&n))
                    .is_err());
            }
            for bit in 0..id.len() * 8 {
                let mut a = id.as_bytes().to_vec();
                a[bit / 8] ^= 1 << (bit % 8);
                assert!(key
                    .decrypt(SecretVec::from_vec(blob.clone()), &a, Some(&nonce))
                    .is_err());
            }
            let short = blob[..DET_TAG_BYTES - 1].to_vec();
            assert_eq!(
                key.decrypt(SecretVec::from_vec(short), id.as_bytes(), Some(&nonce))
                    .err(),
                Some(CipherError::Malformed)
            );
        }
    }

    #[test]
    fn other_key_types_round_trip_and_reject_tampering() {
        sodium::init().unwrap();
        for kt in [KeyType::AeadIetf, KeyType::Aes256Gcm] {
            if !kt.supported() {
                continue;
            }
            let key = DataKey::new(kt, &[7u8; 32]).unwrap();
            let mut nonce = vec![0u8; kt.nonce_bytes()];
            sodium::random_bytes(&mut nonce);
            for msg in [&b""[..], b"x", &[0xabu8; 1000]] {
                let blob = key.encrypt(msg, b"ad", Some(&nonce)).unwrap();
                assert_eq!(blob.len(), msg.len() + kt.min_blob_bytes());
                let pt = key
                    .decrypt(SecretVec::from_vec(blob.clone()), b"ad", Some(&nonce))
                    .unwrap();
                assert_eq!(pt.as_slice(), msg);
                let (pt, which) = key
                    .decrypt_any(SecretVec::from_vec(blob.clone()), &[b"x", b"ad"], Some(&nonce))
                    .unwrap();
                assert_eq!((pt.as_slice(), which), (msg, 1));
                let mut bad = blob.clone();
                bad[0] ^= 1;
                assert!(key.decrypt(SecretVec::from_vec(bad), b"ad", Some(&nonce)).is_err());
                assert!(key.decrypt(SecretVec::from_vec(blob), b"ae", Some(&nonce)).is_err());
            }
        }
    }
}
