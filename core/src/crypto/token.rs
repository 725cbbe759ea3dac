//! API tokens for `pgvault serve` (vault.create_api_token): `pgv_` and 256 random bits in
//! base64url, 47 characters. Only SHA-256 of the token text is stored. A slow password hash
//! would add nothing: the token is 256 uniformly random bits, not a human choice, so there is
//! no dictionary to try and a preimage search is 2^256 SHA-256 evaluations.

use crate::ffi::sodium;

pub const PREFIX: &str = "pgv_";
/// 32 random bytes in base64url without padding.
const BODY_LEN: usize = 43;
pub const TOKEN_LEN: usize = PREFIX.len() + BODY_LEN;
/// Rows are found by the first bytes of the hash (an index), then the whole hash is compared in
/// constant time: the index lookup's timing depends only on a hash the caller computed itself.
pub const LOOKUP_LEN: usize = 8;

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A new token from the OS CSPRNG.
pub fn generate() -> String {
    let mut raw = [0u8; 32];
    sodium::random_bytes(&mut raw);
    let token = from_bytes(&raw);
    sodium::memzero(&mut raw);
    token
}

fn from_bytes(raw: &[u8; 32]) -> String {
    let mut out = String::with_capacity(TOKEN_LEN);
    out.push_str(PREFIX);
    let mut bits = 0u32;
    let mut n = 0u32;
    for &b in raw {
        bits = (bits << 8) | u32::from(b);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(B64URL[((bits >> n) & 63) as usize] as char);
        }
    }
    if n > 0 {
        out.push(B64URL[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}

/// Whether `token` has the shape of a token (prefix, length, alphabet). Anything else is
/// refused before hashing.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(PREFIX)
        && token.as_bytes()[PREFIX.len()..].iter().all(|c| B64URL.contains(c))
}

/// SHA-256 of the token text, or None when it is not a token.
pub fn hash(token: &str) -> Option<[u8; 32]> {
    well_formed(token).then(|| sodium::sha256(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_47_url_safe_characters_and_differ() {
        crate::ffi::sodium::init().unwrap();
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn the_body_is_base64url_of_the_bytes() {
        // 0xfb 0xff ... : the URL-safe symbols '-' and '_' appear, no padding.
        let mut raw = [0xffu8; 32];
        raw[0] = 0xfb;
        let t = from_bytes(&raw);
        assert!(t.starts_with("pgv_-_"), "{t}");
        assert!(t.ends_with("_8"), "{t}");
        assert_eq!(from_bytes(&[0u8; 32]), format!("pgv_{}", "A".repeat(43)));
    }

    #[test]
    fn malformed_tokens_have_no_hash() {
        crate::ffi::sodium::init().unwrap();
        let good = generate();
        assert!(hash(&good).is_some());
        for bad in [
            String::new(),
            good[..46].to_string(),
            format!("{good}A"),
            good.replacen("pgv_", "pgx_", 1),
            format!("pgv_{}+", &good[4..46]),
            format!("pgv_{}=", &good[4..46]),
        ] {
            assert!(hash(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_text() {
        crate::ffi::sodium::init().unwrap();
        let t = format!("pgv_{}", "A".repeat(43));
        // sha256 of "abc" (FIPS 180-2 test vector) checks the binding itself.
        assert_eq!(
            crate::crypto::encoding::hex_encode(&sodium::sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash(&t), Some(sodium::sha256(t.as_bytes())));
    }
}
