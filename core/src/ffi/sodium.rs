//! The only module that calls into libsodium. Everything else uses the small safe API here.
//!
//! Buffers that hold key material live in `SecretBytes` (libsodium guarded heap: guard pages,
//! `mlock`, excluded from core dumps, zeroed on free). Plaintext buffers use `SecretVec`, which
//! zeroes itself when dropped. Neither type implements `Debug` or `Display`.

use libsodium_sys as ffi;
use std::ffi::c_void;
use std::ptr::NonNull;

/// libsodium could not initialise (no usable randomness source).
#[derive(Debug)]
pub struct InitFailed;

/// Initialise libsodium. Safe to call more than once.
pub fn init() -> Result<(), InitFailed> {
    // SAFETY: sodium_init is thread-safe and idempotent; it returns -1 only on failure.
    if unsafe { ffi::sodium_init() } < 0 {
        Err(InitFailed)
    } else {
        Ok(())
    }
}

/// Key material in libsodium's guarded heap.
pub struct SecretBytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: SecretBytes owns its allocation exclusively; the pointer is never shared outside
// borrows tied to `&self`/`&mut self`, so moving it between threads is sound. Postgres
// backends are single-threaded in any case.
unsafe impl Send for SecretBytes {}
// SAFETY: shared access only ever reads (or changes page protection, which is idempotent).
unsafe impl Sync for SecretBytes {}

impl SecretBytes {
    /// A zero-filled guarded buffer of `len` bytes (len > 0), or None when allocation fails.
    pub fn zeroed(len: usize) -> Option<Self> {
        assert!(len > 0);
        // SAFETY: sodium_malloc returns NULL or a pointer to `len` writable bytes.
        let raw = unsafe { ffi::sodium_malloc(len) } as *mut u8;
        let ptr = NonNull::new(raw)?;
        // SAFETY: `ptr` points to `len` writable bytes just allocated.
        unsafe { ffi::sodium_memzero(ptr.as_ptr() as *mut c_void, len) };
        Some(SecretBytes { ptr, len })
    }

    /// A guarded buffer filled from the operating system's CSPRNG.
    pub fn random(len: usize) -> Option<Self> {
        let mut s = Self::zeroed(len)?;
        random_bytes(s.as_mut_slice());
        Some(s)
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe our live allocation; callers keep it readable (see
        // `set_no_access`, whose users restore access before reading).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Make the pages unreadable until `set_read_only` is called; any stray read crashes
    /// instead of leaking.
    pub fn set_no_access(&self) {
        // SAFETY: ptr came from sodium_malloc.
        unsafe { ffi::sodium_mprotect_noaccess(self.ptr.as_ptr() as *mut c_void) };
    }

    pub fn set_read_only(&self) {
        // SAFETY: ptr came from sodium_malloc.
        unsafe { ffi::sodium_mprotect_readonly(self.ptr.as_ptr() as *mut c_void) };
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // SAFETY: ptr came from sodium_malloc and is freed exactly once; sodium_free makes the
        // pages writable again, zeroes them and releases them.
        unsafe { ffi::sodium_free(self.ptr.as_ptr() as *mut c_void) };
    }
}

/// An allocation sized by input could not be made. Buffers whose size a caller chooses are
/// allocated fallibly, so a huge argument fails cleanly instead of aborting the process.
#[derive(Debug, PartialEq, Eq)]
pub struct OutOfMemory {
    pub bytes: usize,
}

/// `n` zero bytes, or OutOfMemory when they cannot be allocated.
pub fn try_zeroed_vec(n: usize) -> Result<Vec<u8>, OutOfMemory> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| OutOfMemory { bytes: n })?;
    v.resize(n, 0);
    Ok(v)
}

/// An empty vector with room for `n` bytes, or OutOfMemory.
pub fn try_with_capacity(n: usize) -> Result<Vec<u8>, OutOfMemory> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| OutOfMemory { bytes: n })?;
    Ok(v)
}

/// A growable byte buffer (plaintext, decoded ciphertext) that is zeroed when dropped.
pub struct SecretVec(Vec<u8>);

