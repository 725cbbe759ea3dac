//! The JSON bodies `pgvault serve` sends and `remote.rs` reads, one type each (serde).
//!
//! Values appear only in [`Secret::value`], marked `Cache-Control: no-store` by the server
//! and kept in a `Zeroizing` string by the client.

use crate::store::secrets::Meta;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A secret without its value: `GET /api/v1/secrets` returns an array of these.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SecretMeta {
    #[serde(default)]
    pub id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub masked: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub expired: bool,
    #[serde(default)]
    pub expiring_soon: bool,
    /// The current version, for roles that may read vault.secrets (vault_admin).
    pub version: Option<i32>,
}

impl SecretMeta {
    /// The API's view of a stored secret, with its version when known.
    pub fn of(m: Meta, version: Option<i32>) -> SecretMeta {
        SecretMeta {
            id: m.id,
            name: m.name,
            description: m.description,
            masked: m.masked,
            tags: m.tags,
            expires_at: m.expires_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            expired: m.expired,
            expiring_soon: m.expiring_soon,
            version,
        }
    }
}

/// `GET /api/v1/secrets/{name}`: the metadata and the value.
#[derive(Debug, Serialize, Deserialize)]
pub struct Secret {
    #[serde(flatten)]
    pub meta: SecretMeta,
    #[serde(serialize_with = "reveal", deserialize_with = "conceal")]
    pub value: Zeroizing<String>,
}

fn reveal<S: serde::Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn conceal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// What the caller may do, so the console offers only that.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Rights {
    #[serde(default)]
    pub view: bool,
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub keys: bool,
    #[serde(default)]
    pub verify: bool,
}

/// `GET /api/v1/session` (and the login's answer): who the caller is.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    /// Sessions only: the token the page echoes in `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub csrf_token: Option<String>,
    /// Bearer-token requests only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rights: Option<Rights>,
}

/// Every refusal: a message, the SQLSTATE when the database gave one, and a hint; never a value.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub sqlstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
}
