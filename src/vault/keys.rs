//! Key metadata from `vault.keys`.
//!
//! Writers look a key up once per transaction (SPI, as the calling role), not once per row.
//! Readers look it up through a kept plan and keep it across transactions when safe. Both
//! caches stamp their entries (cache::epoch), so a change of `vault.keys` (here or committed
//! elsewhere) or the end of the transaction makes them stale.

use crate::cache::{self, Stamp};
use crate::error::{VResult, VaultError};
use crate::vault::data_keys;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{PgBuiltInOids, PgOid, Uuid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use vault_core::crypto::cipher::{DataKey, KeyType};
use vault_core::crypto::encoding::uuid_text;
use vault_core::crypto::root_key::{self, Root};

/// `vault.keys.id` of the compatibility key (aead-det, key_id 0, context `pgsodium`) that
/// `vault.secrets.key_id IS NULL` means. Created by CREATE EXTENSION; kept out of pg_dump.
pub const COMPAT_KEY_ID: [u8; 16] = [0; 16];
pub const COMPAT_CONTEXT: &[u8; 8] = b"pgsodium";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Default,
    Valid,
    Expired,
    Invalid,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "default" => Status::Default,
            "valid" => Status::Valid,
            "expired" => Status::Expired,
            // The table's CHECK constraint admits nothing else; refuse anything unexpected.
            _ => Status::Invalid,
        }
    }
}

#[derive(Clone)]
pub struct KeyInfo {
    pub id: [u8; 16],
    pub key_type: KeyType,
    pub key_num: u64,
    pub context: [u8; 8],
    pub status: Status,
    /// `expires_at` has passed (as of the transaction's start).
    pub past_expiry: bool,
    /// The loaded root key this key's data key derives from (the one whose fingerprint was
    /// recorded for it); None when neither loaded root key has the recorded fingerprint.
    pub root: Option<Root>,
    /// The recorded fingerprint when it names no loaded root key (for error messages only, so
    /// reads do not copy it per row).
    pub foreign_fingerprint: Option<String>,
    /// No fingerprint recorded yet (key created before the library was preloaded).
    pub unrecorded: bool,
    /// Its row is share-locked by this transaction (see `lock_before_previous_root_write`).
    pub share_locked: bool,
}

impl KeyInfo {
    /// The key `key_id IS NULL` means, when its row is missing.
    pub fn compat() -> KeyInfo {
        KeyInfo {
            id: COMPAT_KEY_ID,
            key_type: KeyType::AeadDet,
            key_num: 0,
            context: *COMPAT_CONTEXT,
            status: Status::Valid,
            past_expiry: false,
            root: Some(Root::Current),
            foreign_fingerprint: None,
            unrecorded: true,
            share_locked: false,
        }
    }

    /// Build from `vault.keys` columns as the view passes them (all NULL: compatibility key).
    pub fn from_columns(
        id: Option<Uuid>,
        key_type: Option<&str>,
        key_num: Option<i64>,
        context: Option<&[u8]>,
        status: Option<&str>,
        fingerprint: Option<&str>,
    ) -> VResult<KeyInfo> {
        let Some(id) = id else {
            return Ok(KeyInfo::compat());
        };
        let shown = || uuid_string(id.as_bytes());
        let key_type = key_type
            .and_then(KeyType::parse)
            .ok_or_else(|| VaultError::KeyUnusable {
                key: shown(),
                why: "unknown key type".into(),
            })?;
        let key_num = key_num
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| VaultError::KeyUnusable {
                key: shown(),
                why: "key_id must be a non-negative number".into(),
            })?;
        let context: [u8; 8] = context
            .and_then(|c| c.try_into().ok())
            .ok_or_else(|| VaultError::KeyUnusable {
                key: shown(),
                why: "key_context must be exactly 8 bytes".into(),
            })?;
        Ok(KeyInfo {
            id: *id.as_bytes(),
            key_type,
            key_num,
            context,
            status: Status::parse(status.unwrap_or("invalid")),
            past_expiry: false,
            root: root_key::root_for(fingerprint),
            foreign_fingerprint: match root_key::root_for(fingerprint) {
                None => fingerprint.map(str::to_string),
                Some(_) => None,
            },
            unrecorded: fingerprint.is_none(),
            share_locked: false,
        })
    }

    pub fn is_compat(&self) -> bool {
        self.id == COMPAT_KEY_ID
    }

    pub fn id_string(&self) -> String {
        uuid_string(&self.id)
    }

    /// The data key for decrypting: every status but `invalid` may decrypt.
    pub fn for_decrypt(&self) -> VResult<Rc<DataKey>> {
        if self.status == Status::Invalid {
            return Err(VaultError::KeyUnusable {
                key: self.id_string(),
                why: "its status is invalid".into(),
            });
        }
        // A key from an unknown root key is tried with the current one: the failure then says
        // which root key the secret needs.
        data_keys::data_key(
            self.root.unwrap_or(Root::Current),
            self.key_type,
            self.key_num,
            &self.context,
        )
    }

    /// The data key for checking or rebinding what is already stored under this key, whatever
    /// its status: an invalid key still protects ciphertext that must not stay open to readers.
    pub fn for_rebinding(&self) -> VResult<Rc<DataKey>> {
        data_keys::data_key(
            self.root.unwrap_or(Root::Current),
            self.key_type,
            self.key_num,
            &self.context,
        )
    }

    /// The data key for writing: only `default` and `valid` keys that have not expired.
    pub fn for_encrypt(&self) -> VResult<Rc<DataKey>> {
        let why = match self.status {
            Status::Invalid => Some("its status is invalid".to_string()),
            Status::Expired => Some("its status is expired (it still decrypts, but takes no new secrets)".to_string()),
            _ if self.past_expiry => Some("its expires_at has passed".to_string()),
            _ => None,
        };
        let Some(root) = self.root else {
            return Err(VaultError::KeyUnusable {
                key: self.id_string(),
                why: format!(
                    "it belongs to root key {}, which this server has not loaded",
                    self.foreign_fingerprint.as_deref().unwrap_or("?")
                ),
            });
        };
        if let Some(why) = why {
            return Err(VaultError::KeyUnusable {
                key: self.id_string(),
                why,
            });
        }
        data_keys::data_key(root, self.key_type, self.key_num, &self.context)
    }
}

