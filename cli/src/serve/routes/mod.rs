//! The routes of the console and the API.

pub(crate) mod admin;
pub(crate) mod assets;
pub(crate) mod grants;
pub(crate) mod secrets;
pub(crate) mod session;
pub(crate) mod vault_kv;

use admin::{audit, keys, verify};
use assets::{asset, not_found, APP_CSS, APP_JS, INDEX_HTML};
use grants::{grant, grants, revoke};
use secrets::{delete_secret, get_secret, list, put_secret, rollback, versions};
use session::{login, logout, whoami};

use crate::serve::auth::{guard, CSP};
use crate::serve::state::App;
use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::{middleware, Router};
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/api/v1/session", post(login).delete(logout).get(whoami))
        .route("/api/v1/secrets", get(list))
        .route(
            "/api/v1/secrets/{name}",
            get(get_secret).put(put_secret).delete(delete_secret),
        )
        .route("/api/v1/secrets/{name}/versions", get(versions))
        .route("/api/v1/secrets/{name}/rollback", post(rollback))
        .route("/api/v1/secrets/{name}/grants", get(grants))
        .route(
            "/api/v1/secrets/{name}/grants/{role}",
            axum::routing::put(grant).delete(revoke),
        )
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/verify", get(verify))
        .route("/v1/{*rest}", axum::routing::any(vault_kv::handle))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        // The headers every response has, refusals included (SPEC 9).
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
        .layer(header_layer(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .with_state(app)
}

fn header_layer(name: header::HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}
