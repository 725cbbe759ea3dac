//! `/api/v1/secrets`: the list, one value, create and update, delete, versions, rollback.

use crate::api::types::{self, SecretMeta};
use crate::serve::auth::Caller;
use crate::serve::db::{db, db_as, token_gate, token_read, Db, Tx};
use crate::serve::reply::{json_response, ApiError, JsonBody};
use crate::store;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use zeroize::Zeroizing;

/// Metadata of the secrets with every tag in `tags` (and the name `name`, when given), with
/// their versions for a role that may read them.
pub(crate) async fn metadata(c: &Db<'_>, tags: &[String], name: Option<&str>) -> Result<Vec<SecretMeta>, ApiError> {
    let rows = store::secrets::list(c.client, tags, name).await?;
    // Versions are in vault.secrets, which only vault_admin may read.
    let versions = store::secrets::versions(c.client, name).await?;
    Ok(rows
        .into_iter()
        .map(|m| {
            let version = versions.get(&m.id).copied();
            SecretMeta::of(m, version)
        })
        .collect())
}

pub(crate) async fn list(caller: Caller, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let s = caller;
    let tags: Vec<String> = q.into_iter().filter(|(k, _)| k == "tag").map(|(_, v)| v).collect();
    let items = db(&s, async move |c| metadata(c, &tags, None).await).await?;
    Ok(json_response(StatusCode::OK, &items))
}

/// The value and metadata of one secret in one statement, for the hot read path. The value is
/// decrypted once (the mask is made from it): the view's column is read in a subquery that
/// OFFSET 0 keeps from being merged into the outer query, where it would be computed (and, with
/// vault.audit_reads, audited) once per use. A session's statement holds `MAY_LOG_IN` as a
/// one-time filter (nothing is decrypted for a role that may no longer log in, and no round trip
/// is added). Column 11 says whether the role may read
/// vault.secrets, where the version is (vault_admin).
macro_rules! get_secret_sql {
    ($last:literal, $gate:expr) => {
        concat!(
            "SELECT d.v, d.id::text, d.name, d.description, coalesce(vault.mask(d.v), ''), d.tags, \
                    to_char(d.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    to_char(d.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    coalesce(d.expires_at <= now(), false), \
                    coalesce(d.expires_at <= now() + interval '7 days', false), \
                    to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ",
            $last,
            " FROM (SELECT s.decrypted_secret AS v, s.id, s.name, s.description, s.tags, s.expires_at, \
                           s.updated_at, s.created_at \
                      FROM vault.decrypted_secrets s WHERE s.name = $1 AND ",
            $gate,
            " OFFSET 0) d"
        )
    };
}

pub(crate) const GET_SECRET: &str = get_secret_sql!("has_table_privilege('vault.secrets', 'SELECT')", may_log_in!());

/// A token's read, sent with its check (`db::token_read`): nothing is read unless the check
/// switched to the token's role (`token_gate!`).
pub(crate) const GET_SECRET_AS_TOKEN: &str =
    get_secret_sql!("has_table_privilege('vault.secrets', 'SELECT')", token_gate!());

/// The same with the version, for a token whose role may read vault.secrets.
pub(crate) const GET_SECRET_VERSIONED_AS_TOKEN: &str = get_secret_sql!(
    "true, (SELECT s.version FROM vault.secrets s WHERE s.id = d.id)",
    token_gate!()
);

/// The same with the version (column 12) from the same snapshot: only for a role that may read
/// vault.secrets (others get 42501 from it).
pub(crate) const GET_SECRET_VERSIONED: &str = get_secret_sql!(
    "true, (SELECT s.version FROM vault.secrets s WHERE s.id = d.id)",
    may_log_in!()
);

pub(crate) async fn get_secret(caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let body = match &caller {
        // One round trip: the token's transaction, its check and this read sent together
        // (`db::token_read`), the version in the same statement for a role that may read it.
        Caller::Token { .. } => {
            let row = token_read(&caller, GET_SECRET_AS_TOKEN, GET_SECRET_VERSIONED_AS_TOKEN, &name).await?;
            secret_json(row, &name)?
        }
        // One statement outside BEGIN/COMMIT (two round trips fewer); a role that could read
        // vault.secrets at login (or at its last GET /api/v1/session) gets the version in it.
        Caller::Session(session) => {
            let session = session.clone();
            db_as(&caller, Tx::OneStatement, async move |c| {
                let versioned = session.versions.load(Ordering::Relaxed);
                let row = if versioned {
                    match c.one_row(GET_SECRET_VERSIONED, &name).await {
                        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                            // vault_admin was revoked since login: read as the role is now.
                            session.versions.store(false, Ordering::Relaxed);
                            c.one_row(GET_SECRET, &name).await?
                        }
                        other => other?,
                    }
                } else {
                    c.one_row(GET_SECRET, &name).await?
                };
                // A role that became able to read versions after login: from its next read
                // on (one statement, one snapshot).
                if let Some(r) = row.as_ref().filter(|r| r.len() == 12) {
                    session.versions.store(r.get::<_, bool>(11), Ordering::Relaxed);
                }
                secret_json(row, &name)
            })
            .await?
        }
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The JSON body of a secret's GET from the row of `get_secret_sql!` (column 12, when there,
/// is the version): 404 without a row, 403 when the value is kept from the role.
fn secret_json(row: Option<Row>, name: &str) -> Result<String, ApiError> {
    let Some(r) = row else {
        return Err(ApiError::not_found(name));
    };
    let Some(value) = r.get::<_, Option<String>>(0).map(Zeroizing::new) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "secret {name} is not readable by this role: per-secret grants (vault.grant_secret) leave it out, or it is not exportable (only used inside the server)"
            ),
            Some("42501"),
        ));
    };
    let secret = types::Secret {
        meta: SecretMeta {
            id: r.get(1),
            name: r.get(2),
            description: r.get(3),
            masked: r.get(4),
            tags: store::secrets::tags_of(&r, 5),
            expires_at: r.get(6),
            updated_at: r.get(7),
            expired: r.get(8),
            expiring_soon: r.get(9),
            created_at: r.get(10),
            version: if r.len() > 12 { r.get(12) } else { None },
        },
        value,
    };
    serde_json::to_string(&secret).map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None))
}