pub fn uuid_string(b: &[u8; 16]) -> String {
    String::from_utf8(uuid_text(b).to_vec()).expect("ascii")
}

/// Maps keyed by a vault.keys id. A scan looks its key up once per row, and SipHash was a
/// visible part of that; these maps hold only the few keys vault_admin made, so a plain
/// multiplicative hash of the id's two halves does.
type KeyMap<V> = HashMap<[u8; 16], V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A cached key and the stamp it is valid under.
type Stamped = (Rc<KeyInfo>, Stamp);

thread_local! {
    /// Writers' key metadata, for one transaction.
    static CACHE: RefCell<KeyMap<Stamped>> = RefCell::new(KeyMap::default());
    /// The read path's key metadata, kept across transactions when safe (cache::epoch).
    static READ_CACHE: RefCell<KeyMap<Stamped>> = RefCell::new(KeyMap::default());
    static DEFAULT: RefCell<Option<Stamped>> = const { RefCell::new(None) };
}

type Cache = std::thread::LocalKey<RefCell<KeyMap<Stamped>>>;

fn cached(cache: &'static Cache, id: &[u8; 16]) -> Option<Rc<KeyInfo>> {
    cache.with(|c| {
        c.borrow()
            .get(id)
            .filter(|(_, stamp)| stamp.is_valid())
            .map(|(k, _)| k.clone())
    })
}

/// Keep `info` under `stamp`, dropping entries that went stale.
fn keep(cache: &'static Cache, info: Rc<KeyInfo>, stamp: Stamp) -> Rc<KeyInfo> {
    cache.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|_, (_, s)| s.is_valid());
        c.insert(info.id, (info.clone(), stamp));
    });
    info
}

fn remember(info: KeyInfo) -> Rc<KeyInfo> {
    keep(&CACHE, Rc::new(info), Stamp::for_transaction())
}

const KEY_COLUMNS: &str = "SELECT k.id, k.key_type, k.key_id, k.key_context, k.status, \
     (k.expires_at IS NOT NULL AND k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()), \
     k.root_key_fingerprint FROM vault.keys k";

/// Read one key. `lock`: share-lock its row (run as a read-write statement, which FOR SHARE
/// needs).
const BY_ID: &str = "k.id OPERATOR(pg_catalog.=) $1";

