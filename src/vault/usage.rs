//! Using a secret without reading it (SPEC §11): find a secret by name for a caller who may use
//! it, decrypt it inside the server, and hand back only what was computed with it.
//!
//! The row is looked up as the bootstrap superuser (a `vault_user` may not select the table,
//! only call these functions), then the caller's rights are checked as for a read: per-secret
//! grants with `use` or `read`, the restricted binding of the ciphertext, vault.audit_reads
//! (action `use`). The decrypted value is kept for the same role until vault.secrets, the keys
//! or the grants change anywhere (cache::epoch: a statement trigger on vault.secrets announces
//! every write), so a scan that encrypts 100k rows, or a stream of webhook checks, decrypts the
//! key once; every call still checks the grants and writes its audit line.

use crate::cache;
use crate::error::{shown_name, VResult, VaultError};
use crate::ffi::pg;
use crate::vault::grants::{self, Access, Need};
use crate::vault::{keys, read};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{pg_sys, PgSqlErrorCode, Uuid};
use std::cell::RefCell;
use std::rc::Rc;
use vault_core::crypto::envelope::{self, KeyRing};
use vault_core::ffi::sodium::SecretVec;

/// What a secret is: a value the user stored, or a key made by vault_ext.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Kind {
    Plain,
    Signing { public_key: Vec<u8> },
    Encryption,
}

impl Kind {
    fn parse(kind: Option<&str>, public_key: Option<Vec<u8>>) -> Kind {
        match (kind, public_key) {
            (Some("signing_key"), Some(pk)) => Kind::Signing { public_key: pk },
            (Some("encryption_key"), _) => Kind::Encryption,
            _ => Kind::Plain,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Plain => "a secret",
            Kind::Signing { .. } => "a signing key",
            Kind::Encryption => "an encryption key",
        }
    }
}

/// A secret decrypted for use.
pub struct InUse {
    pub name: String,
    pub kind: Kind,
    pub value: Rc<SecretVec>,
}

impl InUse {
    /// 22023: this function does not take this kind of secret.
    pub fn wrong_kind(&self, wanted: &str) -> VaultError {
        VaultError::BadArgument {
            message: format!(
                "secret \"{}\" is {}, not {wanted}",
                shown_name(&self.name),
                self.kind.describe()
            ),
            hint: Some(
                "vault.create_signing_key makes keys for vault.sign and EdDSA JWTs; vault.create_encryption_key keys for vault.encrypt; other secrets serve vault.hmac, webhooks and HS256/HS512 JWTs."
                    .into(),
            ),
        }
    }

    /// The key bytes for HMAC: a secret's UTF-8 bytes, an encryption key's latest version, a
    /// signing key's 32-byte seed.
    pub fn hmac_key(&self) -> VResult<SecretVec> {
        match &self.kind {
            Kind::Plain => Ok(SecretVec::from_vec(self.value.as_slice().to_vec())),
            Kind::Encryption => {
                let ring = self.ring()?;
                let key = ring.key(ring.latest()).ok_or_else(|| self.corrupt())?;
                Ok(SecretVec::from_vec(key.to_vec()))
            }
            Kind::Signing { .. } => {
                let sk = self.signing_key()?;
                Ok(SecretVec::from_vec(sk.as_slice()[..32].to_vec()))
            }
        }
    }

    pub fn ring(&self) -> VResult<KeyRing> {
        KeyRing::decode(self.value.as_slice()).ok_or_else(|| self.corrupt())
    }

    pub fn signing_key(&self) -> VResult<SecretVec> {
        envelope::decode_signing_key(self.value.as_slice()).ok_or_else(|| self.corrupt())
    }

    /// The stored value is not what vault_ext wrote for this kind (changed with UPDATE).
    fn corrupt(&self) -> VaultError {
        VaultError::BadArgument {
            message: format!(
                "secret \"{}\" is {} whose value is not one vault_ext made",
                shown_name(&self.name),
                self.kind.describe()
            ),
            hint: Some("Its value was replaced by hand; create a new key.".into()),
        }
    }
}

