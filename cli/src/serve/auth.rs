//! Who a request acts for (a session's cookie or a Bearer token), the CSRF check, the security
//! headers and the access log: decided once per request, before any handler.

use crate::serve::bodies::SMALL_BODY;
use crate::serve::reply::{ApiError, Shape};
use crate::serve::sessions::{client_address, cookie_value, same, Session, MAX_BODY};
use crate::serve::state::{App, LogRole};
use crate::text::escape;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::headers::authorization::{Authorization, Bearer};
use axum_extra::headers::Header;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Who a request acts for, decided once by `guard` (the session its cookie names, or the
/// Bearer token it carries, never both) and taken by each handler as an argument: a handler
/// that needs a caller cannot run without one (401).
#[derive(Clone)]
pub(crate) enum Caller {
    Session(Arc<Session>),
    Token {
        app: Arc<App>,
        token: Arc<Zeroizing<String>>,
        /// Where the role the token turned out to act as goes, once the database said so
        /// (the access log's; set by `db`, read by `guard`).
        acted: LogRole,
    },
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The caller when there is one: routes that also answer without one (HashiCorp Vault's
/// `sys/health`, and its own refusal of a missing token) take `Option<Caller>`.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Caller>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

/// Whether a request's path is HashiCorp Vault's API (routes/vault_kv.rs).
pub(crate) fn is_vault_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Every request: the session from the cookie or the Bearer token, the CSRF check for
/// state-changing methods, `no-store` on the API, one access-log line (method, path, status,
/// role, duration) in the format and escaping the tests check.
pub(crate) async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut log = AccessLog {
        method: method.clone(),
        path: path.clone(),
        started,
        status: None,
        role: None,
    };
    // The whole body within --first-request-timeout (issue 26: a body trickled a byte at a time
    // held its connection for good), a large one only within its budgets (`bodies.rs`). Only
    // then does the connection count as handling a request, which keeps it from being closed to
    // make room for another (`limits`).
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| *p);
    let (parts, body) = req.into_parts();
    let bytes = body.size_hint().upper().unwrap_or(MAX_BODY as u64).min(MAX_BODY as u64);
    let held = match peer {
        Some(p) if bytes > SMALL_BODY => app
            .bodies
            .take(client_address(&app.trusted_proxies, p.ip(), &parts.headers), bytes)
            .map(Some)
            .ok_or(()),
        _ => Ok(None),
    };
    let read = match &held {
        Err(()) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many large request bodies are being received at once: try again",
            None,
        )),
        Ok(_) => match tokio::time::timeout(app.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes, or was cut off"),
                None,
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
                None,
            )),
        },
    };
    let (mut req, unreadable) = match read {
        Ok(bytes) => (Request::from_parts(parts, Body::from(bytes)), None),
        Err(e) => (Request::from_parts(parts, Body::empty()), Some(e)),
    };
    // What is left of an unread body is not read: the connection cannot carry another request.
    let close = unreadable.is_some();
    let _busy = peer.filter(|_| !close).map(|p| app.limits.busy(p));
    // A Bearer request is the token's alone: it needs no CSRF token (a browser does not add
    // the header on its own), and one that also carries a session cookie is refused rather
    // than guessing which of the two it meant.
    // HashiCorp Vault's API (/v1/) reads its own token header (X-Vault-Token, else Bearer) and
    // never a cookie: no session, no CSRF check there; a missing or malformed token leaves the
    // request without a caller, which the route refuses as Vault does (403).
    let vault = is_vault_path(&path);
    let vault_caller = if vault { vault_token(req.headers()) } else { None };
    let bearer = if vault { None } else { bearer_token(req.headers()) };
    let session = match bearer {
        None if vault => None,
        None => app.session(req.headers()),
        Some(_) => None,
    };
    let safe = method == Method::GET || method == Method::HEAD;
    let refusal = match (&bearer, &session) {
        _ if unreadable.is_some() => unreadable,
        (Some(Err(())), _) => Some(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "send one Authorization header: \"Bearer TOKEN\"",
            None,
        )),
        (Some(Ok(_)), _) if cookie_value(req.headers()).is_some() => Some(ApiError::new(
            StatusCode::BAD_REQUEST,
            "send either a session cookie or an Authorization: Bearer token, not both; nothing was done",
            None,
        )),
        (None, Some(s)) if !safe => {
            let token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
            (!token.is_some_and(|t| same(t, &s.csrf))).then(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token header: nothing was changed",
                    None,
                )
            })
        }
        _ => None,
    };
    let mut response = refusal.map(|e| {
        let mut r = e.render(if vault { Shape::Vault } else { Shape::Api });
        if close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    });
    let mut role = session.as_ref().map(|s| s.user.clone());
    if response.is_none() {
        let acted = LogRole::default();
        req.extensions_mut().insert(acted.clone());
        let bearer = bearer.and_then(Result::ok).or(vault_caller);
        let by_token = bearer.is_some();
        let caller = match (bearer, session) {
            (Some(token), _) => Some(Caller::Token {
                app: app.clone(),
                token: Arc::new(token),
                acted: acted.clone(),
            }),
            (None, Some(s)) => Some(Caller::Session(s)),
            (None, None) => None,
        };
        if let Some(caller) = caller {
            req.extensions_mut().insert(caller);
        }
        let r = next.run(req).await;
        match acted.get() {
            Some(r) if by_token => role = Some(format!("{r} (token)")),
            Some(r) => role = Some(r),
            None => {}
        }
        response = Some(r);
    }
    let mut response = response.unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    // The security headers every response has are set by the router's layers (routes/mod.rs).
    if path.starts_with("/api/") || vault {
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    log.status = Some(response.status());
    log.role = role;
    response
}