thread_local! {
    /// The by-id lookup, planned once per backend: readers run it once per transaction.
    static BY_ID_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

fn fetch(where_clause: &str, arg: Option<Uuid>, lock: bool) -> VResult<Option<KeyInfo>> {
    let sql = format!(
        "{KEY_COLUMNS} WHERE {where_clause}{}",
        if lock { " FOR SHARE OF k" } else { "" }
    );
    let row = Spi::connect_mut(|client| -> Result<_, pgrx::spi::Error> {
        let args: Vec<pgrx::datum::DatumWithOid> = arg.into_iter().map(Into::into).collect();
        let t = if lock {
            client.update(sql.as_str(), Some(1), &args)?
        } else if where_clause == BY_ID {
            let uuid = [PgOid::BuiltIn(PgBuiltInOids::UUIDOID)];
            cache::plans::select(&BY_ID_PLAN, client, &sql, &uuid, Some(1), &args)?
        } else {
            client.select(sql.as_str(), Some(1), &args)?
        };
        if t.is_empty() {
            return Ok(None);
        }
        let t = t.first();
        Ok(Some((
            t.get::<Uuid>(1)?,
            t.get::<String>(2)?,
            t.get::<i64>(3)?,
            t.get::<Vec<u8>>(4)?,
            t.get::<String>(5)?,
            t.get::<bool>(6)?,
            t.get::<String>(7)?,
        )))
    })
    .map_err(VaultError::spi("read vault.keys"))?;
    let Some((id, kt, num, ctx, status, past, fp)) = row else {
        return Ok(None);
    };
    let mut info = KeyInfo::from_columns(id, kt.as_deref(), num, ctx.as_deref(), status.as_deref(), fp.as_deref())?;
    info.past_expiry = past.unwrap_or(false);
    Ok(Some(info))
}

/// Metadata of key `id` (P0002 when it does not exist).
pub fn lookup(id: &[u8; 16]) -> VResult<Rc<KeyInfo>> {
    if let Some(k) = cached(&CACHE, id) {
        return Ok(k);
    }
    match fetch(BY_ID, Some(Uuid::from_bytes(*id)), false)? {
        Some(info) => Ok(remember(info)),
        None if *id == COMPAT_KEY_ID => Ok(remember(KeyInfo::compat())),
        None => Err(VaultError::UnknownKey(uuid_string(id))),
    }
}

/// Metadata of key `id` for decrypting, kept across transactions when safe (cache::epoch).
pub fn lookup_for_read(id: &[u8; 16]) -> VResult<Rc<KeyInfo>> {
    if let Some(k) = cached(&READ_CACHE, id) {
        return Ok(k);
    }
    let (found, stamp) = cache::epoch::load(|| fetch(BY_ID, Some(Uuid::from_bytes(*id)), false))?;
    let info = match found {
        Some(info) => Rc::new(info),
        None if *id == COMPAT_KEY_ID => Rc::new(KeyInfo::compat()),
        None => return Err(VaultError::UnknownKey(uuid_string(id))),
    };
    Ok(keep(&READ_CACHE, info, stamp))
}

/// The key whose status is `default`.
pub fn default_key() -> VResult<Rc<KeyInfo>> {
    if let Some(k) = DEFAULT.with(|d| {
        d.borrow()
            .as_ref()
            .filter(|(_, s)| s.is_valid())
            .map(|(k, _)| k.clone())
    }) {
        return Ok(k);
    }
    let info = match fetch("k.status OPERATOR(pg_catalog.=) 'default'", None, false)? {
        Some(info) => remember(info),
        None => lookup(&COMPAT_KEY_ID)?,
    };
    DEFAULT.with(|d| *d.borrow_mut() = Some((info.clone(), Stamp::for_transaction())));
    Ok(info)
}

/// The key a new ciphertext is written under: the given one, or the default key. Records the
/// root key fingerprint on a key that has none yet (created before the library was preloaded).
pub fn for_write(id: Option<&[u8; 16]>) -> VResult<(Rc<KeyInfo>, Rc<DataKey>)> {
    let mut info = match id {
        Some(id) => lookup(id)?,
        None => default_key()?,
    };
    if info.root == Some(Root::Previous) && !info.share_locked {
        info = lock_before_previous_root_write(&info)?;
    }
    let dk = info.for_encrypt()?;
    if info.unrecorded {
        if let Some(fp) = root_key::fingerprint() {
            record_fingerprint(&info, fp)?;
        }
    }
    Ok((info, dk))
}

/// A key still on the previous root key takes writes under that root key until
/// vault.rotate_root_key() moves it. Share-lock its row so a rotation cannot commit between our
/// reading the key and our row's commit; under REPEATABLE READ a rotation that committed after
/// our snapshot makes this fail with 40001 instead of writing under the wrong root key.
fn lock_before_previous_root_write(info: &KeyInfo) -> VResult<Rc<KeyInfo>> {
    let mut fresh = fetch("k.id OPERATOR(pg_catalog.=) $1", Some(Uuid::from_bytes(info.id)), true)?
        .ok_or_else(|| VaultError::UnknownKey(info.id_string()))?;
    fresh.share_locked = true;
    Ok(remember(fresh))
}

fn record_fingerprint(info: &KeyInfo, fp: &str) -> VResult<()> {
    Spi::run_with_args(
        "UPDATE vault.keys SET root_key_fingerprint = $2 \
         WHERE id OPERATOR(pg_catalog.=) $1 AND root_key_fingerprint IS NULL",
        &[Uuid::from_bytes(info.id).into(), fp.into()],
    )
    .map_err(VaultError::spi("record the root key fingerprint in vault.keys"))?;
    // The UPDATE fired the invalidation trigger; the next lookup sees the fingerprint.
    Ok(())
}