/// `PUT /api/v1/secrets/{name}`'s body: what is left out stays as it is.
#[derive(Deserialize)]
pub(crate) struct PutBody {
    #[serde(default, deserialize_with = "types::conceal_opt")]
    value: Option<Zeroizing<String>>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// Left out: unchanged; null or "": never expires.
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    expected_version: Option<i32>,
}

/// A field that is there (null included), told apart from one left out (`default`: None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub(crate) async fn put_secret(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Response, ApiError> {
    let s = caller;
    // Unlike `pgvault set`, "=" is allowed: the value has its own field here, so a name cannot
    // be a KEY=VALUE typed by habit.
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "a secret name cannot be empty or contain control characters",
        ));
    }
    let PutBody {
        value,
        description,
        tags,
        expires_at,
        expected_version: expected,
    } = body;
    if value.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(ApiError::bad("empty value; nothing was changed"));
    }
    if value.as_ref().is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::bad("the value contains a NUL byte, which text cannot hold"));
    }
    let expires = expires_at.map(|e| e.filter(|s| !s.is_empty()));
    let (created, meta) = db(&s, async move |tx| {
        let existing = tx
            .query_opt(
                "SELECT id::text, version FROM vault.secrets WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?;
        let value = value.as_ref().map(|v| v.as_str());
        let created = match existing {
            Some(row) => {
                let (id, version): (String, i32) = (row.get(0), row.get(1));
                if expected.is_some_and(|e| e != version) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("secret {name} is at version {version}: re-read it and try again; nothing was changed"),
                        Some("40001"),
                    ));
                }
                tx.execute(
                    "SELECT vault.update_secret($1::text::uuid, $2, NULL, $3, NULL, $4::text[], $5)",
                    &[&id, &value, &description, &tags, &expected],
                )
                .await?;
                false
            }
            None => {
                if expected.is_some() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("no secret named {name} (expected_version was given); nothing was changed"),
                        Some("40001"),
                    ));
                }
                let Some(value) = value else {
                    return Err(ApiError::bad("a new secret needs a \"value\""));
                };
                tx.execute(
                    "SELECT vault.create_secret($1, $2, coalesce($3, ''), NULL, $4::text[])",
                    &[&value, &name, &description, &tags],
                )
                .await?;
                true
            }
        };
        if let Some(at) = expires {
            tx.execute(
                "UPDATE vault.secrets SET expires_at = $2::text::timestamptz WHERE name = $1",
                &[&name, &at],
            )
            .await?;
        }
        let meta = metadata(tx, &[], Some(&name)).await?.pop();
        Ok((created, meta))
    })
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, &meta))
}

pub(crate) async fn delete_secret(caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = caller;
    db(&s, async move |c| {
        match c.execute("DELETE FROM vault.secrets WHERE name = $1", &[&name]).await? {
            0 => Err(ApiError::not_found(&name)),
            _ => Ok(StatusCode::NO_CONTENT.into_response()),
        }
    })
    .await
}

pub(crate) async fn secret_id(c: &Db<'_>, name: &str) -> Result<String, ApiError> {
    c.query_opt("SELECT id::text FROM vault.secrets WHERE name = $1", &[&name])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| ApiError::not_found(name))
}

pub(crate) async fn versions(caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = caller;
    let rows = db(&s, async move |c| {
        let id = secret_id(c, &name).await?;
        let rows = c.query(
            "SELECT version, true, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), NULL::text \
               FROM vault.secrets WHERE id = $1::text::uuid \
             UNION ALL \
             SELECT version, false, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), created_by::text \
               FROM vault.secret_versions WHERE secret_id = $1::text::uuid \
             ORDER BY 1 DESC",
            &[&id],
        ).await?;
        Ok(rows
            .iter()
            .map(|r| {
                types::Version {
                    version: r.get(0),
                    current: r.get(1),
                    at: r.get(2),
                    replaced_by: r.get(3),
                }
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &rows))
}

/// `POST /api/v1/secrets/{name}/rollback`'s body.
#[derive(Deserialize)]
pub(crate) struct RollbackBody {
    version: Option<i32>,
}

pub(crate) async fn rollback(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RollbackBody>,
) -> Result<Response, ApiError> {
    let s = caller;
    let version = body.version.ok_or_else(|| ApiError::bad("give {\"version\": N}"))?;
    let new = db(&s, async move |c| {
        let id = secret_id(c, &name).await?;
        let new: i32 = c
            .query_one("SELECT vault.rollback_secret($1::text::uuid, $2)", &[&id, &version])
            .await?
            .get(0);
        Ok(new)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &types::RolledBack {
            version: new,
            from_version: version,
        },
    ))
}
