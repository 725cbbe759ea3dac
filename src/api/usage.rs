//! Using a secret without reading it (SPEC §11): HMAC, webhook checks, JWTs, signing keys and
//! column encryption. Each function looks the secret up for the caller (vault::usage), checks
//! the kind, and returns only what it computed. Malformed input to a verify function is false
//! or NULL, never an error; errors are for the caller's own mistakes (unknown secret or
//! provider, wrong kind of secret, no right to use it).

use crate::error::{shown_name, OrRaise, VResult, VaultError};
use crate::vault::usage::{self, InUse, Kind};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode, Uuid};
use vault_core::crypto::envelope::{self, KeyRing, OpenError};
use vault_core::crypto::jwt::{self, Alg, SigningKey, VerifyingKey};
use vault_core::crypto::mac;
use vault_core::crypto::webhook::{self, Delivery, Provider};
use vault_core::ffi::sodium::{self, SecretVec};
use vault_core::ffi::sodium_use;

fn bad(message: String, hint: &str) -> VaultError {
    VaultError::BadArgument {
        message,
        hint: Some(hint.into()),
    }
}

fn hash(algorithm: &str) -> VResult<mac::HmacHash> {
    mac::parse_hash(algorithm).ok_or_else(|| {
        bad(
            format!("unknown HMAC algorithm \"{}\"", shown_name(algorithm)),
            "Use 'sha256' or 'sha512'.",
        )
    })
}

fn hmac_of(secret_name: &str, message: &[u8], algorithm: &str) -> VResult<Vec<u8>> {
    let h = hash(algorithm)?;
    let key = usage::fetch(secret_name)?.hmac_key()?;
    Ok(mac::hmac(h, key.as_slice(), message))
}

fn hmac_check(secret_name: &str, message: &[u8], mac_bytes: &[u8], algorithm: &str) -> VResult<bool> {
    let h = hash(algorithm)?;
    let key = usage::fetch(secret_name)?.hmac_key()?;
    Ok(mac::hmac_verify(h, key.as_slice(), message, mac_bytes))
}

/// `vault.hmac(secret_name, message bytea, algorithm)`.
#[pg_extern(volatile, name = "hmac")]
fn hmac_bytea(secret_name: &str, message: &[u8], algorithm: default!(&str, "'sha256'")) -> Vec<u8> {
    hmac_of(secret_name, message, algorithm).or_raise()
}

/// `vault.hmac(secret_name, message text, algorithm)`: the message's UTF-8 bytes.
#[pg_extern(volatile, name = "hmac")]
fn hmac_text(secret_name: &str, message: &str, algorithm: default!(&str, "'sha256'")) -> Vec<u8> {
    hmac_of(secret_name, message.as_bytes(), algorithm).or_raise()
}

#[pg_extern(volatile, name = "hmac_verify")]
fn hmac_verify_bytea(secret_name: &str, message: &[u8], mac: &[u8], algorithm: default!(&str, "'sha256'")) -> bool {
    hmac_check(secret_name, message, mac, algorithm).or_raise()
}