impl SecretVec {
    /// `n` zero bytes, allocated fallibly.
    pub fn try_zeroed(n: usize) -> Result<Self, OutOfMemory> {
        try_zeroed_vec(n).map(SecretVec)
    }
    pub fn with_capacity(n: usize) -> Self {
        SecretVec(Vec::with_capacity(n))
    }
    pub fn from_vec(v: Vec<u8>) -> Self {
        SecretVec(v)
    }
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretVec {
    fn drop(&mut self) {
        // Zero the whole capacity: earlier contents may sit beyond len.
        let cap = self.0.capacity();
        if cap > 0 {
            // SAFETY: the Vec owns `cap` bytes at as_mut_ptr(); zeroing them (including the
            // uninitialised tail) is a plain write through a valid pointer.
            unsafe { ffi::sodium_memzero(self.0.as_mut_ptr() as *mut c_void, cap) };
        }
    }
}

pub fn memzero(buf: &mut [u8]) {
    // SAFETY: buf is a valid, writable slice.
    unsafe { ffi::sodium_memzero(buf.as_mut_ptr() as *mut c_void, buf.len()) };
}

pub fn random_bytes(buf: &mut [u8]) {
    // SAFETY: buf is a valid, writable slice of buf.len() bytes.
    unsafe { ffi::randombytes_buf(buf.as_mut_ptr() as *mut c_void, buf.len()) };
}

/// Random bytes for nonces (public values: they are stored beside the ciphertext), served from a
/// per-process pool refilled from the OS CSPRNG 4 KiB at a time instead of one getrandom call
/// per secret. The pool remembers which process filled it, so a forked backend never hands out
/// bytes its parent (or a sibling) also holds.
pub fn random_nonce(buf: &mut [u8]) {
    const POOL: usize = 4096;
    struct Pool {
        pid: u32,
        bytes: Vec<u8>,
        used: usize,
    }
    thread_local! {
        static NONCES: std::cell::RefCell<Pool> = const {
            std::cell::RefCell::new(Pool { pid: 0, bytes: Vec::new(), used: 0 })
        };
    }
    if buf.len() > POOL / 4 {
        return random_bytes(buf);
    }
    NONCES.with(|p| {
        let mut p = p.borrow_mut();
        let pid = std::process::id();
        if p.pid != pid || p.used + buf.len() > p.bytes.len() {
            p.bytes.resize(POOL, 0);
            random_bytes(&mut p.bytes);
            p.pid = pid;
            p.used = 0;
        }
        let start = p.used;
        buf.copy_from_slice(&p.bytes[start..start + buf.len()]);
        // Bytes handed out are erased from the pool so they cannot be handed out again.
        p.bytes[start..start + buf.len()].fill(0);
        p.used += buf.len();
    });
}

/// SHA-256 of `msg` (libsodium `crypto_hash_sha256`).
pub fn sha256(msg: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // SAFETY: out has the 32 bytes crypto_hash_sha256 writes; msg is a readable slice.
    unsafe { ffi::crypto_hash_sha256(out.as_mut_ptr(), msg.as_ptr(), msg.len() as u64) };
    out
}

/// Constant-time comparison of two 32-byte values.
pub fn verify_32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // SAFETY: both pointers refer to 32 readable bytes.
    unsafe { ffi::crypto_verify_32(a.as_ptr(), b.as_ptr()) == 0 }
}

