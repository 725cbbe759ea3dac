//! The routes of the console and the API.

mod admin;
mod assets;
mod grants;
mod secrets;
mod session;

pub(crate) use admin::*;
pub(crate) use assets::*;
pub(crate) use grants::*;
pub(crate) use secrets::*;
pub(crate) use session::*;

use crate::serve::prelude::*;
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