#[pg_extern(volatile, name = "hmac_verify")]
fn hmac_verify_text(secret_name: &str, message: &str, mac: &[u8], algorithm: default!(&str, "'sha256'")) -> bool {
    hmac_check(secret_name, message.as_bytes(), mac, algorithm).or_raise()
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn plain(secret: InUse, wanted: &str) -> VResult<InUse> {
    match secret.kind {
        Kind::Plain => Ok(secret),
        _ => Err(secret.wrong_kind(wanted)),
    }
}

/// `vault.verify_webhook(provider, secret_name, payload, headers, tolerance)`.
#[pg_extern(volatile, name = "verify_webhook")]
fn verify_webhook(
    provider: &str,
    secret_name: &str,
    payload: &str,
    headers: JsonB,
    tolerance: default!(Interval, "'5 minutes'"),
) -> bool {
    let run = || -> VResult<bool> {
        let p = Provider::parse(provider).ok_or_else(|| {
            bad(
                format!("unknown webhook provider \"{}\"", shown_name(provider)),
                "Use 'stripe', 'github', 'slack' or 'standard' (Standard Webhooks: Svix, Clerk, Resend, ...).",
            )
        })?;
        let micros = tolerance.as_micros();
        if micros < 0 {
            return Err(bad(
                "tolerance must not be negative".into(),
                "Pass an interval such as '5 minutes'.",
            ));
        }
        let tolerance_secs = i64::try_from(micros / 1_000_000).unwrap_or(i64::MAX);
        let secret = plain(usage::fetch(secret_name)?, "a webhook signing secret")?;
        // Header values that are not strings (numbers, arrays) are treated as absent.
        let headers: Vec<(String, String)> = match headers.0 {
            serde_json::Value::Object(map) => map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let d = Delivery {
            payload: payload.as_bytes(),
            headers: &headers,
        };
        webhook::verify(p, secret.value.as_slice(), &d, now_secs() as i64, tolerance_secs).map_err(|_| {
            bad(
                format!(
                    "secret \"{}\" is not a Standard Webhooks secret",
                    shown_name(secret_name)
                ),
                "A Standard Webhooks secret is base64, usually after a whsec_ prefix, as the sender shows it.",
            )
        })
    };
    run().or_raise()
}

/// `vault.sign_jwt(secret_name, claims, algorithm)`: a compact JWS.
#[pg_extern(volatile, name = "sign_jwt")]
fn sign_jwt(secret_name: &str, claims: JsonB, algorithm: default!(&str, "'HS256'")) -> String {
    let run = || -> VResult<String> {
        let alg = Alg::parse(algorithm).ok_or_else(|| {
            bad(
                format!("unsupported JWT algorithm \"{}\"", shown_name(algorithm)),
                "Use 'HS256' or 'HS512' with a secret, 'EdDSA' with a signing key ('none' is never accepted).",
            )
        })?;
        if !claims.0.is_object() {
            return Err(bad(
                "JWT claims must be a JSON object".into(),
                "Pass claims such as '{\"sub\":\"42\"}'::jsonb.",
            ));
        }
        let body = serde_json::to_vec(&claims.0).map_err(|_| VaultError::Internal("serializing JSON failed"))?;
        let secret = usage::fetch(secret_name)?;
        let sk;
        let key = match (&secret.kind, alg) {
            (Kind::Plain, Alg::Hs256 | Alg::Hs512) => SigningKey::Hmac(secret.value.as_slice()),
            (Kind::Signing { .. }, Alg::EdDsa) => {
                sk = secret.signing_key()?;
                SigningKey::Ed25519(sk.as_slice())
            }
            (Kind::Signing { .. }, _) => {
                return Err(bad(
                    format!(
                        "secret \"{}\" is a signing key: it signs EdDSA JWTs only",
                        shown_name(secret_name)
                    ),
                    "Pass algorithm => 'EdDSA'.",
                ))
            }
            (Kind::Plain, _) => {
                return Err(bad(
                    format!(
                        "EdDSA needs a signing key, and \"{}\" is a secret",
                        shown_name(secret_name)
                    ),
                    "Create one with vault.create_signing_key, or use 'HS256' / 'HS512' with this secret.",
                ))
            }
            (Kind::Encryption, _) => return Err(secret.wrong_kind("a secret or a signing key")),
        };
        jwt::sign(alg, &key, &body).map_err(|_| VaultError::Internal("the key does not go with the algorithm"))
    };
    run().or_raise()
}

/// `vault.verify_jwt(secret_name, token)`: the claims, or NULL.
#[pg_extern(volatile, name = "verify_jwt")]
fn verify_jwt(secret_name: &str, token: &str) -> Option<JsonB> {
    let run = || -> VResult<Option<JsonB>> {
        let secret = usage::fetch(secret_name)?;
        let key = match &secret.kind {
            Kind::Plain => VerifyingKey::Hmac(secret.value.as_slice()),
            Kind::Signing { public_key } => VerifyingKey::Ed25519Public(public_key),
            Kind::Encryption => return Err(secret.wrong_kind("a secret or a signing key")),
        };
        Ok(jwt::verify(&key, token, now_secs()).map(|c| JsonB(serde_json::Value::Object(c))))
    };
    run().or_raise()
}

/// `vault.create_signing_key(name, description)`: an Ed25519 key pair made here; the private
/// key is a non-exportable secret of that name.
#[pg_extern(volatile, name = "create_signing_key")]
fn create_signing_key(name: &str, description: default!(&str, "''")) -> Uuid {
    let (pk, sk) = sodium_use::ed25519_keypair();
    let value = envelope::encode_signing_key(sk.as_slice());
    drop(sk);
    usage::store_new_key(name, description, &value, "signing_key", Some(&pk)).or_raise()
}

/// `vault.public_key(name)`: the 32-byte Ed25519 public key of a signing key.
#[pg_extern(stable, name = "public_key")]
fn signing_public_key(name: &str) -> Vec<u8> {
    usage::public_key(name).or_raise()
}

/// `vault.sign(name, message)`: a 64-byte Ed25519 signature (RFC 8032).
#[pg_extern(volatile, name = "sign")]
fn sign_message(name: &str, message: &[u8]) -> Vec<u8> {
    let run = || -> VResult<Vec<u8>> {
        let key = usage::fetch(name)?;
        if !matches!(key.kind, Kind::Signing { .. }) {
            return Err(key.wrong_kind("a signing key"));
        }
        let sk = key.signing_key()?;
        sodium_use::ed25519_sign(sk.as_slice(), message)
            .map(|s| s.to_vec())
            .ok_or(VaultError::Internal("Ed25519 signing failed"))
    };
    run().or_raise()
}

/// `vault.verify_signature(public_key, message, signature)`: no secret involved.
#[pg_extern(immutable, parallel_safe, name = "verify_signature")]
fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    sodium_use::ed25519_verify(public_key, message, signature)
}

/// `vault.create_encryption_key(name)`: 32 random bytes, version 1, non-exportable.
#[pg_extern(volatile, name = "create_encryption_key")]
fn create_encryption_key(name: &str) -> Uuid {
    let value = KeyRing::generate().encode();
    usage::store_new_key(name, "", &value, "encryption_key", None).or_raise()
}

/// `vault.rotate_encryption_key(name)`: a new version for new encryptions; the new version.
#[pg_extern(volatile, name = "rotate_encryption_key")]
fn rotate_encryption_key(name: &str) -> i32 {
    usage::rotate(name).or_raise()
}

fn encryption_key(key_name: &str) -> VResult<(InUse, KeyRing)> {
    let key = usage::fetch(key_name)?;
    if key.kind != Kind::Encryption {
        return Err(key.wrong_kind("an encryption key"));
    }
    let ring = key.ring()?;
    Ok((key, ring))
}

fn seal(key_name: &str, plaintext: &[u8], context: &str) -> VResult<String> {
    let (_, ring) = encryption_key(key_name)?;
    let v = ring.latest();
    let key = ring
        .key(v)
        .ok_or(VaultError::Internal("a key ring without its latest version"))?;
    envelope::seal(v, key, plaintext, context.as_bytes()).map_err(|e| VaultError::NoMemory { bytes: e.bytes })
}

fn open(key_name: &str, ciphertext: &str, context: &str) -> VResult<SecretVec> {
    let malformed = || {
        bad(
            "ciphertext is malformed".into(),
            "vault.encrypt writes vault:v<N>: followed by standard base64; pass its output unchanged.",
        )
    };
    let (version, blob) = envelope::parse(ciphertext).map_err(|_| malformed())?;
    let (key, ring) = encryption_key(key_name)?;
    let Some(k) = ring.key(version) else {
        return Err(bad(
            format!("encryption key \"{}\" has no version {version}", shown_name(key_name)),
            "The ciphertext was written with another key, or with a version this key never had.",
        ));
    };
    envelope::open(k, &blob, context.as_bytes()).map_err(|e| match e {
        OpenError::Malformed => malformed(),
        OpenError::OutOfMemory(bytes) => VaultError::NoMemory { bytes },
        OpenError::Forged => VaultError::Refused {
            code: PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            message: format!(
                "could not decrypt with encryption key \"{}\": the ciphertext does not authenticate",
                shown_name(&key.name)
            ),
            hint: "The ciphertext was changed, or it was written with another key or another context.".into(),
        },
    })
}

#[pg_extern(volatile, name = "encrypt")]
fn encrypt_bytea(key_name: &str, plaintext: &[u8], context: default!(&str, "''")) -> String {
    seal(key_name, plaintext, context).or_raise()
}

#[pg_extern(volatile, name = "encrypt")]
fn encrypt_text(key_name: &str, plaintext: &str, context: default!(&str, "''")) -> String {
    seal(key_name, plaintext.as_bytes(), context).or_raise()
}

#[pg_extern(volatile, name = "decrypt")]
fn decrypt_bytea(key_name: &str, ciphertext: &str, context: default!(&str, "''")) -> Vec<u8> {
    let mut plain = open(key_name, ciphertext, context).or_raise();
    std::mem::take(plain.vec_mut())
}

#[pg_extern(volatile, name = "decrypt_text")]
fn decrypt_text(key_name: &str, ciphertext: &str, context: default!(&str, "''")) -> String {
    let mut plain = open(key_name, ciphertext, context).or_raise();
    let bytes = std::mem::take(plain.vec_mut());
    String::from_utf8(bytes).unwrap_or_else(|e| {
        let mut b = e.into_bytes();
        sodium::memzero(&mut b);
        crate::error::raise(VaultError::Refused {
            code: PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            message: "decrypted value is not valid UTF-8".into(),
            hint: "Use vault.decrypt for binary values.".into(),
        })
    })
}

/// `vault.rewrap(key_name, ciphertext, context)`: the same plaintext under the latest version,
/// never returned.
#[pg_extern(volatile, name = "rewrap")]
fn rewrap_ciphertext(key_name: &str, ciphertext: &str, context: default!(&str, "''")) -> String {
    let plain = open(key_name, ciphertext, context).or_raise();
    seal(key_name, plain.as_slice(), context).or_raise()
}

/// Statement trigger on vault.unexportable_secrets (the read path's cached ids are stale) and on
/// vault.secrets (the use path's kept keys are stale, and nothing else).
#[pg_trigger]
fn unexportable_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    if trigger.table_name()? == "secrets" {
        crate::cache::epoch::use_changed_here();
    } else {
        crate::cache::epoch::changed_here(trigger.relation()?.oid());
    }
    Ok(None)
}
