//! HMAC for `vault.hmac` / `vault.hmac_verify` (SPEC §11): SHA-256 or SHA-512, keys of any
//! length, verification in constant time.
#![forbid(unsafe_code)]

pub use crate::ffi::sodium_use::HmacHash;
use crate::ffi::sodium_use::{self, equal_ct};

/// `sha256` or `sha512` (any case); None for anything else.
pub fn parse_hash(name: &str) -> Option<HmacHash> {
    match name.to_ascii_lowercase().as_str() {
        "sha256" => Some(HmacHash::Sha256),
        "sha512" => Some(HmacHash::Sha512),
        _ => None,
    }
}

pub fn hmac(hash: HmacHash, key: &[u8], msg: &[u8]) -> Vec<u8> {
    sodium_use::hmac(hash, key, &[msg])
}

/// Whether `mac` is the HMAC of `msg` under `key`; a MAC of another length is false.
pub fn hmac_verify(hash: HmacHash, key: &[u8], msg: &[u8], mac: &[u8]) -> bool {
    equal_ct(&hmac(hash, key, msg), mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::encoding::hex_encode;

    /// RFC 4231 section 4: test cases 1, 2, 4, 6 and 7 (7 and 6 use a 131-byte key, longer than
    /// the block size, so they check that long keys are hashed first).
    #[test]
    fn rfc4231_vectors() {
        crate::ffi::sodium::init().unwrap();
        let aa131 = vec![0xaau8; 131];
        let cd50 = vec![0xcdu8; 50];
        let key4: Vec<u8> = (1..=25u8).collect();
        let cases: Vec<(&[u8], &[u8], &str, &str)> = vec![
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
            (
                &key4,
                &cd50,
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
            ),
            (
                &aa131,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ),
            (
                &aa131,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
            ),
        ];
        for (key, msg, want256, want512) in cases {
            let mac = hmac(HmacHash::Sha256, key, msg);
            assert_eq!(hex_encode(&mac), want256);
            assert!(hmac_verify(HmacHash::Sha256, key, msg, &mac));
            assert_eq!(hex_encode(&hmac(HmacHash::Sha512, key, msg)), want512);
        }
    }

    #[test]
    fn verify_refuses_a_changed_or_truncated_mac_and_names_are_checked() {
        crate::ffi::sodium::init().unwrap();
        let mut mac = hmac(HmacHash::Sha256, b"k", b"m");
        assert!(!hmac_verify(HmacHash::Sha256, b"k", b"m", &mac[..31]));
        assert!(!hmac_verify(HmacHash::Sha512, b"k", b"m", &mac));
        mac[31] ^= 1;
        assert!(!hmac_verify(HmacHash::Sha256, b"k", b"m", &mac));
        assert_eq!(parse_hash("SHA512"), Some(HmacHash::Sha512));
        assert_eq!(parse_hash("md5"), None);
        assert_eq!(parse_hash("sha-256"), None);
    }
}