/// libsodium `crypto_kdf_derive_from_key` (BLAKE2b-based), into a 32-byte `out`.
pub fn kdf_derive(out: &mut [u8], subkey_id: u64, context: &[u8; 8], key: &[u8]) {
    assert_eq!(out.len(), 32);
    assert_eq!(key.len(), 32);
    // SAFETY: out has 32 writable bytes (within the KDF's 16..64 range); context has the 8
    // bytes crypto_kdf_CONTEXTBYTES requires; key has crypto_kdf_KEYBYTES (32) bytes.
    let rc = unsafe {
        ffi::crypto_kdf_derive_from_key(
            out.as_mut_ptr(),
            out.len(),
            subkey_id,
            context.as_ptr() as *const _,
            key.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "crypto_kdf_derive_from_key rejected fixed-size arguments");
}

/// Keyed BLAKE2b (`crypto_generichash`) of `msg` into `out` (16..=64 bytes).
pub fn generichash(out: &mut [u8], msg: &[u8], key: &[u8]) {
    // SAFETY: all pointers/lengths come from valid slices; libsodium checks the size ranges
    // (out 16..64, key 0..64) and we only pass fixed sizes inside them.
    let rc = unsafe {
        ffi::crypto_generichash(
            out.as_mut_ptr(),
            out.len(),
            msg.as_ptr(),
            msg.len() as _,
            if key.is_empty() { std::ptr::null() } else { key.as_ptr() },
            key.len(),
        )
    };
    assert_eq!(rc, 0, "crypto_generichash rejected fixed-size arguments");
}

/// Multi-part keyed BLAKE2b with a 32-byte output. The state holds key material and is
/// zeroed on drop.
pub struct Blake2b256 {
    state: Box<ffi::crypto_generichash_state>,
}

impl Blake2b256 {
    pub fn new(key: &[u8; 32]) -> Self {
        let mut state = Box::new(ffi::crypto_generichash_state { opaque: [0u8; 384] });
        // SAFETY: state is a valid, writable, properly aligned libsodium state; key is 32 bytes.
        let rc = unsafe { ffi::crypto_generichash_init(&mut *state, key.as_ptr(), 32, 32) };
        assert_eq!(rc, 0);
        Blake2b256 { state }
    }

    pub fn update(&mut self, data: &[u8]) {
        // SAFETY: state was initialised by new(); data is a valid slice.
        unsafe { ffi::crypto_generichash_update(&mut *self.state, data.as_ptr(), data.len() as _) };
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // SAFETY: state was initialised; out has the 32 bytes requested at init.
        unsafe { ffi::crypto_generichash_final(&mut *self.state, out.as_mut_ptr(), 32) };
        out
    }
}

/// BLAKE2b-256 keyed once. libsodium keeps the padded key block in its buffer until more input
/// comes, so a plain keyed state would spend one of its two compressions per short message on
/// the key again. `primed` is the state with the key block already compressed and the buffer
/// empty: one compression per message of up to 128 bytes (aead-det runs three hashes per
/// secret, so six compressions become three). Both states live in guarded memory and are
/// copied for each hash; libsodium's state holds no pointers, so a byte copy is a valid state.
pub struct KeyedBlake2b256 {
    init: SecretBytes,
    primed: Option<SecretBytes>,
}

/// Where libsodium 1.0.22's packed `blake2b_state` (h[8], t[2], f[2], buf[256], buflen) keeps
/// `buflen`, and where its buffer starts.
const BLAKE2B_BUFLEN_AT: usize = 352;
const BLAKE2B_BUF_AT: usize = 96;

type HashState = ffi::crypto_generichash_state;

impl KeyedBlake2b256 {
    pub fn new(key: &[u8; 32]) -> Option<Self> {
        let h = Blake2b256::new(key);
        let mut init = SecretBytes::zeroed(std::mem::size_of::<HashState>())?;
        init.as_mut_slice().copy_from_slice(&h.state.opaque);
        init.set_read_only();
        let mut keyed = KeyedBlake2b256 { init, primed: None };
        keyed.primed = keyed.prime();
        Some(keyed)
    }

    /// The primed state: 129 more bytes make libsodium compress the key block (the counter is
    /// then 128) and keep 129 bytes buffered, which are dropped by setting buflen to 0. Only
    /// used when the state layout is the expected one and primed hashes equal unprimed ones
    /// for messages on both sides of the block size; otherwise every hash takes the plain path.
    fn prime(&self) -> Option<SecretBytes> {
        // Allocated first: nothing returns early while a copy of the keyed state is on the stack.
        let mut primed = SecretBytes::zeroed(std::mem::size_of::<HashState>())?;
        let mut state = HashState { opaque: [0u8; 384] };
        state.opaque.copy_from_slice(self.init.as_slice());
        // SAFETY: a copy of an initialised state; the input is a valid 129-byte array.
        unsafe { ffi::crypto_generichash_update(&mut state, [0u8; 129].as_ptr(), 129) };
        let buflen = &mut state.opaque[BLAKE2B_BUFLEN_AT..BLAKE2B_BUFLEN_AT + 8];
        let layout_ok = buflen == 129usize.to_ne_bytes();
        buflen.copy_from_slice(&0usize.to_ne_bytes());
        state.opaque[BLAKE2B_BUF_AT..BLAKE2B_BUFLEN_AT].fill(0);
        primed.as_mut_slice().copy_from_slice(&state.opaque);
        memzero(&mut state.opaque);
        primed.set_read_only();
        let probe = [0x5au8; 300];
        let agrees = [1usize, 16, 36, 64, 127, 128, 129, 200, 256, 257, 300]
            .iter()
            .all(|&n| Self::hash_from(&primed, &[&probe[..n]]) == Self::hash_from(&self.init, &[&probe[..n]]));
        (layout_ok && agrees).then_some(primed)
    }

    /// BLAKE2b-256 of the concatenated parts, keyed.
    pub fn hash(&self, parts: &[&[u8]]) -> [u8; 32] {
        match &self.primed {
            // The primed state has no block left for an empty message's final compression.
            Some(primed) if parts.iter().any(|p| !p.is_empty()) => Self::hash_from(primed, parts),
            _ => Self::hash_from(&self.init, parts),
        }
    }

    fn hash_from(start: &SecretBytes, parts: &[&[u8]]) -> [u8; 32] {
        let mut state = HashState { opaque: [0u8; 384] };
        state.opaque.copy_from_slice(start.as_slice());
        let mut out = [0u8; 32];
        // SAFETY: state is a copy of a state libsodium initialised for 32-byte output (the
        // Rust type keeps its 64-byte alignment); parts are valid slices; out has 32 bytes.
        unsafe {
            for p in parts {
                ffi::crypto_generichash_update(&mut state, p.as_ptr(), p.len() as _);
            }
            ffi::crypto_generichash_final(&mut state, out.as_mut_ptr(), 32);
        }
        memzero(&mut state.opaque);
        out
    }

    /// Whether hashes take the primed path (for tests).
    #[cfg(test)]
    pub fn is_primed(&self) -> bool {
        self.primed.is_some()
    }
}

impl Drop for Blake2b256 {
    fn drop(&mut self) {
        memzero(&mut self.state.opaque);
    }
}

/// XOR `buf` in place with the XChaCha20 keystream (block counter 0).
pub fn xchacha20_xor_in_place(buf: &mut [u8], nonce: &[u8; 24], key: &[u8; 32]) {
    if buf.is_empty() {
        return;
    }
    // SAFETY: libsodium's stream functions allow c == m (in place); nonce and key have the
    // sizes crypto_stream_xchacha20 requires.
    unsafe {
        ffi::crypto_stream_xchacha20_xor(
            buf.as_mut_ptr(),
            buf.as_ptr(),
            buf.len() as _,
            nonce.as_ptr(),
            key.as_ptr(),
        )
    };
}

/// The two libsodium combined-mode AEADs vault_ext offers besides aead-det.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Aead {
    /// crypto_aead_xchacha20poly1305_ietf: 24-byte nonce, 16-byte tag.
    XChaCha20Poly1305Ietf,
    /// crypto_aead_aes256gcm: 12-byte nonce, 16-byte tag; needs AES-NI and CLMUL.
    Aes256Gcm,
}

