//! HashiCorp Vault's KV version 2 API under `/v1/` (SPEC §12, issue 29), so that hvac,
//! node-vault, vault-action, External Secrets Operator and `vault kv get` read and write
//! vault_ext unchanged.
//!
//! Every request but `sys/health` carries a vault_ext API token (`X-Vault-Token`, or
//! `Authorization: Bearer`), from which the guard (`serve/auth.rs`) makes a token [`Caller`];
//! it runs exactly as a Bearer request of `/api/v1/` does: through `db.rs`'s token path, on a
//! connection of the server's own role switched to the token's role, so privileges,
//! per-secret grants and non-exportable secrets hold the same way, and every write is audited
//! with the token's role. Cookies are never read on `/v1/`. The statements are in
//! `store/kv.rs`; refusals are written in Vault's shape (`reply::Shape::Vault`) with Vault's
//! statuses (`error.rs`).
//!
//! Data mapping: a KV object `{"value": "<string>"}` is stored as that bare text; any other
//! object is stored as its JSON text and the secret carries the tag [`JSON_TAG`], which is how a
//! read knows to give the object back. A secret without the tag reads as `{"value": "<text>"}`
//! (`api/kv.rs`).

use crate::api::kv::{decode, encode, list_keys, merge_patch, JSON_TAG};
use crate::serve::auth::Caller;
use crate::serve::db::db;
use crate::serve::reply::{json_response, ApiError, Shape};
use crate::serve::sessions::{random_hex, MAX_BODY};
use crate::serve::state::App;
use crate::store::kv;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// A mount name as `--kv-mount` gives it: without surrounding slashes; never a name of Vault's
/// own system paths.
pub fn check_mount(mount: &str) -> Result<String, String> {
    let m = mount.trim_matches('/');
    let first = m.split('/').next().unwrap_or_default();
    if m.is_empty() || m.chars().any(|c| c.is_control() || c.is_whitespace()) || m.contains("//") {
        return Err(format!(
            "--kv-mount must be a path such as secret or kv/team, not {:?}",
            mount
        ));
    }
    if matches!(first, "sys" | "auth" | "identity" | "cubbyhole") {
        return Err(format!("--kv-mount cannot be under {first}/ (a Vault system path)"));
    }
    Ok(m.to_string())
}

fn vault_error(status: StatusCode, message: &str) -> ApiError {
    ApiError::new(status, message, None)
}

fn permission_denied() -> ApiError {
    vault_error(StatusCode::FORBIDDEN, "permission denied")
}

fn cas_mismatch() -> ApiError {
    vault_error(StatusCode::BAD_REQUEST, CAS_MISMATCH)
}

fn unsupported() -> ApiError {
    vault_error(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
}

/// A missing route or secret: 404 `{"errors": []}`.
fn missing() -> ApiError {
    vault_error(StatusCode::NOT_FOUND, "")
}

/// Vault's response envelope around `data` (and `auth`).
fn envelope(data: Value, auth: Value) -> Result<Response, ApiError> {
    let id = random_hex()?;
    let request_id = format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    );
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": null,
            "auth": auth,
        }),
    ))
}

/// `%XX` escapes decoded; None for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `key` in a query string (the last one given), decoded.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| percent_decode(&v.replace('+', " ")).unwrap_or_default())
        })
        .next_back()
}

/// Go's strconv.ParseBool, as Vault reads `?list=`.
fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// Every request under `/v1/`: `caller` is the token the guard found in `X-Vault-Token` or
/// `Authorization: Bearer` (None: missing or malformed, refused here after `sys/health`).
pub(crate) async fn handle(State(app): State<Arc<App>>, caller: Option<Caller>, req: Request) -> Response {
    match route(app, caller, req).await {
        Ok(r) => r,
        Err(e) => e.render(Shape::Vault),
    }
}

