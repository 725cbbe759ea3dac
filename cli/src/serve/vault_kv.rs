//! HashiCorp Vault's KV version 2 API under `/v1/` (SPEC §12, issue 29), so that hvac,
//! node-vault, vault-action, External Secrets Operator and `vault kv get` read and write
//! vault_ext unchanged.
//!
//! Every request but `sys/health` carries a vault_ext API token (`X-Vault-Token`, or
//! `Authorization: Bearer`) and runs exactly as a Bearer request of `/api/v1/` does: on a
//! connection of the server's own role, switched to the token's role (`db` with `Who::Token`),
//! so privileges, per-secret grants and non-exportable secrets hold the same way, and every
//! write is audited with the token's role. Cookies are never read here (see `guard`).
//!
//! Data mapping: a KV object `{"value": "<string>"}` is stored as that bare text; any other
//! object is stored as its JSON text and the secret carries the tag [`JSON_TAG`], which is how a
//! read knows to give the object back. A secret without the tag reads as `{"value": "<text>"}`.

use super::{db, json_response, random_hex, tags_of, ApiError, App, Auth, Who, MAX_BODY};
use axum::extract::{Extension, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use postgres::types::Type;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The tag that marks a secret whose text is a KV object's JSON (anything but a lone string
/// `value`). SQL readers see the JSON text.
pub const JSON_TAG: &str = "kv:json";
const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// An RFC 3339 UTC time, as Vault writes them (to the microsecond).
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "pg_catalog.to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// Whether a request's path is Vault's: the guard then reads no cookie and no Bearer header
/// for it (this module reads the token).
pub fn is_vault_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

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

impl ApiError {
    /// The error as Vault answers one: `{"errors": [...]}` with Vault's status. A request whose
    /// token does not act gets 403 `permission denied`, as from Vault (clients read 403 as "not
    /// authenticated"); a missing secret 404 with no message; a version mismatch 400.
    pub(super) fn into_vault_response(self) -> Response {
        let (status, errors) = match self.status {
            StatusCode::UNAUTHORIZED => (StatusCode::FORBIDDEN, vec!["permission denied".to_string()]),
            StatusCode::FORBIDDEN => {
                let mut e = vec!["permission denied".to_string()];
                if self.message != "permission denied" {
                    e.push(self.message);
                }
                (StatusCode::FORBIDDEN, e)
            }
            StatusCode::NOT_FOUND => (StatusCode::NOT_FOUND, vec![]),
            StatusCode::CONFLICT => (StatusCode::BAD_REQUEST, vec![self.message]),
            s => (s, vec![self.message]),
        };
        json_response(status, &json!({ "errors": errors }))
    }
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

/// The token of a Vault request: `X-Vault-Token`, else `Authorization: Bearer`. None when
/// missing, repeated or malformed (all answered 403, as Vault does).
fn vault_token(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    let one = |name: header::HeaderName| -> Option<Option<&HeaderValue>> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        all.next().is_none().then_some(first)
    };
    let token = match one(header::HeaderName::from_static("x-vault-token"))? {
        Some(v) => v.to_str().ok()?.trim().to_string(),
        None => {
            let v = one(header::AUTHORIZATION)??.to_str().ok()?;
            let (scheme, token) = v.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token.trim().to_string()
        }
    };
    let token = Zeroizing::new(token);
    (!token.is_empty() && !token.chars().any(|c| c.is_whitespace() || c.is_control())).then_some(token)
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

/// A secret's stored text as a KV object: the object itself for a secret tagged [`JSON_TAG`]
/// whose text is a JSON object, `{"value": text}` for every other.
pub fn decode(text: &str, tagged: bool) -> Map<String, Value> {
    if tagged {
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
            return m;
        }
    }
    let mut m = Map::new();
    m.insert("value".into(), Value::String(text.to_string()));
    m
}

/// A KV object as stored text, and whether it is JSON (then tagged [`JSON_TAG`]): a lone string
/// `value` is stored bare, so SQL and `pgvault run` see the plain value.
pub fn encode(data: &Map<String, Value>) -> (Zeroizing<String>, bool) {
    if data.len() == 1 {
        if let Some(Value::String(v)) = data.get("value") {
            return (Zeroizing::new(v.clone()), false);
        }
    }
    (Zeroizing::new(Value::Object(data.clone()).to_string()), true)
}

/// JSON merge patch (RFC 7396) of `patch` into `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The next segment of each name under `prefix` (which ends with `/` or is empty), folders with
/// a trailing `/`, sorted and without duplicates.
pub fn list_keys<'a>(prefix: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for name in names {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let key = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if !key.is_empty() && key != "/" {
            keys.insert(key.to_string());
        }
    }
    keys.into_iter().collect()
}

