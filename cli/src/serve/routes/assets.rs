//! The console's page, script and style, embedded in the binary.

use crate::serve::reply::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

pub(crate) const INDEX_HTML: &str = include_str!("../../../web/index.html");

pub(crate) const APP_JS: &str = include_str!("../../../web/app.js");

pub(crate) const APP_CSS: &str = include_str!("../../../web/app.css");

pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route", None)
}
