//! The API's refusals (`{"error", "sqlstate"}`, never a value) and JSON bodies.

use crate::api::types::ErrorBody;
use crate::error::Kind;
use crate::text::escape;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// An API error: a status and `{"error", "sqlstate"}`; never a value.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) sqlstate: Option<String>,
    pub(crate) hint: Option<String>,
    /// The session's role may no longer log in: the session ends with this answer.
    pub(crate) ended: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>, sqlstate: Option<&str>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            sqlstate: sqlstate.map(str::to_string),
            hint: None,
            ended: false,
        }
    }
    pub(crate) fn session_ended() -> ApiError {
        ApiError {
            ended: true,
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this role may no longer log in (LOGIN removed, expired or dropped): the session has ended",
                None,
            )
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message, Some("22023"))
    }
    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not logged in (or the session expired)", None)
    }
    /// One answer for every token that does not act: unknown, expired, revoked or malformed.
    pub(crate) fn bad_token() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid token: unknown, expired or revoked",
            None,
        )
    }
    pub(crate) fn not_found(name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no secret named {name}"), Some("P0002"))
    }
}

/// The HTTP status for a SQLSTATE (the one table in error.rs).
pub(crate) fn status_of(sqlstate: &str) -> StatusCode {
    StatusCode::from_u16(Kind::of_sqlstate(sqlstate).http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> ApiError {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let mut err = ApiError::new(status_of(code), db.message(), Some(code));
                if err.status == StatusCode::INTERNAL_SERVER_ERROR {
                    eprintln!("pgvault serve: database error {code}: {}", escape(db.message()));
                }
                err.hint = db.hint().map(str::to_string);
                if code == "42501" && err.hint.is_none() {
                    err.hint = Some(
                        "listing needs vault_viewer, reading a value vault_reader, changes, the audit log, keys and verify vault_admin"
                            .into(),
                    );
                }
                err
            }
            None if e.is_closed() => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the database connection of this session was lost: log in again",
                None,
            ),
            None => {
                eprintln!("pgvault serve: database error: {}", escape(&e.to_string()));
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database error", None)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            sqlstate: self.sqlstate,
            hint: self.hint,
        };
        json_response(self.status, &body)
    }
}

/// How a refusal is written: vault_ext's `{"error", "sqlstate"}` (`/api/v1/`, the console), or
/// HashiCorp Vault's `{"errors": [...]}` with Vault's statuses (`/v1/`, routes/vault_kv.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Api,
    Vault,
}

impl ApiError {
    /// The refusal in `shape`.
    pub(crate) fn render(self, shape: Shape) -> Response {
        match shape {
            Shape::Api => self.into_response(),
            Shape::Vault => self.into_vault_response(),
        }
    }

    /// The refusal as Vault answers one: `{"errors": [...]}` with the status of
    /// [`Kind::vault_status`]. A token that does not act gets `permission denied` alone; a
    /// refusal by the database (403) `permission denied` and its reason; a missing secret or
    /// route 404 with no message, as from Vault.
    pub(crate) fn into_vault_response(self) -> Response {
        let status = StatusCode::from_u16(Kind::vault_status(self.status.as_u16())).unwrap_or(self.status);
        let errors = match self.status {
            StatusCode::UNAUTHORIZED => vec!["permission denied".to_string()],
            StatusCode::FORBIDDEN => {
                let mut e = vec!["permission denied".to_string()];
                if self.message != "permission denied" {
                    e.push(self.message);
                }
                e
            }
            StatusCode::NOT_FOUND => vec![],
            _ => vec![self.message],
        };
        json_response(status, &serde_json::json!({ "errors": errors }))
    }
}

/// `body` as JSON with `status`.
pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let Ok(text) = serde_json::to_string(body) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON body read into `T` (serde). Only with `Content-Type: application/json`: a
/// cross-site form cannot send one, so a form post is refused (400) before anything is read
/// into a value. Refusals name no part of the body (a value sent in the wrong field or of the
/// wrong type would otherwise be echoed).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the body must be JSON with Content-Type: application/json",
                Some("22023"),
            )),
            Err(_) => Err(ApiError::bad(
                "the body is not the JSON object this route takes (a field of the wrong type, or not JSON)",
            )),
        }
    }
}