/// Every request under `/v1/`.
pub async fn handle(Extension(auth): Extension<Auth>, req: Request) -> Response {
    match route(auth, req).await {
        Ok(r) => r,
        Err(e) => e.into_vault_response(),
    }
}

async fn route(auth: Auth, req: Request) -> Result<Response, ApiError> {
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
        return if get {
            health(auth.app.clone()).await
        } else {
            Err(unsupported())
        };
    }
    if headers
        .get("x-vault-namespace")
        .is_some_and(|v| !v.as_bytes().iter().all(|b| b.is_ascii_whitespace() || *b == b'/'))
    {
        return Err(ApiError::bad(
            "namespaces are not supported: send no X-Vault-Namespace header (or an empty one)",
        ));
    }
    let token = vault_token(headers).ok_or_else(permission_denied)?;
    let who = Who::Token {
        app: auth.app.clone(),
        token: Arc::new(token),
        acted: auth.acted.clone(),
    };
    let mount = auth.app.kv_mount.clone();
    if let Some(p) = path.strip_prefix("sys/internal/ui/mounts/") {
        if !get {
            return Err(unsupported());
        }
        let p = p.trim_start_matches('/');
        db(&who, |_| Ok(())).await?;
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

/// The value (and what a KV read needs with it) in one statement, with parameter types given
/// so that it is one round trip; NULL value: per-secret grants or a non-exportable secret keep
/// it from this role.
const READ: &str = concat!(
    "SELECT d.v, d.id::pg_catalog.text, d.tags, ",
    ts!("d.updated_at"),
    ", pg_catalog.has_table_privilege('vault.secrets', 'SELECT') \
       FROM (SELECT s.decrypted_secret AS v, s.id, s.tags, s.updated_at \
               FROM vault.decrypted_secrets s WHERE s.name OPERATOR(pg_catalog.=) $1 OFFSET 0) d"
);

async fn read(who: &Who, name: String, version: Option<i32>) -> Result<Response, ApiError> {
    let body = db(who, move |c| {
        let Some(r) = c.query_typed_opt(READ, &[(&name, Type::TEXT)])? else {
            return Err(missing());
        };
        let value = r.get::<_, Option<String>>(0).map(Zeroizing::new).ok_or_else(permission_denied)?;
        let id: String = r.get(1);
        let tagged = tags_of(&r, 2).iter().any(|t| t == JSON_TAG);
        let may_versions: bool = r.get(4);
        let current: i32 = if may_versions {
            c.query_typed_one(
                "SELECT version FROM vault.secrets WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
                &[(&id, Type::TEXT)],
            )?
            .get(0)
        } else {
            0
        };
        let (value, created, version) = match version {
            Some(n) if n != current => {
                if !may_versions {
                    return Err(vault_error(
                        StatusCode::FORBIDDEN,
                        "earlier versions are readable by vault_admin only",
                    ));
                }
                let Some(v) = c.query_typed_opt(
                    concat!(
                        "SELECT v.decrypted_secret, ",
                        ts!("coalesce(p.created_at, CASE WHEN v.version OPERATOR(pg_catalog.=) 1 THEN s.created_at END, v.created_at)"),
                        " FROM vault.decrypted_secret_versions v JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) v.secret_id \
                          LEFT JOIN vault.secret_versions p ON p.secret_id OPERATOR(pg_catalog.=) v.secret_id \
                               AND p.version OPERATOR(pg_catalog.=) (v.version OPERATOR(pg_catalog.-) 1) \
                         WHERE v.secret_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid AND v.version OPERATOR(pg_catalog.=) $2"
                    ),
                    &[(&id, Type::TEXT), (&n, Type::INT4)],
                )?
                else {
                    return Err(missing());
                };
                let old = v.get::<_, Option<String>>(0).map(Zeroizing::new).ok_or_else(permission_denied)?;
                (old, v.get::<_, String>(1), n)
            }
            _ => (value, r.get::<_, String>(3), current),
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
async fn write(who: &Who, name: String, body: &[u8], patch: bool) -> Result<Response, ApiError> {
    let (data, cas) = write_body(body, patch)?;
    let meta = db(who, move |c| {
        let existing = c.query_typed_opt(
            "SELECT id::pg_catalog.text, version, tags FROM vault.secrets \
              WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
            &[(&name, Type::TEXT)],
        )?;
        let current = existing.as_ref().map(|r| r.get::<_, i32>(1)).unwrap_or(0);
        if cas.is_some_and(|n| n != current) {
            return Err(cas_mismatch());
        }
        let data = if patch {
            let Some(row) = &existing else {
                return Err(missing());
            };
            let id: String = row.get(0);
            let text = c
                .query_typed_one(
                    "SELECT decrypted_secret FROM vault.decrypted_secrets \
                      WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
                    &[(&id, Type::TEXT)],
                )?
                .get::<_, Option<String>>(0)
                .map(Zeroizing::new)
                .ok_or_else(permission_denied)?;
            let tagged = tags_of(row, 2).iter().any(|t| t == JSON_TAG);
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
            return Err(ApiError::bad("the data contains a NUL character, which text cannot hold"));
        }
        let text: &str = &text;
        let id: String = match &existing {
            Some(row) => {
                let id: String = row.get(0);
                let mut tags = tags_of(row, 2);
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
                let expected = Some(current);
                c.execute(
                    "SELECT vault.update_secret($1::pg_catalog.text::pg_catalog.uuid, $2, NULL, NULL, NULL, $3::pg_catalog.text[], $4)",
                    &[&id, &text, &new_tags, &expected],
                )
                .map_err(|e| match e.code().map(|c| c.code()) {
                    Some("40001") => cas_mismatch(),
                    _ => ApiError::from(e),
                })?;
                id
            }
            None => {
                let tags: Vec<String> = if json { vec![JSON_TAG.into()] } else { vec![] };
                c.query_one(
                    "SELECT vault.create_secret($1, $2, '', NULL, $3::pg_catalog.text[])::pg_catalog.text",
                    &[&text, &name, &tags],
                )
                .map_err(|e| match e.code().map(|c| c.code()) {
                    Some("23505") => cas_mismatch(),
                    _ => ApiError::from(e),
                })?
                .get(0)
            }
        };
        let r = c.query_typed_one(
            concat!(
                "SELECT version, ",
                ts!("updated_at"),
                " FROM vault.secrets WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
            ),
            &[(&id, Type::TEXT)],
        )?;
        Ok(json!({"created_time": r.get::<_, String>(1), "custom_metadata": null, "deletion_time": "",
                  "destroyed": false, "version": r.get::<_, i32>(0)}))
    })
    .await?;
    envelope(meta, Value::Null)
}

/// `DELETE data/<path>` and `DELETE metadata/<path>`: the secret and its versions are gone
/// (vault_ext keeps no deleted versions); 204 also when there was none, as Vault answers.
async fn delete(who: &Who, name: String) -> Result<Response, ApiError> {
    db(who, move |c| {
        c.execute(
            "DELETE FROM vault.secrets WHERE name OPERATOR(pg_catalog.=) $1",
            &[&name],
        )?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read_metadata(who: &Who, name: String) -> Result<Response, ApiError> {
    let data = db(who, move |c| {
        let Some(s) = c.query_typed_opt(
            concat!(
                "SELECT id::pg_catalog.text, version, ",
                ts!("created_at"),
                ", ",
                ts!("updated_at"),
                ", coalesce(pg_catalog.current_setting('vault.max_versions', true)::integer, 10) \
                   FROM vault.secrets WHERE name OPERATOR(pg_catalog.=) $1"
            ),
            &[(&name, Type::TEXT)],
        )?
        else {
            return Err(missing());
        };
        let (id, current): (String, i32) = (s.get(0), s.get(1));
        let (created, updated): (String, String) = (s.get(2), s.get(3));
        // A kept version's row is written when a newer value replaces it: version N was
        // written when version N - 1 was kept.
        let kept: BTreeMap<i32, String> = c
            .query_typed(
                concat!(
                    "SELECT version, ",
                    ts!("created_at"),
                    " FROM vault.secret_versions WHERE secret_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
                ),
                &[(&id, Type::TEXT)],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
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
            "max_versions": s.get::<_, i32>(4),
            "cas_required": false,
            "delete_version_after": "0s",
            "custom_metadata": null,
            "versions": versions,
        }))
    })
    .await?;
    envelope(data, Value::Null)
}

async fn list_secrets(who: &Who, prefix: String) -> Result<Response, ApiError> {
    let prefix = match prefix.trim_start_matches('/') {
        "" => String::new(),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    };
    let keys = db(who, move |c| {
        let rows = c.query_typed(
            "SELECT name FROM vault.masked_secrets \
              WHERE name IS NOT NULL AND pg_catalog.starts_with(name, $1)",
            &[(&prefix, Type::TEXT)],
        )?;
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
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
struct TokenSelf {
    role: String,
    name: String,
    ttl: i64,
    expire_time: Option<String>,
    issue_time: Option<String>,
    creation_time: i64,
    creation_ttl: i64,
}

const TOKEN_SELF: &str = concat!(
    "SELECT current_user::pg_catalog.text, j->>'name', coalesce((j->>'ttl')::pg_catalog.int8, 0), ",
    ts!("(j->>'expires_at')::pg_catalog.timestamptz"),
    ", ",
    ts!("(j->>'created_at')::pg_catalog.timestamptz"),
    ", coalesce(pg_catalog.date_part('epoch', (j->>'created_at')::pg_catalog.timestamptz)::pg_catalog.int8, 0), \
       coalesce(pg_catalog.date_part('epoch', (j->>'expires_at')::pg_catalog.timestamptz \
                OPERATOR(pg_catalog.-) (j->>'created_at')::pg_catalog.timestamptz)::pg_catalog.int8, 0) \
       FROM vault.api_token_self($1) j"
);

async fn token_self(who: &Who) -> Result<TokenSelf, ApiError> {
    let Who::Token { token, .. } = who else {
        return Err(permission_denied());
    };
    let token = token.clone();
    db(who, move |c| {
        // A role without USAGE on schema vault cannot call the function: its role alone.
        let usage: bool = c
            .query_one("SELECT pg_catalog.has_schema_privilege('vault', 'USAGE')", &[])?
            .get(0);
        if !usage {
            let role: String = c.query_one("SELECT current_user::pg_catalog.text", &[])?.get(0);
            return Ok(TokenSelf {
                role,
                name: String::new(),
                ttl: 0,
                expire_time: None,
                issue_time: None,
                creation_time: 0,
                creation_ttl: 0,
            });
        }
        let t: &str = &token;
        let r = c.query_one(TOKEN_SELF, &[&t])?;
        Ok(TokenSelf {
            role: r.get(0),
            name: r.get::<_, Option<String>>(1).unwrap_or_default(),
            ttl: r.get(2),
            expire_time: r.get(3),
            issue_time: r.get(4),
            creation_time: r.get(5),
            creation_ttl: r.get(6),
        })
    })
    .await
}

async fn lookup_self(who: &Who) -> Result<Response, ApiError> {
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
async fn renew_self(who: &Who) -> Result<Response, ApiError> {
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
    let permit = app.tokens.slots.clone().acquire_owned().await;
    let checked = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let (mut c, _) = app.tokens.take(&app.target)?;
        let r = c.query_one("SELECT pg_catalog.pg_is_in_recovery()", &[]);
        match r {
            Ok(row) => {
                app.tokens.give(c);
                Ok::<bool, ApiError>(row.get(0))
            }
            Err(e) => {
                super::close(c);
                Err(e.into())
            }
        }
    })
    .await;
    let version = concat!(env!("CARGO_PKG_VERSION"), "+pgvault");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (status, standby, sealed) = match checked {
        Ok(Ok(standby)) => (StatusCode::OK, standby, false),
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
    fn a_lone_string_value_is_stored_bare_and_anything_else_as_tagged_json() {
        let m = |v: Value| v.as_object().unwrap().clone();
        let (t, json) = encode(&m(json!({"value": "s3cret"})));
        assert_eq!((t.as_str(), json), ("s3cret", false));
        let (t, json) = encode(&m(json!({"value": 5})));
        assert_eq!((t.as_str(), json), ("{\"value\":5}", true));
        let obj = json!({"user": "app", "port": 5432, "tls": true, "hosts": ["a", "b"], "x": null});
        let (t, json) = encode(&m(obj.clone()));
        assert!(json);
        assert_eq!(Value::Object(decode(&t, true)), obj);
    }

    #[test]
    fn untagged_or_non_object_text_reads_as_value() {
        assert_eq!(Value::Object(decode("{\"a\":1}", false)), json!({"value": "{\"a\":1}"}));
        assert_eq!(Value::Object(decode("[1,2]", true)), json!({"value": "[1,2]"}));
        assert_eq!(Value::Object(decode("plain", true)), json!({"value": "plain"}));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
        let mut t = json!({"a": 1});
        merge_patch(&mut t, &json!({"a": {"b": 2}}));
        assert_eq!(t, json!({"a": {"b": 2}}));
    }

    #[test]
    fn listing_gives_the_next_segment_with_folders_marked() {
        let names = [
            "app/db",
            "app/api/key",
            "app/api/other",
            "apple",
            "top",
            "app/",
            "app//x",
        ];
        assert_eq!(list_keys("app/", names.iter().copied()), vec!["api/", "db"]);
        assert_eq!(list_keys("", names.iter().copied()), vec!["app/", "apple", "top"]);
        assert!(list_keys("none/", names.iter().copied()).is_empty());
    }

    #[test]
    fn the_token_comes_from_x_vault_token_or_bearer_once() {
        let mut h = HeaderMap::new();
        assert!(vault_token(&h).is_none());
        h.insert("x-vault-token", HeaderValue::from_static("pgv_abc"));
        assert_eq!(vault_token(&h).unwrap().as_str(), "pgv_abc");
        h.append("x-vault-token", HeaderValue::from_static("pgv_def"));
        assert!(vault_token(&h).is_none(), "two X-Vault-Token headers are refused");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer pgv_xyz"));
        assert_eq!(vault_token(&h).unwrap().as_str(), "pgv_xyz");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(vault_token(&h).is_none());
    }

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