const LOOKUP_SQL: &str = "SELECT s.id, s.secret, s.nonce, s.key_id, k.kind, k.public_key, s.exportable \
      FROM vault.secrets s LEFT JOIN vault.secret_kinds k ON k.secret_id OPERATOR(pg_catalog.=) s.id \
     WHERE s.name OPERATOR(pg_catalog.=) $1";

/// Decrypted values: (name, role) -> value, valid while `stamp` is.
struct Kept {
    name: String,
    role: pg_sys::Oid,
    stamp: cache::epoch::UseStamp,
    id: [u8; 16],
    kind: Kind,
    value: Rc<SecretVec>,
}

thread_local! {
    static LOOKUP: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
    static KEPT: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// Kept values at most; the oldest goes first.
const KEEP_MAX: usize = 16;

type Row = (
    Option<Uuid>,
    Option<String>,
    Option<Vec<u8>>,
    Option<Uuid>,
    Option<String>,
    Option<Vec<u8>>,
    Option<bool>,
);

fn lookup(name: &str) -> VResult<Option<Row>> {
    pg::as_user(pg::bootstrap_superuser(), || {
        Spi::connect(|client| -> Result<Option<Row>, pgrx::spi::Error> {
            let text = [pgrx::PgOid::BuiltIn(pgrx::PgBuiltInOids::TEXTOID)];
            let rows = cache::plans::select(&LOOKUP, client, LOOKUP_SQL, &text, Some(1), &[name.into()])?;
            match rows.into_iter().next() {
                None => Ok(None),
                Some(r) => Ok(Some((
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))),
            }
        })
    })
    .map_err(VaultError::spi("read vault.secrets"))
}

fn denied(name: &str) -> VaultError {
    VaultError::Refused {
        code: PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message: format!("permission denied to use secret \"{name}\""),
        hint: "The secret has per-secret grants (vault.secret_grants); ask a vault_admin for vault.grant_secret(id, role, 'use')."
            .into(),
    }
}

/// The secret named `name`, decrypted for use by the current role (P0002 unknown, 42501 not
/// allowed). One audit line per call with vault.audit_reads on.
pub fn fetch(name: &str) -> VResult<InUse> {
    let shown = || shown_name(name).into_owned();
    let role = pg::current_user();
    let kept = KEPT.with(|k| {
        k.borrow()
            .iter()
            .find(|e| e.name == name && e.role == role && e.stamp.is_valid())
            .map(|e| (e.id, e.kind.clone(), e.value.clone()))
    });
    if let Some((id, kind, value)) = kept {
        // The grants may have changed since (their cache knows): check them every time.
        if grants::access_to(&id, Need::Use)? == Access::Denied {
            return Err(denied(&shown()));
        }
        read::audit_read(&id, "use");
        return Ok(InUse {
            name: name.to_string(),
            kind,
            value,
        });
    }
    let (row, stamp) = cache::epoch::load_for_use(|| lookup(name))?;
    let Some((Some(id), Some(secret), nonce, key_id, kind, public_key, exportable)) = row else {
        return Err(VaultError::UnknownSecret(shown()));
    };
    let idb = *id.as_bytes();
    let access = grants::access_to(&idb, Need::Use)?;
    if access == Access::Denied {
        return Err(denied(&shown()));
    }
    let key_id = key_id.map_or(keys::COMPAT_KEY_ID, |k| *k.as_bytes());
    let key = keys::lookup_for_read(&key_id)?;
    let sealed = !exportable.unwrap_or(true);
    let Some(value) = read::decrypt_for(access, &idb, secret.as_bytes(), nonce.as_deref(), &key, Some(sealed))? else {
        return Err(denied(&shown()));
    };
    read::audit_read(&idb, "use");
    let kind = Kind::parse(kind.as_deref(), public_key);
    let value = Rc::new(value);
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        k.retain(|e| e.stamp.is_valid() && !(e.name == name && e.role == role));
        if k.len() >= KEEP_MAX {
            k.remove(0);
        }
        k.push(Kept {
            name: name.to_string(),
            role,
            stamp,
            id: idb,
            kind: kind.clone(),
            value: value.clone(),
        });
    });
    Ok(InUse {
        name: name.to_string(),
        kind,
        value,
    })
}