pub const AEAD_TAG_BYTES: usize = 16;

pub fn aes256gcm_available() -> bool {
    // SAFETY: a pure CPU-feature query (sodium_init has run).
    unsafe { ffi::crypto_aead_aes256gcm_is_available() == 1 }
}

impl Aead {
    pub fn nonce_bytes(self) -> usize {
        match self {
            Aead::XChaCha20Poly1305Ietf => 24,
            Aead::Aes256Gcm => 12,
        }
    }

    /// Returns ciphertext || 16-byte tag.
    pub fn encrypt(self, msg: &[u8], ad: &[u8], nonce: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, OutOfMemory> {
        assert_eq!(nonce.len(), self.nonce_bytes());
        let mut out = try_zeroed_vec(msg.len().saturating_add(AEAD_TAG_BYTES))?;
        let mut out_len: u64 = 0;
        let encrypt = match self {
            Aead::XChaCha20Poly1305Ietf => ffi::crypto_aead_xchacha20poly1305_ietf_encrypt,
            Aead::Aes256Gcm => ffi::crypto_aead_aes256gcm_encrypt,
        };
        // SAFETY: out has room for msg + tag; nonce length checked above; key is 32 bytes;
        // aes256gcm is only reached after aes256gcm_available() (checked by the caller).
        let rc = unsafe {
            encrypt(
                out.as_mut_ptr(),
                &mut out_len as *mut u64 as *mut _,
                msg.as_ptr(),
                msg.len() as _,
                ad.as_ptr(),
                ad.len() as _,
                std::ptr::null(),
                nonce.as_ptr(),
                key.as_ptr(),
            )
        };
        assert_eq!(rc, 0);
        out.truncate(out_len as usize);
        Ok(out)
    }

    /// Verifies and decrypts ciphertext || tag; None when it does not authenticate.
    pub fn decrypt(
        self,
        blob: &[u8],
        ad: &[u8],
        nonce: &[u8],
        key: &[u8; 32],
    ) -> Result<Option<SecretVec>, OutOfMemory> {
        if nonce.len() != self.nonce_bytes() || blob.len() < AEAD_TAG_BYTES {
            return Ok(None);
        }
        let mut out = SecretVec::try_zeroed(blob.len() - AEAD_TAG_BYTES)?;
        let mut out_len: u64 = 0;
        let decrypt = match self {
            Aead::XChaCha20Poly1305Ietf => ffi::crypto_aead_xchacha20poly1305_ietf_decrypt,
            Aead::Aes256Gcm => ffi::crypto_aead_aes256gcm_decrypt,
        };
        // SAFETY: out has blob.len() - tag bytes; the other pointers are valid slices of the
        // sizes libsodium requires (checked above).
        let rc = unsafe {
            decrypt(
                out.vec_mut().as_mut_ptr(),
                &mut out_len as *mut u64 as *mut _,
                std::ptr::null_mut(),
                blob.as_ptr(),
                blob.len() as _,
                ad.as_ptr(),
                ad.len() as _,
                nonce.as_ptr(),
                key.as_ptr(),
            )
        };
        if rc != 0 {
            return Ok(None);
        }
        out.vec_mut().truncate(out_len as usize);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_fail_instead_of_aborting() {
        assert_eq!(
            try_zeroed_vec(usize::MAX / 2).err(),
            Some(OutOfMemory { bytes: usize::MAX / 2 })
        );
        assert!(SecretVec::try_zeroed(isize::MAX as usize).is_err());
        assert_eq!(try_zeroed_vec(3).unwrap(), vec![0, 0, 0]);
    }

    #[test]
    fn nonces_from_the_pool_do_not_repeat() {
        init().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            // 2000 x 24 bytes: the pool is refilled several times.
            let mut n = [0u8; 24];
            random_nonce(&mut n);
            assert!(seen.insert(n), "a nonce repeated");
        }
    }

    #[test]
    fn keyed_blake2b_primed_state_matches_one_shot_hashes() {
        init().unwrap();
        let key = [7u8; 32];
        let keyed = KeyedBlake2b256::new(&key).unwrap();
        assert!(
            keyed.is_primed(),
            "the primed state must be in use with the bundled libsodium"
        );
        let msg: Vec<u8> = (0..600u32).map(|i| (i * 31 % 251) as u8).collect();
        for n in [0usize, 1, 31, 32, 36, 100, 127, 128, 129, 255, 256, 257, 384, 600] {
            let mut expected = [0u8; 32];
            generichash(&mut expected, &msg[..n], &key);
            assert_eq!(keyed.hash(&[&msg[..n]]), expected, "length {n}");
            let (a, b) = msg[..n].split_at(n / 3);
            assert_eq!(keyed.hash(&[a, b]), expected, "length {n} in two parts");
        }
    }
}