async fn route(app: Arc<App>, caller: Option<Caller>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let raw = parts.uri.path().strip_prefix("/v1/").unwrap_or_default();
    let path = percent_decode(raw).ok_or_else(|| ApiError::bad("the path is not valid percent-encoded UTF-8"))?;
    let query = parts.uri.query();
    let headers = &parts.headers;
    let get = method == Method::GET || method == Method::HEAD;
    // The guard has read the body already (within --first-request-timeout, at most MAX_BODY).
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| vault_error(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"))?;
    if path == "sys/health" {
        return if get { health(app).await } else { Err(unsupported()) };
    }
    if headers
        .get("x-vault-namespace")
        .is_some_and(|v| !v.as_bytes().iter().all(|b| b.is_ascii_whitespace() || *b == b'/'))
    {
        return Err(ApiError::bad(
            "namespaces are not supported: send no X-Vault-Namespace header (or an empty one)",
        ));
    }
    // Only a token acts here (the guard never makes a session caller on /v1/).
    let who = match caller {
        Some(c @ Caller::Token { .. }) => c,
        _ => return Err(permission_denied()),
    };
    let mount = app.kv_mount.clone();
    if let Some(p) = path.strip_prefix("sys/internal/ui/mounts/") {
        if !get {
            return Err(unsupported());
        }
        let p = p.trim_start_matches('/');
        db(&who, async |_| Ok(())).await?;
        if p == mount || p.starts_with(&format!("{mount}/")) {
            return envelope(
                json!({"path": format!("{mount}/"), "type": "kv", "options": {"version": "2"},
                       "description": "vault_ext secrets (pgvault serve)", "local": false, "seal_wrap": false,
                       "external_entropy_access": false, "plugin_version": "", "running_plugin_version": "",
                       "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false}}),
                Value::Null,
            );
        }
        return Err(missing());
    }
    match path.as_str() {
        "auth/token/lookup-self" if get || method == Method::POST => return lookup_self(&who).await,
        "auth/token/renew-self" if method == Method::POST || method == Method::PUT => return renew_self(&who).await,
        "auth/token/lookup-self" | "auth/token/renew-self" => return Err(unsupported()),
        _ => {}
    }
    let Some(sub) = path.strip_prefix(mount.as_str()).and_then(|s| s.strip_prefix('/')) else {
        return Err(missing());
    };
    let list = method.as_str() == "LIST" || (get && query_param(query, "list").is_some_and(|v| truthy(&v)));
    if sub == "metadata" || sub.starts_with("metadata/") {
        let p = sub["metadata".len()..].trim_start_matches('/').to_string();
        if list {
            return list_secrets(&who, p).await;
        }
        let name = secret_name(&p)?;
        return match method {
            m if m == Method::GET || m == Method::HEAD => read_metadata(&who, name).await,
            Method::DELETE => delete(&who, name).await,
            _ => Err(unsupported()),
        };
    }
    let Some(p) = sub.strip_prefix("data/") else {
        return Err(missing());
    };
    let name = secret_name(p)?;
    match method {
        m if m == Method::GET || m == Method::HEAD => {
            let version = match query_param(query, "version") {
                None => None,
                Some(v) if v.is_empty() => None,
                Some(v) => match v.parse::<i32>() {
                    Ok(0) => None,
                    Ok(n) if n > 0 => Some(n),
                    _ => return Err(ApiError::bad("version must be a positive integer")),
                },
            };
            read(&who, name, version).await
        }
        Method::POST | Method::PUT => write(&who, name, &body, false).await,
        Method::PATCH => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/merge-patch+json")
            {
                return Err(vault_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "PATCH needs Content-Type: application/merge-patch+json",
                ));
            }
            write(&who, name, &body, true).await
        }
        Method::DELETE => delete(&who, name).await,
        _ => Err(unsupported()),
    }
}

/// A secret's name from a KV path: not empty, no control characters, no trailing `/` (a folder).
fn secret_name(p: &str) -> Result<String, ApiError> {
    if p.is_empty() || p.ends_with('/') || p.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "give a secret's path (not empty, no control characters, no trailing /)",
        ));
    }
    Ok(p.to_string())
}

/// KV read: the current value with its version, or `version`'s (vault_admin: earlier
/// versions), from `store::kv`. A value kept from this role (per-secret grants, a
/// non-exportable secret) is 403.
async fn read(who: &Caller, name: String, version: Option<i32>) -> Result<Response, ApiError> {
    let body = db(who, async move |c| {
        let Some(cur) = kv::current(c.client, &name).await? else {
            return Err(missing());
        };
        let value = cur.value.ok_or_else(permission_denied)?;
        let tagged = cur.tags.iter().any(|t| t == JSON_TAG);
        let current: i32 = if cur.may_versions {
            kv::version(c.client, &cur.id).await?
        } else {
            0
        };
        let (value, created, version) = match version {
            Some(n) if n != current => {
                if !cur.may_versions {
                    return Err(vault_error(
                        StatusCode::FORBIDDEN,
                        "earlier versions are readable by vault_admin only",
                    ));
                }
                let Some((old, at)) = kv::kept_version(c.client, &cur.id, n).await? else {
                    return Err(missing());
                };
                (old.ok_or_else(permission_denied)?, at, n)
            }
            _ => (value, cur.updated, current),
        };
        let data = decode(&value, tagged);
        Ok(json!({
            "data": data,
            "metadata": {"created_time": created, "custom_metadata": null, "deletion_time": "",
                         "destroyed": false, "version": version},
        }))
    })
    .await?;
    let mut r = envelope(body, Value::Null)?;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The `data` object of a write's body and its `options.cas`.
fn write_body(body: &[u8], patch: bool) -> Result<(Value, Option<i32>), ApiError> {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::bad("the body must be a JSON object"));
    };
    let cas = match m.get("options").and_then(|o| o.get("cas")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad("options.cas must be a non-negative integer"))?,
        ),
    };
    match m.remove("data") {
        Some(d @ Value::Object(_)) => Ok((d, cas)),
        None | Some(Value::Null) if !patch => Err(ApiError::bad("no data provided")),
        _ => Err(ApiError::bad("\"data\" must be a JSON object")),
    }
}

