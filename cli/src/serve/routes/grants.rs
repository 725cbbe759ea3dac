//! `/api/v1/secrets/{name}/grants`: per-secret grants (vault_admin).

use crate::api::types;
use crate::serve::auth::Caller;
use crate::serve::db::db;
use crate::serve::reply::{json_response, ApiError};
use crate::serve::routes::secrets::secret_id;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Per-secret grants (vault.grant_secret): who, besides vault_admin, may read the secret.
pub(crate) async fn grants(caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = caller;
    let rows = db(&s, async move |c| {
        let id = secret_id(c, &name).await?;
        let rows = c
            .query(
                "SELECT grantee::text, granted_by::text, \
                    to_char(granted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
               FROM vault.secret_acl WHERE secret_id = $1::text::uuid ORDER BY 1",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| types::Grant {
                role: r.get(0),
                granted_by: r.get(1),
                at: r.get(2),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &rows))
}

pub(crate) async fn grant(caller: Caller, Path((name, role)): Path<(String, String)>) -> Result<Response, ApiError> {
    change_grant(
        caller,
        name,
        role,
        "SELECT vault.grant_secret($1::text::uuid, $2::text::regrole)",
    )
    .await
}

pub(crate) async fn revoke(caller: Caller, Path((name, role)): Path<(String, String)>) -> Result<Response, ApiError> {
    change_grant(
        caller,
        name,
        role,
        "SELECT vault.revoke_secret($1::text::uuid, $2::text::regrole)",
    )
    .await
}

pub(crate) async fn change_grant(
    caller: Caller,
    name: String,
    role: String,
    statement: &'static str,
) -> Result<Response, ApiError> {
    let s = caller;
    db(&s, async move |c| {
        let id = secret_id(c, &name).await?;
        c.execute(statement, &[&id, &role]).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