/// Forget the kept values (after this backend changed a key).
pub fn forget() {
    KEPT.with(|k| k.borrow_mut().clear());
}

/// The public key of signing key `name` (P0002 unknown, 22023 not a signing key). Public:
/// no grant is checked and nothing is decrypted.
pub fn public_key(name: &str) -> VResult<Vec<u8>> {
    let row = lookup(name)?;
    let Some((Some(_), _, _, _, kind, pk, _)) = row else {
        return Err(VaultError::UnknownSecret(shown_name(name).into_owned()));
    };
    match Kind::parse(kind.as_deref(), pk) {
        Kind::Signing { public_key } => Ok(public_key),
        other => Err(VaultError::BadArgument {
            message: format!(
                "secret \"{}\" is {}, not a signing key",
                shown_name(name),
                other.describe()
            ),
            hint: Some("vault.create_signing_key makes signing keys.".into()),
        }),
    }
}

/// Store a key made here as a new non-exportable secret of `kind`, as the caller (vault_admin:
/// the INSERT is theirs, encrypted by the trigger), and record its kind as the bootstrap
/// superuser (nobody else writes vault.secret_kinds).
pub fn store_new_key(
    name: &str,
    description: &str,
    value: &SecretVec,
    kind: &str,
    public_key: Option<&[u8]>,
) -> VResult<Uuid> {
    let text =
        std::str::from_utf8(value.as_slice()).map_err(|_| VaultError::Internal("a generated key is not text"))?;
    let id = Spi::get_one_with_args::<Uuid>(
        "INSERT INTO vault.secrets (secret, name, description, exportable) VALUES ($1, $2, $3, false) RETURNING id",
        &[text.into(), name.into(), description.into()],
    )
    .map_err(VaultError::spi("insert into vault.secrets"))?
    .ok_or(VaultError::Internal("INSERT ... RETURNING gave no id"))?;
    pg::as_user(pg::bootstrap_superuser(), || {
        Spi::run_with_args(
            "INSERT INTO vault.secret_kinds (secret_id, kind, public_key) VALUES ($1, $2, $3)",
            &[id.into(), kind.into(), public_key.into()],
        )
    })
    .map_err(VaultError::spi("insert into vault.secret_kinds"))?;
    Ok(id)
}

/// `vault.rotate_encryption_key`: a new version appended to the key's value, written back as
/// the caller after locking the row (two rotations at once would otherwise lose one).
pub fn rotate(name: &str) -> VResult<i32> {
    let locked = Spi::get_one_with_args::<Uuid>(
        "SELECT s.id FROM vault.secrets s WHERE s.name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
        &[name.into()],
    )
    .map_err(VaultError::spi("lock the key in vault.secrets"))?;
    let Some(id) = locked else {
        return Err(VaultError::UnknownSecret(shown_name(name).into_owned()));
    };
    forget();
    let key = fetch(name)?;
    if key.kind != Kind::Encryption {
        return Err(key.wrong_kind("an encryption key"));
    }
    let mut ring = key.ring()?;
    let version = ring.rotate();
    let value = ring.encode();
    let text = std::str::from_utf8(value.as_slice()).map_err(|_| VaultError::Internal("a key ring is not text"))?;
    Spi::run_with_args(
        "UPDATE vault.secrets s SET secret = $1, nonce = NULL, updated_at = pg_catalog.now() WHERE s.id OPERATOR(pg_catalog.=) $2",
        &[text.into(), id.into()],
    )
    .map_err(VaultError::spi("update vault.secrets"))?;
    forget();
    i32::try_from(version).map_err(|_| VaultError::Internal("too many key versions"))
}