/// A request's access-log line (method, path, status, role, duration), written when the
/// request is done with, in the format and escaping the tests check. A request still being
/// handled when its client went away (its future dropped) has no status: it is logged with
/// nginx's 499 ("client closed request"), which a proxy's log would show.
struct AccessLog {
    method: Method,
    path: String,
    started: Instant,
    status: Option<StatusCode>,
    role: Option<String>,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Formatted first and written at once: the standard error stream is unbuffered, so
        // eprintln! would make a write(2) of every piece (a dozen per request).
        let line = format!(
            "pgvault serve: {} {} {} role={} {}ms\n",
            self.method,
            escape(&self.path),
            self.status.map_or(499, |s| s.as_u16()),
            self.role.as_deref().map(escape).unwrap_or_else(|| "-".into()),
            self.started.elapsed().as_millis()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// The `Authorization` header's token: None without the header, Err when it is not
/// `Bearer TOKEN`.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<Result<Zeroizing<String>, ()>> {
    let values = headers.get_all(header::AUTHORIZATION);
    values.iter().next()?;
    // Two Authorization headers: refused, not the first one taken (a proxy in front may read
    // the other).
    if values.iter().nth(1).is_some() {
        return Some(Err(()));
    }
    let typed = Authorization::<Bearer>::decode(&mut values.iter()).map_err(|_| ());
    Some(typed.and_then(|a| {
        let token = a.token().trim();
        if !token.is_empty() && !token.contains(char::is_whitespace) {
            Ok(Zeroizing::new(token.to_string()))
        } else {
            Err(())
        }
    }))
}

/// The token of a HashiCorp Vault request: `X-Vault-Token`, else `Authorization: Bearer`. None
/// when missing, repeated or malformed (all answered 403, as Vault does).
pub(crate) fn vault_token(headers: &HeaderMap) -> Option<Zeroizing<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn one_bearer_header_with_one_token() {
        let token = |v: &[&'static str]| bearer_token(&auth(v)).map(|r| r.map(|t| t.to_string()));
        assert_eq!(token(&[]), None);
        assert_eq!(token(&["Bearer pgv_abc"]), Some(Ok("pgv_abc".into())));
        assert_eq!(
            token(&["bearer pgv_abc"]),
            Some(Ok("pgv_abc".into())),
            "the scheme in any case"
        );
        assert_eq!(token(&["Basic dXNlcjpwdw=="]), Some(Err(())));
        assert_eq!(token(&["Bearer "]), Some(Err(())));
        assert_eq!(token(&["Bearer a b"]), Some(Err(())));
        assert_eq!(token(&["Bearer a", "Bearer b"]), Some(Err(())), "two headers");
    }

    #[test]
    fn the_vault_token_comes_from_x_vault_token_or_bearer_once() {
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
        assert!(is_vault_path("/v1/secret/data/x") && is_vault_path("/v1") && !is_vault_path("/v10"));
    }
}
