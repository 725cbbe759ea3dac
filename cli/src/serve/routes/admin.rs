//! `/api/v1/audit`, `/api/v1/keys`, `/api/v1/verify` (vault_admin).

use crate::api::types;
use crate::serve::auth::Caller;
use crate::serve::db::db;
use crate::serve::reply::{json_response, ApiError};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;

pub(crate) async fn audit(caller: Caller, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let s = caller;
    let limit = match q.iter().find(|(k, _)| k == "limit") {
        None => 100,
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| ApiError::bad("limit must be a number from 1 to 10000"))?,
    };
    let rows = db(&s, async move |c| {
        let rows = c.query(
            "SELECT id::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), session_role::text, \
                    action::text, secret_name::text, secret_id::text, coalesce(detail::text, '') \
               FROM vault.audit_log ORDER BY at DESC, id LIMIT $1",
            &[&limit],
        ).await?;
        Ok(rows
            .iter()
            .map(|r| types::AuditEntry {
                id: r.get(0),
                at: r.get(1),
                role: r.get(2),
                action: r.get(3),
                secret_name: r.get(4),
                secret_id: r.get(5),
                detail: r.get(6),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &rows))
}

/// The keys with their status (vault.key_status: vault_admin), oldest first.
pub(crate) async fn keys(caller: Caller) -> Result<Response, ApiError> {
    let s = caller;
    let rows = db(&s, async move |c| {
        let rows = c
            .query(
                "SELECT id::text, name, key_type, key_id, status, \
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    secrets, root_key \
               FROM vault.key_status ORDER BY created_at, id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let status: String = r.get(4);
                types::Key {
                    id: r.get(0),
                    name: r.get(1),
                    key_type: r.get(2),
                    key_id: r.get(3),
                    default: status == "default",
                    status,
                    created_at: r.get(5),
                    expires_at: r.get(6),
                    secrets: r.get(7),
                    root_key: r.get(8),
                }
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &rows))
}

/// vault.verify_secrets() (vault_admin): how many values (current and kept versions) were
/// checked, and those that need attention: not decrypting, or decrypting but with a note (under
/// the previous root key); a kept version's bare "version N" is no note. Never a value. It only
/// reads, so it is a GET.
pub(crate) async fn verify(caller: Caller) -> Result<Response, ApiError> {
    let s = caller;
    let body = db(&s, async move |c| {
        let r = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE NOT bad), \
                    coalesce(json_agg(json_build_object('id', id, 'name', name, 'key_id', key_id, \
                                                        'status', status, 'detail', detail)) \
                               FILTER (WHERE bad), '[]')::text \
               FROM (SELECT v.*, v.status <> 'ok' OR coalesce(v.detail !~ '^version [0-9]+$', false) AS bad \
                       FROM vault.verify_secrets() v) v",
                &[],
            )
            .await?;
        let problems: serde_json::Value = serde_json::from_str(&r.get::<_, String>(2)).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad answer from verify_secrets",
                None,
            )
        })?;
        Ok(types::VerifyReport {
            checked: r.get(0),
            ok: r.get(1),
            problems,
        })
    })
    .await?;
    Ok(json_response(StatusCode::OK, &body))
}