/// KV write (`patch`: a merge patch into the current object): a new version of the secret, or
/// the secret created, through vault.update_secret (with `expected_version` for cas) and
/// vault.create_secret, so versions and the audit log are vault_ext's own.
async fn write(who: &Caller, name: String, body: &[u8], patch: bool) -> Result<Response, ApiError> {
    let (data, cas) = write_body(body, patch)?;
    let meta = db(who, async move |c| {
        let existing = kv::lock_for_write(c.client, &name).await?;
        let current = existing.as_ref().map(|r| r.version).unwrap_or(0);
        if cas.is_some_and(|n| n != current) {
            return Err(cas_mismatch());
        }
        let data = if patch {
            let Some(row) = &existing else {
                return Err(missing());
            };
            let text = kv::value_by_id(c.client, &row.id)
                .await?
                .ok_or_else(permission_denied)?;
            let tagged = row.tags.iter().any(|t| t == JSON_TAG);
            let mut merged = Value::Object(decode(&text, tagged));
            merge_patch(&mut merged, &data);
            merged
        } else {
            data
        };
        let Value::Object(data) = data else {
            return Err(ApiError::bad("\"data\" must be a JSON object"));
        };
        let (text, json) = encode(&data);
        drop(data);
        if text.contains('\0') {
            return Err(ApiError::bad(
                "the data contains a NUL character, which text cannot hold",
            ));
        }
        let id: String = match existing {
            Some(row) => {
                let mut tags = row.tags;
                let had = tags.iter().any(|t| t == JSON_TAG);
                let new_tags = if json && !had {
                    tags.push(JSON_TAG.into());
                    Some(tags)
                } else if !json && had {
                    tags.retain(|t| t != JSON_TAG);
                    Some(tags)
                } else {
                    None
                };
                kv::update(c.client, &row.id, &text, new_tags.as_deref(), current)
                    .await
                    .map_err(|e| match e.code().map(|c| c.code()) {
                        Some("40001") => cas_mismatch(),
                        _ => ApiError::from(e),
                    })?;
                row.id
            }
            None => {
                let tags: Vec<String> = if json { vec![JSON_TAG.into()] } else { vec![] };
                kv::create(c.client, &name, &text, &tags)
                    .await
                    .map_err(|e| match e.code().map(|c| c.code()) {
                        Some("23505") => cas_mismatch(),
                        _ => ApiError::from(e),
                    })?
            }
        };
        let (version, at) = kv::written(c.client, &id).await?;
        Ok(json!({"created_time": at, "custom_metadata": null, "deletion_time": "",
                  "destroyed": false, "version": version}))
    })
    .await?;
    envelope(meta, Value::Null)
}

