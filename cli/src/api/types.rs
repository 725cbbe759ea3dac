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

/// A value or password that may be left out or null, kept in memory that is wiped after use.
pub fn conceal_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Option::<String>::deserialize(d).map(|v| v.map(Zeroizing::new))
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

/// `GET /api/v1/secrets/{name}/versions`: one version, without its value.
#[derive(Debug, Serialize, Deserialize)]
pub struct Version {
    pub version: i32,
    pub current: bool,
    /// When it became current (current), when it was replaced (kept).
    pub at: String,
    pub replaced_by: Option<String>,
}

/// `POST /api/v1/secrets/{name}/rollback`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct RolledBack {
    /// The new current version, which has the value of `from_version`.
    pub version: i32,
    pub from_version: i32,
}

/// `GET /api/v1/secrets/{name}/grants`: one per-secret grant.
#[derive(Debug, Serialize, Deserialize)]
pub struct Grant {
    pub role: String,
    pub granted_by: String,
    pub at: String,
}

/// `GET /api/v1/audit`: one row of the audit log (never a value).
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: String,
    pub role: String,
    pub action: String,
    pub secret_name: Option<String>,
    pub secret_id: Option<String>,
    pub detail: String,
}

/// `GET /api/v1/keys`: one key and its status.
#[derive(Debug, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub key_type: String,
    pub key_id: i64,
    pub status: String,
    pub default: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub secrets: i64,
    pub root_key: String,
}

/// `GET /api/v1/verify`: how many values were checked, and those that need attention.
#[derive(Debug, Serialize, Deserialize)]
pub struct VerifyReport {
    pub checked: i64,
    pub ok: i64,
    /// `[{"id", "name", "key_id", "status", "detail"}]`, as vault.verify_secrets() says.
    pub problems: serde_json::Value,
}
