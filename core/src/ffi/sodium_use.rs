//! libsodium for using a secret without reading it (SPEC §11): HMAC-SHA-256/512 with keys of
//! any length (the `_init/_update/_final` API, RFC 2104 as libsodium implements it), Ed25519
//! (`crypto_sign_*`), and constant-time comparison. Only safe functions leave this file.

use crate::ffi::sodium::SecretVec;
use libsodium_sys as ffi;
use std::ffi::c_void;
use std::mem::MaybeUninit;

/// The two HMAC hash functions offered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HmacHash {
    Sha256,
    Sha512,
}

impl HmacHash {
    pub fn mac_bytes(self) -> usize {
        match self {
            HmacHash::Sha256 => 32,
            HmacHash::Sha512 => 64,
        }
    }
}

/// HMAC of the concatenation of `parts` under `key` (any length: longer than the block size it
/// is hashed first, as RFC 2104 says). The state, which holds key material, is wiped.
pub fn hmac(hash: HmacHash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0u8; hash.mac_bytes()];
    match hash {
        HmacHash::Sha256 => {
            let mut st = MaybeUninit::<ffi::crypto_auth_hmacsha256_state>::zeroed();
            // SAFETY: st is a zeroed state of the type libsodium expects and outlives every call;
            // key and each part are readable slices of the lengths passed; out has the 32 bytes
            // _final writes. The state is wiped with its own size afterwards.
            unsafe {
                ffi::crypto_auth_hmacsha256_init(st.as_mut_ptr(), key.as_ptr(), key.len());
                for p in parts {
                    ffi::crypto_auth_hmacsha256_update(st.as_mut_ptr(), p.as_ptr(), p.len() as _);
                }
                ffi::crypto_auth_hmacsha256_final(st.as_mut_ptr(), out.as_mut_ptr());
                ffi::sodium_memzero(
                    st.as_mut_ptr() as *mut c_void,
                    std::mem::size_of::<ffi::crypto_auth_hmacsha256_state>(),
                );
            }
        }
        HmacHash::Sha512 => {
            let mut st = MaybeUninit::<ffi::crypto_auth_hmacsha512_state>::zeroed();
            // SAFETY: as above, with the SHA-512 state and a 64-byte out.
            unsafe {
                ffi::crypto_auth_hmacsha512_init(st.as_mut_ptr(), key.as_ptr(), key.len());
                for p in parts {
                    ffi::crypto_auth_hmacsha512_update(st.as_mut_ptr(), p.as_ptr(), p.len() as _);
                }
                ffi::crypto_auth_hmacsha512_final(st.as_mut_ptr(), out.as_mut_ptr());
                ffi::sodium_memzero(
                    st.as_mut_ptr() as *mut c_void,
                    std::mem::size_of::<ffi::crypto_auth_hmacsha512_state>(),
                );
            }
        }
    }
    out
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths
/// (`sodium_memcmp`). Different lengths are unequal.
pub fn equal_ct(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // SAFETY: both slices are readable for a.len() bytes.
    unsafe { ffi::sodium_memcmp(a.as_ptr() as *const c_void, b.as_ptr() as *const c_void, a.len()) == 0 }
}

pub const ED25519_SEED_BYTES: usize = 32;
pub const ED25519_PUBLIC_BYTES: usize = 32;
pub const ED25519_SECRET_BYTES: usize = 64;
pub const ED25519_SIGNATURE_BYTES: usize = 64;

/// A new Ed25519 key pair from the OS CSPRNG: (public key, secret key = seed || public key).
pub fn ed25519_keypair() -> ([u8; ED25519_PUBLIC_BYTES], SecretVec) {
    let mut pk = [0u8; ED25519_PUBLIC_BYTES];
    let mut sk = SecretVec::from_vec(vec![0u8; ED25519_SECRET_BYTES]);
    // SAFETY: pk has 32 and sk 64 writable bytes, the sizes crypto_sign_keypair writes.
    let rc = unsafe { ffi::crypto_sign_keypair(pk.as_mut_ptr(), sk.vec_mut().as_mut_ptr()) };
    assert_eq!(rc, 0, "crypto_sign_keypair failed");
    (pk, sk)
}

/// The Ed25519 key pair of a 32-byte seed (RFC 8032's "secret key").
pub fn ed25519_seed_keypair(seed: &[u8; ED25519_SEED_BYTES]) -> ([u8; ED25519_PUBLIC_BYTES], SecretVec) {
    let mut pk = [0u8; ED25519_PUBLIC_BYTES];
    let mut sk = SecretVec::from_vec(vec![0u8; ED25519_SECRET_BYTES]);
    // SAFETY: pk 32 and sk 64 writable bytes; seed has the 32 bytes libsodium reads.
    let rc = unsafe { ffi::crypto_sign_seed_keypair(pk.as_mut_ptr(), sk.vec_mut().as_mut_ptr(), seed.as_ptr()) };
    assert_eq!(rc, 0, "crypto_sign_seed_keypair failed");
    (pk, sk)
}

/// Detached Ed25519 signature of `msg` with a 64-byte secret key; None for another size.
pub fn ed25519_sign(sk: &[u8], msg: &[u8]) -> Option<[u8; ED25519_SIGNATURE_BYTES]> {
    if sk.len() != ED25519_SECRET_BYTES {
        return None;
    }
    let mut sig = [0u8; ED25519_SIGNATURE_BYTES];
    // SAFETY: sig has 64 writable bytes; msg is readable for its length; sk has 64 bytes.
    let rc = unsafe {
        ffi::crypto_sign_detached(
            sig.as_mut_ptr(),
            std::ptr::null_mut(),
            msg.as_ptr(),
            msg.len() as _,
            sk.as_ptr(),
        )
    };
    (rc == 0).then_some(sig)
}

/// Whether `sig` is a valid Ed25519 signature of `msg` under public key `pk`. Wrong sizes are
/// invalid, not errors.
pub fn ed25519_verify(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    if pk.len() != ED25519_PUBLIC_BYTES || sig.len() != ED25519_SIGNATURE_BYTES {
        return false;
    }
    // SAFETY: sig has 64 and pk 32 readable bytes (checked); msg is readable for its length.
    unsafe { ffi::crypto_sign_verify_detached(sig.as_ptr(), msg.as_ptr(), msg.len() as _, pk.as_ptr()) == 0 }
}
