//! Compact JWS / JWT (RFC 7515, RFC 7519) for `vault.sign_jwt` / `vault.verify_jwt` (SPEC §11).
//!
//! Signing writes the header `{"alg":ALG,"typ":"JWT"}` and the claims exactly as given.
//! Verification takes the key's kind, not the token's word for it: an HMAC secret accepts only
//! HS256/HS512, an Ed25519 key only EdDSA (no `none`, no HS with a public key: no algorithm
//! confusion); a `crit` header is refused (no extension is understood); `exp` and `nbf`, when
//! present, must be numbers and hold at `now`. Any failure is `None`, never an error.
#![forbid(unsafe_code)]

use crate::ffi::sodium_use::{self, equal_ct, HmacHash};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Alg {
    Hs256,
    Hs512,
    EdDsa,
}

impl Alg {
    /// Exactly `HS256`, `HS512` or `EdDSA` (JWA names are case-sensitive).
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "HS512" => Some(Alg::Hs512),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs512 => "HS512",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// The key a token is signed with.
pub enum SigningKey<'a> {
    /// A plain secret's bytes (HS256, HS512).
    Hmac(&'a [u8]),
    /// An Ed25519 secret key, seed || public key (EdDSA).
    Ed25519(&'a [u8]),
}

/// The key a token is checked against.
pub enum VerifyingKey<'a> {
    Hmac(&'a [u8]),
    Ed25519Public(&'a [u8]),
}

/// The algorithm does not go with the key (HS with a signing key, EdDSA with a plain secret).
#[derive(Debug, PartialEq, Eq)]
pub struct WrongKey;

/// A compact JWS of `claims` (serialized JSON) with the fixed header.
pub fn sign(alg: Alg, key: &SigningKey<'_>, claims: &[u8]) -> Result<String, WrongKey> {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.name());
    sign_parts(alg, key, header.as_bytes(), claims)
}

/// A compact JWS of any header and payload bytes (for RFC 7515's examples).
pub fn sign_parts(alg: Alg, key: &SigningKey<'_>, header: &[u8], payload: &[u8]) -> Result<String, WrongKey> {
    let mut out = URL_SAFE_NO_PAD.encode(header);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = signature(alg, key, out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    Ok(out)
}

fn signature(alg: Alg, key: &SigningKey<'_>, input: &[u8]) -> Result<Vec<u8>, WrongKey> {
    match (alg, key) {
        (Alg::Hs256, SigningKey::Hmac(k)) => Ok(sodium_use::hmac(HmacHash::Sha256, k, &[input])),
        (Alg::Hs512, SigningKey::Hmac(k)) => Ok(sodium_use::hmac(HmacHash::Sha512, k, &[input])),
        (Alg::EdDsa, SigningKey::Ed25519(sk)) => {
            sodium_use::ed25519_sign(sk, input).map(|s| s.to_vec()).ok_or(WrongKey)
        }
        _ => Err(WrongKey),
    }
}

/// The claims of `token` when its signature is valid for `key` and its `exp`/`nbf` hold at
/// `now` (Unix seconds); None otherwise.
pub fn verify(key: &VerifyingKey<'_>, token: &str, now: f64) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (h64, p64, s64) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h64).ok()?).ok()?;
    let header = header.as_object()?;
    if header.contains_key("crit") {
        return None;
    }
    let alg = Alg::parse(header.get("alg")?.as_str()?)?;
    let sig = URL_SAFE_NO_PAD.decode(s64).ok()?;
    let input_len = h64.len() + 1 + p64.len();
    let input = &token.as_bytes()[..input_len];
    let valid = match (alg, key) {
        (Alg::Hs256, VerifyingKey::Hmac(k)) => equal_ct(&sodium_use::hmac(HmacHash::Sha256, k, &[input]), &sig),
        (Alg::Hs512, VerifyingKey::Hmac(k)) => equal_ct(&sodium_use::hmac(HmacHash::Sha512, k, &[input]), &sig),
        (Alg::EdDsa, VerifyingKey::Ed25519Public(pk)) => sodium_use::ed25519_verify(pk, input, &sig),
        _ => false,
    };
    if !valid {
        return None;
    }
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p64).ok()?).ok()?;
    let Value::Object(claims) = claims else { return None };
    if let Some(exp) = claims.get("exp") {
        if now >= exp.as_f64()? {
            return None;
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        if now < nbf.as_f64()? {
            return None;
        }
    }
    Some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::encoding::hex_decode_exact;

    /// RFC 7515 appendix A.1: the HS256 JWS example, byte for byte.
    #[test]
    fn rfc7515_a1_hs256() {
        crate::ffi::sodium::init().unwrap();
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let header = b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
        let payload = b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
        let expected = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
            .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
            .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            sign_parts(Alg::Hs256, &SigningKey::Hmac(&key), header, payload).unwrap(),
            expected
        );
        let claims = verify(&VerifyingKey::Hmac(&key), expected, 1300819379.0).unwrap();
        assert_eq!(claims["iss"], "joe");
        // exp must be after now.
        assert!(verify(&VerifyingKey::Hmac(&key), expected, 1300819380.0).is_none());
        assert!(verify(&VerifyingKey::Hmac(b"other"), expected, 0.0).is_none());
    }

    #[test]
    fn header_is_fixed_and_claims_round_trip() {
        crate::ffi::sodium::init().unwrap();
        let t = sign(Alg::Hs512, &SigningKey::Hmac(b"k"), br#"{"sub":"a"}"#).unwrap();
        let h = URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
        assert_eq!(h, br#"{"alg":"HS512","typ":"JWT"}"#);
        assert_eq!(verify(&VerifyingKey::Hmac(b"k"), &t, 0.0).unwrap()["sub"], "a");
        assert_eq!(sign(Alg::EdDsa, &SigningKey::Hmac(b"k"), b"{}"), Err(WrongKey));
    }

    #[test]
    fn no_none_no_confusion_no_crit_and_nbf_holds() {
        crate::ffi::sodium::init().unwrap();
        let (pk, sk) = sodium_use::ed25519_keypair();
        let claims = br#"{"nbf":100,"exp":200}"#;
        let t = sign(Alg::EdDsa, &SigningKey::Ed25519(sk.as_slice()), claims).unwrap();
        assert!(verify(&VerifyingKey::Ed25519Public(&pk), &t, 150.0).is_some());
        assert!(verify(&VerifyingKey::Ed25519Public(&pk), &t, 99.0).is_none());
        assert!(verify(&VerifyingKey::Ed25519Public(&pk), &t, 200.0).is_none());
        // HS256 "signed" with the public key (the classic confusion) is refused.
        let forged = sign_parts(
            Alg::Hs256,
            &SigningKey::Hmac(&pk),
            br#"{"alg":"HS256","typ":"JWT"}"#,
            claims,
        )
        .unwrap();
        assert!(verify(&VerifyingKey::Ed25519Public(&pk), &forged, 150.0).is_none());
        // alg none with an empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        );
        assert!(verify(&VerifyingKey::Hmac(b"k"), &none, 150.0).is_none());
        // A crit header, a non-numeric exp, a non-object payload, extra parts.
        let crit = sign_parts(
            Alg::Hs256,
            &SigningKey::Hmac(b"k"),
            br#"{"alg":"HS256","crit":["x"],"x":1}"#,
            b"{}",
        )
        .unwrap();
        assert!(verify(&VerifyingKey::Hmac(b"k"), &crit, 0.0).is_none());
        let bad_exp = sign(Alg::Hs256, &SigningKey::Hmac(b"k"), br#"{"exp":"soon"}"#).unwrap();
        assert!(verify(&VerifyingKey::Hmac(b"k"), &bad_exp, 0.0).is_none());
        let array = sign(Alg::Hs256, &SigningKey::Hmac(b"k"), b"[1]").unwrap();
        assert!(verify(&VerifyingKey::Hmac(b"k"), &array, 0.0).is_none());
        let ok = sign(Alg::Hs256, &SigningKey::Hmac(b"k"), b"{}").unwrap();
        assert!(verify(&VerifyingKey::Hmac(b"k"), &ok, 0.0).is_some());
        assert!(verify(&VerifyingKey::Hmac(b"k"), &format!("{ok}.x"), 0.0).is_none());
        assert!(verify(&VerifyingKey::Hmac(b"k"), "not a token", 0.0).is_none());
    }

    /// RFC 8032 section 7.1, TEST 1 to 3: key pair from the secret key (seed), signature, verify.
    #[test]
    fn rfc8032_ed25519() {
        crate::ffi::sodium::init().unwrap();
        let cases = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (seed, pk, msg, sig) in cases {
            let seed = hex_decode_exact::<32>(seed.as_bytes()).unwrap();
            let (got_pk, sk) = sodium_use::ed25519_seed_keypair(&seed);
            assert_eq!(crate::crypto::encoding::hex_encode(&got_pk), pk);
            let msg = hex(msg);
            let got = sodium_use::ed25519_sign(sk.as_slice(), &msg).unwrap();
            assert_eq!(crate::crypto::encoding::hex_encode(&got), sig);
            assert!(sodium_use::ed25519_verify(&got_pk, &msg, &got));
            let mut bad = got;
            bad[0] ^= 1;
            assert!(!sodium_use::ed25519_verify(&got_pk, &msg, &bad));
            assert!(!sodium_use::ed25519_verify(&got_pk[..31], &msg, &got));
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }
}