/// `DELETE data/<path>` and `DELETE metadata/<path>`: the secret and its versions are gone
/// (vault_ext keeps no deleted versions); 204 also when there was none, as Vault answers.
async fn delete(who: &Caller, name: String) -> Result<Response, ApiError> {
    db(who, async move |c| Ok(kv::delete(c.client, &name).await?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read_metadata(who: &Caller, name: String) -> Result<Response, ApiError> {
    let data = db(who, async move |c| {
        let Some(m) = kv::metadata(c.client, &name).await? else {
            return Err(missing());
        };
        let kv::Metadata {
            current,
            created,
            updated,
            max_versions,
            kept,
        } = m;
        // A kept version's row is written when a newer value replaces it: version N was
        // written when version N - 1 was kept.
        let written = |n: i32, fallback: &str| {
            kept.get(&(n - 1))
                .cloned()
                .unwrap_or_else(|| if n == 1 { created.clone() } else { fallback.to_string() })
        };
        let mut versions = Map::new();
        for (n, at) in &kept {
            versions.insert(
                n.to_string(),
                json!({"created_time": written(*n, at), "deletion_time": "", "destroyed": false}),
            );
        }
        versions.insert(
            current.to_string(),
            json!({"created_time": written(current, &updated), "deletion_time": "", "destroyed": false}),
        );
        let oldest = kept.keys().next().copied().unwrap_or(current);
        Ok(json!({
            "created_time": created,
            "updated_time": updated,
            "current_version": current,
            "oldest_version": if oldest <= 1 { 0 } else { oldest },
            "max_versions": max_versions,
            "cas_required": false,
            "delete_version_after": "0s",
            "custom_metadata": null,
            "versions": versions,
        }))
    })
    .await?;
    envelope(data, Value::Null)
}

async fn list_secrets(who: &Caller, prefix: String) -> Result<Response, ApiError> {
    let prefix = match prefix.trim_start_matches('/') {
        "" => String::new(),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    };
    let keys = db(who, async move |c| {
        let names = kv::names_under(c.client, &prefix).await?;
        Ok(list_keys(&prefix, names.iter().map(String::as_str)))
    })
    .await?;
    if keys.is_empty() {
        return Err(missing());
    }
    envelope(json!({ "keys": keys }), Value::Null)
}

/// What `lookup-self` and `renew-self` tell of the token (never the token itself), from
/// `vault.api_token_self` as the token's role: its role (named as its one policy: a vault_ext
/// token has no Vault policies), name, seconds left (0: no expiry) and times.
async fn token_self(who: &Caller) -> Result<kv::TokenSelf, ApiError> {
    let Caller::Token { token, .. } = who else {
        return Err(permission_denied());
    };
    let token = token.clone();
    db(who, async move |c| Ok(kv::token_self(c.client, &token).await?)).await
}

async fn lookup_self(who: &Caller) -> Result<Response, ApiError> {
    let t = token_self(who).await?;
    envelope(
        json!({
            "accessor": "",
            "creation_time": t.creation_time,
            "creation_ttl": t.creation_ttl,
            "display_name": format!("token-{}", t.name),
            "entity_id": "",
            "expire_time": t.expire_time,
            "explicit_max_ttl": 0,
            "issue_time": t.issue_time,
            "meta": {},
            "num_uses": 0,
            "orphan": true,
            "path": "auth/token/create",
            "policies": [t.role],
            "renewable": false,
            "ttl": t.ttl,
            "type": "service",
        }),
        Value::Null,
    )
}

/// The token's `auth` block, as after a renewal that changed nothing: a vault_ext token's
/// expiry is set when it is made, and `renew-self` never extends it.
async fn renew_self(who: &Caller) -> Result<Response, ApiError> {
    let t = token_self(who).await?;
    envelope(
        Value::Null,
        json!({
            "client_token": "",
            "accessor": "",
            "policies": [t.role.clone()],
            "token_policies": [t.role],
            "metadata": null,
            "lease_duration": t.ttl,
            "renewable": false,
            "entity_id": "",
            "token_type": "service",
            "orphan": true,
        }),
    )
}

/// `sys/health` (no token, flat as in Vault): whether the database answers, and whether it is
/// a standby (in recovery), through a connection of the server's own role.
async fn health(app: Arc<App>) -> Result<Response, ApiError> {
    let checked = crate::serve::db::in_recovery(&app.tokens).await;
    let version = concat!(env!("CARGO_PKG_VERSION"), "+pgvault");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (status, standby, sealed) = match checked {
        Ok(standby) => (StatusCode::OK, standby, false),
        _ => (StatusCode::SERVICE_UNAVAILABLE, false, true),
    };
    let mut r = json_response(
        status,
        &json!({"initialized": true, "sealed": sealed, "standby": standby, "performance_standby": false,
                "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
                "server_time_utc": now, "version": version, "cluster_name": "vault_ext"}),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn errors_take_vaults_statuses_and_shape() {
        let body = |r: Response| {
            let (p, b) = r.into_parts();
            let b = futures_lite_block(b);
            (
                p.status.as_u16(),
                p.headers[header::CONTENT_TYPE].to_str().unwrap().to_string(),
                b,
            )
        };
        assert_eq!(
            body(ApiError::bad_token().into_vault_response()),
            (403, "application/json".into(), json!({"errors": ["permission denied"]}))
        );
        assert_eq!(
            body(ApiError::not_found("x").into_vault_response()),
            (404, "application/json".into(), json!({"errors": []}))
        );
        assert_eq!(body(cas_mismatch().into_vault_response()).0, 400);
        let conflict = ApiError::new(StatusCode::CONFLICT, "version", Some("40001"));
        assert_eq!(body(conflict.into_vault_response()).0, 400);
    }

    fn futures_lite_block(b: Body) -> Value {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(axum::body::to_bytes(b, 1 << 20)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn paths_and_queries_are_decoded() {
        assert_eq!(percent_decode("app%2Fdb%20x").as_deref(), Some("app/db x"));
        assert!(percent_decode("bad%zz").is_none());
        assert_eq!(
            query_param(Some("list=true&version=3"), "version").as_deref(),
            Some("3")
        );
        assert_eq!(query_param(Some("list=1"), "list").as_deref(), Some("1"));
        assert!(truthy("true") && truthy("1") && !truthy("false"));
        assert!(check_mount("secret").is_ok() && check_mount("/kv/team/").unwrap() == "kv/team");
        assert!(check_mount("sys").is_err() && check_mount("").is_err());
    }
}
