//! `pgvault serve`: the web console and its JSON API (SPEC §9), over HTTPS.
//!
//! Every request acts through the logged-in role's own database connection, opened at login
//! with the password the user typed (checked by the database) and the same connection options
//! as every pgvault command: the server holds no privileged connection and caches no value.
//! Values travel only in the bodies of `GET /api/v1/secrets/{name}` (marked no-store) and
//! `PUT`; nothing the server prints carries a value, a password, a cookie or a token.
//!
//! Services send `Authorization: Bearer TOKEN` instead (issue 18): the token is checked by the
//! database (`vault.api_token_role`, which compares hashes) on one of a few connections of the
//! server's own login role, which must not be a superuser and switches to the token's role
//! with `SET LOCAL ROLE` in the request's transaction, as PostgREST's authenticator does.

use crate::text::escape;
use crate::{conn, Failure};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use postgres::error::SqlState;
use postgres::{Client, Statement};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

mod vault_kv;

/// PostgreSQL's longest role name (NAMEDATALEN - 1).
const MAX_USER_BYTES: usize = 63;
/// Longer passwords are refused at login (see `login`).
const MAX_PASSWORD_BYTES: usize = 1024;
/// Logins checked by the database at the same time.
const LOGINS_AT_ONCE: usize = 4;
const COOKIE: &str = "pgvault_session";
/// The largest request body read (a secret of 1 MiB with room for JSON escapes).
const MAX_BODY: usize = 2 << 20;
/// How long a successful login keeps its address known for its user (see `reserve_login`).
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// What `pgvault serve` was asked for on its command line.
pub struct Options {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_http: bool,
    pub idle_timeout: Duration,
    pub max_login_failures: usize,
    pub login_window: Duration,
    /// The most connections of the server's own role kept for Bearer-token requests.
    pub token_connections: usize,
    /// Connections each session opens at login (at least 1), so that a user's parallel
    /// requests do not wait for each other.
    pub session_connections: usize,
    /// Sessions one role may hold at once; a new login past that ends its oldest.
    pub max_sessions_per_role: usize,
    /// Proxies whose `X-Forwarded-For` names the client (login limits, connection shares).
    pub trusted_proxies: Vec<IpAddr>,
    /// Connections open at once, in all and from one address (`limits`).
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Time for the TLS handshake and then the first request's head.
    pub first_request_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request's head.
    pub keepalive_timeout: Duration,
    /// The KV v2 mount of the Vault API under /v1/ (`vault_kv`).
    pub kv_mount: String,
}

/// A session's connection, with the statements prepared on it (see `db_prepared`) and whether
/// a request may have left a transaction open on it (it ended half way: a panic). The
/// synchronous client blocks when it closes, which must not happen on an async worker thread:
/// the last drop hands it to a thread of its own.
struct Conn(Option<Client>, Prepared, bool);

/// Statements prepared once on a connection, by their SQL text.
type Prepared = HashMap<&'static str, Statement>;

impl Conn {
    fn new(c: Client) -> Arc<Mutex<Conn>> {
        Arc::new(Mutex::new(Conn(Some(c), HashMap::new(), false)))
    }
}

/// Closes `c` without blocking the caller (see `Conn`).
fn close(c: Client) {
    drop(Conn(Some(c), Prepared::new(), false));
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            std::thread::spawn(move || drop(c));
        }
    }
}

/// One logged-in user: the role's own connection and the CSRF token the page must echo.
struct Session {
    user: String,
    csrf: String,
    client: Arc<Mutex<Conn>>,
    /// More connections of the same role (`--session-connections`), opened at login.
    more: Vec<Arc<Mutex<Conn>>>,
    next: AtomicUsize,
    last_used: Mutex<Instant>,
    /// Whether the role could read vault.secrets at login (vault_admin): its reads of a value
    /// then take the version in the same statement (see `get_secret`).
    versions: AtomicBool,
    /// The role lost LOGIN, expired, became a superuser or was dropped (see `MAY_LOG_IN`): the
    /// session is over, and is removed at its next lookup.
    ended: AtomicBool,
    /// Its connections' share of the file descriptors (`App::db_budget`), given back with it.
    _budget: tokio::sync::OwnedSemaphorePermit,
}

/// Whether the session's role may still log in, as a condition: LOGIN, not expired, neither a
/// superuser nor a member of one (false for a dropped role; `session_user` itself then fails
/// with 42704). Every request of a session checks it:
/// inside the BEGIN of a transaction's round trip, or inside the one statement of a value's GET.
macro_rules! may_log_in {
    () => {
        "COALESCE((SELECT r.rolcanlogin AND NOT r.rolsuper AND \
          (r.rolvaliduntil IS NULL OR r.rolvaliduntil OPERATOR(pg_catalog.>) pg_catalog.now()) \
          FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) session_user), false) \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles s \
          WHERE s.rolsuper AND pg_catalog.pg_has_role(session_user, s.oid, 'MEMBER'))"
    };
}
const MAY_LOG_IN: &str = may_log_in!();

impl Session {
    /// A connection of this session for one request: one that is free right now if there is
    /// one, else the next in turn (the request then waits for it).
    fn pick(&self) -> Arc<Mutex<Conn>> {
        let all = || std::iter::once(&self.client).chain(self.more.iter());
        // A connection whose last request panicked is free too (`db_prepared` cleans it up).
        let free = |c: &&Arc<Mutex<Conn>>| matches!(c.try_lock(), Ok(_) | Err(TryLockError::Poisoned(_)));
        if let Some(free) = all().find(free) {
            return free.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % (1 + self.more.len());
        all().nth(n).unwrap_or(&self.client).clone()
    }
}

struct App {
    target: conn::Target,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Login attempts (see `reserve_login`): failures within the window and those in flight.
    failures: Mutex<HashMap<LoginKey, Attempts>>,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    trusted_proxies: Vec<IpAddr>,
    /// Addresses each user logged in from lately: the user's limit over all addresses does not
    /// lock them out there (see `reserve_login`).
    known: Mutex<HashMap<(IpAddr, String), Instant>>,
    /// The open connections (`limits`).
    limits: Arc<crate::limits::Limits>,
    /// Time for a request's body (`--first-request-timeout`).
    body_timeout: Duration,
    /// Database connections the file descriptors allow for sessions (`limits`): a login takes
    /// its session's and the password check's before it connects.
    db_budget: Arc<Semaphore>,
    idle_timeout: Duration,
    max_login_failures: usize,
    login_window: Duration,
    tokens: TokenPool,
    session_connections: usize,
    max_sessions_per_role: usize,
    /// Logins being checked at once (see `login`).
    login_slots: Arc<Semaphore>,
    /// The KV v2 mount of the Vault API (`--kv-mount`).
    kv_mount: String,
}

/// What login attempts are counted by: an address and a user, an address over all users, or
/// a user over all addresses.
type LoginKey = (Option<IpAddr>, Option<String>);

/// One key's logins: when the recent ones failed, and how many are being checked now.
#[derive(Default)]
struct Attempts {
    failed: Vec<Instant>,
    in_flight: usize,
}

/// A login attempt counted against its limits until it is over (also when the request is
/// dropped half way): the address and user's, and the address's over all users; `failed`
/// records the outcome.
struct Reserved<'a> {
    app: &'a App,
    keys: [LoginKey; 3],
    failed: bool,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let mut all = lock(&self.app.failures);
        for key in &self.keys {
            let a = all.entry(key.clone()).or_default();
            a.in_flight = a.in_flight.saturating_sub(1);
            if self.failed {
                a.failed.push(Instant::now());
            } else if a.in_flight == 0 && a.failed.is_empty() {
                all.remove(key);
            }
        }
    }
}

/// The connections of the server's own login role (its connection options), for Bearer-token
/// requests: at most `slots` at once, idle ones kept for the next request.
struct TokenPool {
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Client>>,
}

/// Who a request acts for: the session its cookie names, or the Bearer token it carries.
#[derive(Clone)]
struct Auth {
    session: Option<Arc<Session>>,
    token: Option<Arc<Zeroizing<String>>>,
    app: Arc<App>,
    /// The role a token turned out to act as (for the access log).
    acted: Arc<Mutex<Option<String>>>,
}

/// The authority one request runs with.
enum Who {
    Session(Arc<Session>),
    Token {
        app: Arc<App>,
        token: Arc<Zeroizing<String>>,
        acted: Arc<Mutex<Option<String>>>,
    },
}

/// The role a response was made for, for the access log.
#[derive(Clone)]
struct LoggedRole(String);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An API error: a status and `{"error", "sqlstate"}`; never a value.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    sqlstate: Option<String>,
    hint: Option<String>,
    /// The session's role may no longer log in: the session ends with this answer.
    ended: bool,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, sqlstate: Option<&str>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            sqlstate: sqlstate.map(str::to_string),
            hint: None,
            ended: false,
        }
    }
    fn session_ended() -> ApiError {
        ApiError {
            ended: true,
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this role may no longer log in (LOGIN removed, expired or dropped): the session has ended",
                None,
            )
        }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message, Some("22023"))
    }
    fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not logged in (or the session expired)", None)
    }
    /// One answer for every token that does not act: unknown, expired, revoked or malformed.
    fn bad_token() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid token: unknown, expired or revoked",
            None,
        )
    }
    fn not_found(name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no secret named {name}"), Some("P0002"))
    }
}

/// The HTTP status for a SQLSTATE.
fn status_of(sqlstate: &str) -> StatusCode {
    match sqlstate {
        "42501" => StatusCode::FORBIDDEN,
        "P0002" | "42704" => StatusCode::NOT_FOUND,
        "40001" | "23505" => StatusCode::CONFLICT,
        "28P01" | "28000" => StatusCode::UNAUTHORIZED,
        s if s.starts_with("22") || s == "23502" || s == "23514" => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<postgres::Error> for ApiError {
    fn from(e: postgres::Error) -> ApiError {
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
        let mut body = json!({"error": self.message, "sqlstate": self.sqlstate});
        if let Some(h) = self.hint {
            body["hint"] = Value::String(h);
        }
        json_response(self.status, &body)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn random_hex() -> Result<String, ApiError> {
    let mut buf = [0u8; 32];
    openssl::rand::rand_bytes(&mut buf)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness", None))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

impl App {
    /// The live session named by the request's cookie; an idle one is ended here.
    fn session(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
        let id = cookie_value(headers)?;
        let mut sessions = lock(&self.sessions);
        let s = sessions.get(&id)?.clone();
        let mut last = lock(&s.last_used);
        if last.elapsed() > self.idle_timeout || s.ended.load(Ordering::Relaxed) {
            drop(last);
            sessions.remove(&id);
            return None;
        }
        *last = Instant::now();
        drop(last);
        Some(s)
    }

    /// Ends the role's least recently used session; false when it has none here.
    fn end_oldest_session(&self, user: &str) -> bool {
        let mut sessions = lock(&self.sessions);
        let oldest = sessions
            .iter()
            .filter(|(_, s)| s.user == user)
            .min_by_key(|(_, s)| *lock(&s.last_used))
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| sessions.remove(&k).is_some())
    }

    fn sweep(&self) {
        let timeout = self.idle_timeout;
        lock(&self.sessions).retain(|_, s| lock(&s.last_used).elapsed() <= timeout && !s.ended.load(Ordering::Relaxed));
        lock(&self.known).retain(|_, t| t.elapsed() < KNOWN_FOR);
        let window = self.login_window;
        lock(&self.failures).retain(|_, a| {
            a.failed.retain(|t| t.elapsed() < window);
            !a.failed.is_empty() || a.in_flight > 0
        });
    }

    /// Checks the limits and counts this attempt in them, in one step: failures within the
    /// window plus attempts still being checked, per address and user (`max_login_failures`),
    /// per address over all users and per user over all addresses (four times that each). A
    /// burst of parallel logins cannot all pass the check before the first of them fails;
    /// someone guessing at one user's password from an address does not lock the other users
    /// there out; guesses spread over many addresses still meet the user's limit, except at an
    /// address the user logged in from within a day (so whoever guesses from elsewhere cannot
    /// lock the user out of the places they use). None: over a limit.
    fn reserve_login(&self, ip: IpAddr, user: &str) -> Option<Reserved<'_>> {
        let window = self.login_window;
        let keys = [
            (Some(ip), Some(user.to_string())),
            (Some(ip), None),
            (None, Some(user.to_string())),
        ];
        let many = self.max_login_failures.saturating_mul(4);
        let known = lock(&self.known)
            .get(&(ip, user.to_string()))
            .is_some_and(|t| t.elapsed() < KNOWN_FOR);
        let limits = [self.max_login_failures, many, if known { usize::MAX } else { many }];
        let mut all = lock(&self.failures);
        for (key, limit) in keys.iter().zip(limits) {
            let a = all.entry(key.clone()).or_default();
            a.failed.retain(|t| t.elapsed() < window);
            if a.failed.len() + a.in_flight >= limit {
                return None;
            }
        }
        for key in &keys {
            all.entry(key.clone()).or_default().in_flight += 1;
        }
        Some(Reserved {
            app: self,
            keys,
            failed: false,
        })
    }
}

/// Every request: the session from the cookie, the CSRF check for state-changing methods,
/// the security headers, one access-log line (method, path, status, role, duration).
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The whole body within --first-request-timeout (issue 26: a body trickled a byte at a time
    // held its connection for good). Only then does the connection count as handling a request,
    // which keeps it from being closed to make room for another (`limits`).
    let (parts, body) = req.into_parts();
    let (mut req, unreadable) = match tokio::time::timeout(app.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(bytes)) => (Request::from_parts(parts, Body::from(bytes)), None),
        Ok(Err(_)) => (
            Request::from_parts(parts, Body::empty()),
            Some(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes, or was cut off"),
                None,
            )),
        ),
        Err(_) => (
            Request::from_parts(parts, Body::empty()),
            Some(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
                None,
            )),
        ),
    };
    let _busy = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .filter(|_| unreadable.is_none())
        .map(|ConnectInfo(peer)| app.limits.busy(*peer));
    // A Bearer request is the token's alone: it needs no CSRF token (a browser does not add
    // the header on its own), and one that also carries a session cookie is refused rather
    // than guessing which of the two it meant.
    // HashiCorp Vault's API reads its own token header and never a cookie (vault_kv).
    let vault = vault_kv::is_vault_path(&path);
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
        let close = matches!(e.status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT);
        let mut r = if vault {
            e.into_vault_response()
        } else {
            e.into_response()
        };
        if close {
            // What is left of the body is not read: the connection cannot carry another request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    });
    let mut role = session.as_ref().map(|s| s.user.clone());
    if response.is_none() {
        let acted = Arc::new(Mutex::new(None));
        req.extensions_mut().insert(Auth {
            session,
            token: bearer.and_then(Result::ok).map(Arc::new),
            app: app.clone(),
            acted: acted.clone(),
        });
        let r = next.run(req).await;
        if let Some(LoggedRole(r)) = r.extensions().get::<LoggedRole>() {
            role = Some(r.clone());
        }
        if let Some(r) = lock(&acted).take() {
            role = Some(format!("{r} (token)"));
        }
        response = Some(r);
    }
    let mut response = response.unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if path.starts_with("/api/") || vault {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Formatted first and written at once: the standard error stream is unbuffered, so
    // eprintln! would make a write(2) of every piece (a dozen per request).
    let line = format!(
        "pgvault serve: {method} {} {} role={} {}ms\n",
        escape(&path),
        response.status().as_u16(),
        role.as_deref().map(crate::text::escape).unwrap_or_else(|| "-".into()),
        started.elapsed().as_millis()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    response
}

/// The `Authorization` header's token: None without the header, Err when it is not
/// `Bearer TOKEN`.
fn bearer_token(headers: &HeaderMap) -> Option<Result<Zeroizing<String>, ()>> {
    let v = headers.get(header::AUTHORIZATION)?;
    // Two Authorization headers: refused, not the first one taken (a proxy in front may read
    // the other).
    if headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some() {
        return Some(Err(()));
    }
    let v = v.to_str().map_err(|_| ());
    Some(v.and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ').ok_or(())?;
        let token = token.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(char::is_whitespace) {
            Ok(Zeroizing::new(token.to_string()))
        } else {
            Err(())
        }
    }))
}

/// How a request's statements run on a session's connection (a token's request is always
/// one transaction: its role is set with SET LOCAL ROLE).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// BEGIN ... COMMIT around them: several statements see one snapshot and change together.
    Wrapped,
    /// `f` runs exactly one statement, which is a transaction of its own: two round trips
    /// fewer, for the hot read path.
    OneStatement,
}

/// A session's request in one transaction, begun in the same round trip as the check that its
/// role may still log in (`MAY_LOG_IN`).
fn session_transaction<T>(c: &mut Client, f: impl FnOnce(&mut Client) -> Result<T, ApiError>) -> Result<T, ApiError> {
    let begun = c.simple_query(&format!("BEGIN; SELECT {MAY_LOG_IN}"));
    let may = matches!(&begun, Ok(m) if m.iter().any(|m| matches!(m,
        postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))));
    if !may {
        if !c.is_closed() {
            let _ = c.batch_execute("ROLLBACK");
        }
        return match begun {
            Err(e) if e.as_db_error().is_none() => Err(e.into()),
            _ => Err(ApiError::session_ended()),
        };
    }
    match f(c) {
        Ok(v) => {
            c.batch_execute("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            if !c.is_closed() {
                let _ = c.batch_execute("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// Ok when the session's role may still log in; the session's end otherwise (also when the
/// check fails in the database: a dropped role's `session_user`).
fn role_may_log_in(c: &mut Client) -> Result<(), ApiError> {
    match c.query_one(&format!("SELECT {MAY_LOG_IN}"), &[]) {
        Ok(r) if r.get::<_, bool>(0) => Ok(()),
        Err(e) if e.as_db_error().is_none() => Err(e.into()),
        _ => Err(ApiError::session_ended()),
    }
}

/// A role name as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TokenPool {
    /// An idle connection of the server's own role (`false`), or a new one (`true`): never a
    /// superuser's.
    fn take(&self, target: &conn::Target) -> Result<(Client, bool), ApiError> {
        while let Some(c) = lock(&self.idle).pop() {
            if !c.is_closed() {
                return Ok((c, false));
            }
            close(c);
        }
        let mut c = conn::connect(target).map_err(|f| {
            eprintln!(
                "pgvault serve: tokens: cannot connect as the server's own role: {}",
                escape(f.message())
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tokens are not available: the server cannot reach the database (see the server's output)",
                None,
            )
        })?;
        let superuser: bool = c
            .query_one(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) session_user",
                &[],
            )?
            .get(0);
        if superuser {
            close(c);
            return Err(superuser_unavailable(target.user()));
        }
        Ok((c, true))
    }

    /// Back to the pool, with nothing of the request left on it: `DISCARD ALL` resets every
    /// setting, role, temporary table, lock and prepared statement a request could have left.
    fn give(&self, mut c: Client) {
        if !c.is_closed() && c.batch_execute("DISCARD ALL").is_ok() {
            lock(&self.idle).push(c);
        } else {
            close(c);
        }
    }

    /// A transaction for one Bearer request: `BEGIN` and a search_path of pg_catalog only, so no
    /// name in the server's queries resolves to an object a token role (or anyone) created; the
    /// role is switched after that by `act_as_token`. An idle connection that fails here (the
    /// database restarted under it) is dropped and the next one, or a new one, is tried.
    fn begin(&self, target: &conn::Target) -> Result<Client, ApiError> {
        loop {
            let (mut c, new) = self.take(target)?;
            match c.batch_execute("BEGIN; SET LOCAL search_path = pg_catalog, pg_temp") {
                Ok(()) => return Ok(c),
                Err(_) if !new => close(c),
                Err(e) => {
                    close(c);
                    return Err(e.into());
                }
            }
        }
    }
}

/// Idle connections are dropped on a thread of their own (see `Conn`), also when the server stops.
impl Drop for TokenPool {
    fn drop(&mut self) {
        for c in std::mem::take(&mut *lock(&self.idle)) {
            close(c);
        }
    }
}

/// 503 for a token request while the server's own role is a superuser (said on the server's output).
fn superuser_unavailable(user: &str) -> ApiError {
    eprintln!("pgvault serve: tokens: {}", superuser_refusal(user));
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "this server does not accept tokens: its own database role is a superuser (see the server's output)",
        None,
    )
}

fn superuser_refusal(user: &str) -> String {
    format!(
        "Bearer tokens refused: the server's own role \"{}\" is a superuser, and a token must never act \
         as one; connect as a login role that is a NOINHERIT member of the token roles \
         (CREATE ROLE authenticator LOGIN NOINHERIT; GRANT token_role TO authenticator)",
        escape(user)
    )
}

/// Checks `token` in the database and switches to its role for the rest of the transaction.
fn act_as_token(c: &mut Client, token: &str) -> Result<String, ApiError> {
    let row = c
        .query_one(
            "SELECT r::pg_catalog.text, pg_catalog.pg_has_role(session_user, r, 'MEMBER'), \
                    (SELECT u.rolsuper FROM pg_catalog.pg_roles u WHERE u.rolname OPERATOR(pg_catalog.=) session_user), \
                    session_user::pg_catalog.text \
               FROM vault.api_token_role($1) AS r",
            &[&token],
        )
        .map_err(|e| match e.code().map(|c| c.code()) {
            // The server's role cannot call the check at all: a setup problem, not the token's.
            Some(code @ ("42501" | "3F000" | "42883")) => {
                eprintln!(
                    "pgvault serve: tokens: the server's own role cannot call vault.api_token_role ({code}: {}); \
                     it needs vault_ext 0.2 and GRANT USAGE ON SCHEMA vault TO that role",
                    escape(e.as_db_error().map(|d| d.message()).unwrap_or_default())
                );
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this server cannot check tokens (see the server's output)",
                    None,
                )
            }
            _ => ApiError::from(e),
        })?;
    // Checked per request, not only when the connection was made: the role may have become a
    // superuser since, and a token must never act through one.
    if row.get::<_, Option<bool>>(2) == Some(true) {
        return Err(superuser_unavailable(&row.get::<_, String>(3)));
    }
    let Some(role) = row.get::<_, Option<String>>(0) else {
        return Err(ApiError::bad_token());
    };
    if row.get::<_, Option<bool>>(1) != Some(true) {
        let login: String = c.query_one("SELECT session_user::text", &[])?.get(0);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token acts as role {role}, which the server's own role {login} may not become: \
                 GRANT {} TO {} (a superuser or the role's admin does)",
                quote_ident(&role),
                quote_ident(&login)
            ),
            Some("42501"),
        ));
    }
    c.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(&role)))?;
    Ok(role)
}

/// Runs `f` for the request, off the async threads and in one transaction: on the session's
/// own connection, or on a connection of the server's pool switched to the token's role.
async fn db<T, F>(who: &Who, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Client) -> Result<T, ApiError> + Send + 'static,
{
    db_prepared(who, Tx::Wrapped, move |c, _| f(c)).await
}

/// Like `db`, with the connection's prepared statements (`query_one_row`): a request that runs the
/// same statement every time skips parsing and planning, and a round trip. A session keeps
/// them on its connections; a token request's connection is reset (`DISCARD ALL`) after it, so
/// its statements last for the request only.
async fn db_prepared<T, F>(who: &Who, tx: Tx, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Client, &mut Prepared) -> Result<T, ApiError> + Send + 'static,
{
    let internal = |_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None);
    match who {
        Who::Session(s) => {
            let client = s.pick();
            let session = s.clone();
            tokio::task::spawn_blocking(move || {
                let mut guard = lock(&client);
                let Conn(client, statements, open) = &mut *guard;
                let Some(c) = client.as_mut() else {
                    return Err(ApiError::unauthorized());
                };
                let lost = || {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "the database connection of this session was lost: log in again",
                        None,
                    )
                };
                if c.is_closed() {
                    return Err(lost());
                }
                // The last request on this connection ended half way (it panicked inside its
                // transaction): what it did must not be committed by this one.
                if *open {
                    if c.batch_execute("ROLLBACK").is_err() {
                        *client = None;
                        return Err(lost());
                    }
                    *open = false;
                }
                *open = true;
                let result = match tx {
                    Tx::Wrapped => session_transaction(c, |c| f(c, statements)),
                    // The statement holds the check (`GET_SECRET`): it found no row either
                    // because there is none or because the role may no longer log in; and a
                    // dropped role fails it (42501, 42704). Any failure is checked once more.
                    Tx::OneStatement => match f(c, statements) {
                        Err(e) if !e.ended && !c.is_closed() => match role_may_log_in(c) {
                            Ok(()) => Err(e),
                            Err(ended) => Err(ended),
                        },
                        other => other,
                    },
                };
                *open = false;
                if matches!(&result, Err(e) if e.ended) {
                    session.ended.store(true, Ordering::Relaxed);
                    *client = None;
                }
                result
            })
            .await
            .map_err(internal)?
        }
        Who::Token { app, token, acted } => {
            let permit = app
                .tokens
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping", None))?;
            let (app, token, acted) = (app.clone(), token.clone(), acted.clone());
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let mut c = app.tokens.begin(&app.target)?;
                let mut statements = Prepared::new();
                let result = act_as_token(&mut c, &token).and_then(|role| {
                    *lock(&acted) = Some(role);
                    f(&mut c, &mut statements)
                });
                drop(statements);
                let result = match result {
                    Ok(v) => c.batch_execute("COMMIT").map(|()| v).map_err(ApiError::from),
                    Err(e) => {
                        if !c.is_closed() {
                            let _ = c.batch_execute("ROLLBACK");
                        }
                        Err(e)
                    }
                };
                app.tokens.give(c);
                result
            })
            .await
            .map_err(internal)?
        }
    }
}

fn need(auth: &Auth) -> Result<Who, ApiError> {
    match (&auth.token, &auth.session) {
        (Some(token), _) => Ok(Who::Token {
            app: auth.app.clone(),
            token: token.clone(),
            acted: auth.acted.clone(),
        }),
        (None, Some(s)) => Ok(Who::Session(s.clone())),
        (None, None) => Err(ApiError::unauthorized()),
    }
}

/// A JSON object body (Content-Type application/json: a cross-site form cannot send one).
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be JSON with Content-Type: application/json",
            Some("22023"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::bad("the body is not a JSON object")),
    }
}

fn opt_string(m: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad(format!("\"{key}\" must be a string"))),
    }
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ip = client_address(&app.trusted_proxies, peer.ip(), &headers);
    let m = json_body(&headers, &body)?;
    let user = opt_string(&m, "user")?.unwrap_or_default();
    let password = Zeroizing::new(opt_string(&m, "password")?.unwrap_or_default());
    if user.is_empty() || password.is_empty() {
        return Err(ApiError::bad("give \"user\" and \"password\""));
    }
    // Longer names are cut by PostgreSQL (so the typed name would not be the role's), and the
    // client's SCRAM proof costs time in proportion to the password's length: a megabyte took
    // minutes of CPU. Refused before anything is counted or connected.
    if user.len() > MAX_USER_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad(format!(
            "a user name has at most {MAX_USER_BYTES} bytes and a password at most {MAX_PASSWORD_BYTES}"
        )));
    }
    // PostgreSQL names and passwords cannot hold a NUL byte (the driver refused it with 500).
    if user.contains('\0') || password.contains('\0') {
        return Err(ApiError::bad("a user name or password cannot contain a NUL byte"));
    }
    let Some(mut attempt) = app.reserve_login(ip, &user) else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address or for this user: wait a minute and try again",
            None,
        ));
    };
    // A few logins at a time: each opens its connections before older sessions of the role are
    // ended, so a flood of parallel logins could otherwise fill the database for a while.
    let _slot = app
        .login_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping", None))?;
    // The session's connections and the password check's, from what the file descriptors allow
    // (before connecting: past the open-file limit the driver fails, and a panic answered 500).
    let extra = app.session_connections.saturating_sub(1);
    let room = |n: usize| {
        app.db_budget.clone().try_acquire_many_owned(n as u32).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server has no room for another session's database connections right now: try again later",
                None,
            )
        })
    };
    let budget = room(1 + extra)?;
    let probe_budget = room(1)?;
    let target = app.target.as_login(&user, &password);
    drop(password);
    let more_target = target.clone();
    let connect = |target: conn::Target| async move {
        tokio::task::spawn_blocking(move || conn::connect(&target))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None))
    };
    let mut result: Result<Client, Failure> = connect(target.clone()).await?;
    // The role is at its CONNECTION LIMIT, partly with this server's sessions: PostgreSQL checks
    // that limit only after the password was accepted, so this login is the role's own. Its
    // oldest session here makes room (as past --max-sessions-per-role); its backends take a
    // moment to exit.
    if result.as_ref().err().is_some_and(role_limit_reached) && app.end_oldest_session(&user) {
        for pause in [25, 50, 100, 200, 400, 800, 1600] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            result = connect(target.clone()).await?;
            if !result.as_ref().err().is_some_and(role_limit_reached) {
                break;
            }
        }
    }
    drop(target);
    // Held so that a request dropped half way (the client gave up) closes it off the async
    // threads (see `Conn`): the synchronous driver cannot close on them.
    let mut client = match result {
        Ok(c) => Conn(Some(c), Prepared::new(), false),
        Err(f) if matches!(f.sqlstate(), Some("28P01" | "28000")) => {
            attempt.failed = true;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong user or password",
                Some("28P01"),
            ));
        }
        Err(f) => {
            // Counted too: with the database full, a right password gets this answer and a
            // wrong one 401, so these attempts must not be free.
            attempt.failed = true;
            eprintln!("pgvault serve: login failed: {}", escape(f.message()));
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot connect to the database (see the server's output)",
                f.sqlstate(),
            ));
        }
    };
    // The database let this role in: but did it check the password? Under trust, peer, ident
    // or a client certificate of the server's, any password gets in (issue 26). The same login
    // with a password nobody knows tells: it must be refused for a failed authentication.
    let probe = app.target.as_login(&user, &random_hex()?);
    let probed = tokio::task::spawn_blocking(move || {
        let r = conn::connect(&probe).map(|c| Conn(Some(c), Prepared::new(), false));
        drop(probe);
        r
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None))?;
    drop(probe_budget);
    match probed {
        Err(f) if matches!(f.sqlstate(), Some("28P01" | "28000")) => {}
        Ok(probe) => {
            drop((probe, client));
            attempt.failed = true;
            eprintln!(
                "pgvault serve: refused a console login as {}: the database lets this role in without checking \
                 its password (pg_hba.conf trust, peer, ident or a client certificate); the console needs a \
                 password method such as scram-sha-256 for it",
                escape(&user)
            );
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong user or password",
                Some("28P01"),
            ));
        }
        Err(f) => {
            drop(client);
            eprintln!(
                "pgvault serve: cannot confirm that the database checked the password of {}: {}",
                escape(&user),
                escape(f.message())
            );
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot confirm the login with the database right now: try again",
                f.sqlstate(),
            ));
        }
    }
    // A success does not wipe the address's failures: one valid account would otherwise
    // reset the limit for guessing others' passwords.
    drop(attempt);
    let (client, more, rights) = tokio::task::spawn_blocking(move || {
        // The console is for vault roles: a superuser (or a role that may become one) would
        // hold every secret and the server itself behind a browser cookie.
        let r = match client.0.as_mut() {
            Some(c) => refuse_superuser(c).and_then(|()| rights(c)),
            None => Err(ApiError::unauthorized()),
        };
        let mut more = Vec::new();
        if r.is_ok() {
            for _ in 0..extra {
                match conn::connect(&more_target) {
                    Ok(c) => more.push(Conn::new(c)),
                    Err(f) => {
                        eprintln!(
                            "pgvault serve: an extra session connection failed: {}",
                            escape(f.message())
                        );
                        break;
                    }
                }
            }
        }
        drop(more_target);
        (Arc::new(Mutex::new(client)), more, r)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None))?;
    let (rights, versions) = rights?;
    let id = random_hex()?;
    let csrf = random_hex()?;
    let session = Arc::new(Session {
        user: user.clone(),
        csrf: csrf.clone(),
        client,
        more,
        next: AtomicUsize::new(0),
        last_used: Mutex::new(Instant::now()),
        versions: AtomicBool::new(versions),
        ended: AtomicBool::new(false),
        _budget: budget,
    });
    lock(&app.known).insert((ip, user.clone()), Instant::now());
    {
        // At most max_sessions_per_role sessions per role (the oldest in use goes): each holds
        // database connections, and one account must not use up max_connections.
        let mut sessions = lock(&app.sessions);
        let mut mine: Vec<(String, Instant)> = sessions
            .iter()
            .filter(|(_, s)| s.user == user)
            .map(|(k, s)| (k.clone(), *lock(&s.last_used)))
            .collect();
        if mine.len() >= app.max_sessions_per_role {
            mine.sort_by_key(|(_, used)| *used);
            for (k, _) in mine.iter().take(mine.len() + 1 - app.max_sessions_per_role) {
                sessions.remove(k);
            }
        }
        sessions.insert(id.clone(), session);
    }
    let mut r = json_response(
        StatusCode::OK,
        &json!({"user": user, "csrf_token": csrf, "rights": rights}),
    );
    let cookie = format!("{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/");
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex cookie"));
    r.extensions_mut().insert(LoggedRole(user));
    Ok(r)
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the one the nearest proxy saw; the
/// entries before it are the client's own claims). A header that does not parse is ignored.
fn client_address(trusted: &[IpAddr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(a) if trusted.contains(&a) => continue,
            Ok(a) => return a,
            Err(_) => return peer,
        }
    }
    peer
}

/// PostgreSQL refused a connection because the role has as many as its CONNECTION LIMIT
/// allows (53300 is also "too many clients" for the whole server, checked before the password;
/// the role's limit is told apart by its message).
fn role_limit_reached(f: &Failure) -> bool {
    f.sqlstate() == Some("53300") && f.message().contains("too many connections for role")
}

/// 403 for a role that is, or is a member of, a superuser.
fn refuse_superuser(c: &mut Client) -> Result<(), ApiError> {
    let superuser: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r \
                             WHERE r.rolsuper AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER'))",
            &[],
        )?
        .get(0);
    if superuser {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "superusers cannot log in to the console: use a role with vault_admin (or vault_reader, vault_viewer)",
            Some("42501"),
        ));
    }
    Ok(())
}

/// What the role may do, so the page offers only that, and whether it may read vault.secrets.
fn rights(c: &mut Client) -> Result<(Value, bool), ApiError> {
    let r = c.query_one(
        "SELECT pg_has_role('vault_viewer', 'USAGE'), pg_has_role('vault_reader', 'USAGE'), \
                pg_has_role('vault_admin', 'USAGE'), \
                CASE WHEN has_schema_privilege('vault', 'USAGE') \
                     THEN has_table_privilege('vault.key_status', 'SELECT') ELSE false END, \
                CASE WHEN has_schema_privilege('vault', 'USAGE') \
                     THEN has_function_privilege('vault.verify_secrets()', 'EXECUTE') ELSE false END, \
                CASE WHEN has_schema_privilege('vault', 'USAGE') \
                     THEN has_table_privilege('vault.secrets', 'SELECT') ELSE false END",
        &[],
    )?;
    Ok((
        json!({"view": r.get::<_, bool>(0), "read": r.get::<_, bool>(1), "admin": r.get::<_, bool>(2),
              "keys": r.get::<_, bool>(3), "verify": r.get::<_, bool>(4)}),
        r.get::<_, bool>(5),
    ))
}

async fn whoami(Extension(auth): Extension<Auth>) -> Result<Response, ApiError> {
    let who = need(&auth)?;
    let (rights, versions) = db(&who, rights).await?;
    let body = match &who {
        Who::Session(s) => {
            s.versions.store(versions, Ordering::Relaxed);
            json!({"user": s.user, "csrf_token": s.csrf, "rights": rights})
        }
        Who::Token { acted, .. } => json!({"user": lock(acted).clone(), "token": true, "rights": rights}),
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers) {
        lock(&app.sessions).remove(&id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pgvault_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

/// Metadata of the secrets with every tag in `tags` (and the name `name`, when given).
/// A tags column: a NULL element (a restored dump can hold one) is left out. Every reader of
/// tags, the CLI's too, goes through this.
pub fn tags_of(r: &postgres::Row, i: usize) -> Vec<String> {
    r.get::<_, Option<Vec<Option<String>>>>(i)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

fn metadata(c: &mut Client, tags: &[String], name: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let rows = c.query(
        "SELECT id::text, name, description, coalesce(masked_secret, ''), tags, \
                to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                coalesce(expires_at <= now(), false), coalesce(expires_at <= now() + interval '7 days', false) \
           FROM vault.masked_secrets \
          WHERE tags OPERATOR(pg_catalog.@>) $1::text[] AND ($2::text IS NULL OR name = $2) \
          ORDER BY name NULLS LAST, id",
        &[&tags, &name],
    )?;
    // Versions are in vault.secrets, which only vault_admin may read.
    let mut versions: HashMap<String, i32> = HashMap::new();
    let may: bool = c
        .query_one("SELECT has_table_privilege('vault.secrets', 'SELECT')", &[])?
        .get(0);
    if may {
        for r in c.query(
            "SELECT id::text, version FROM vault.secrets WHERE ($1::text IS NULL OR name = $1)",
            &[&name],
        )? {
            versions.insert(r.get(0), r.get(1));
        }
    }
    Ok(rows
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            json!({
                "id": id,
                "name": r.get::<_, Option<String>>(1),
                "description": r.get::<_, String>(2),
                "masked": r.get::<_, String>(3),
                "tags": tags_of(r, 4),
                "expires_at": r.get::<_, Option<String>>(5),
                "updated_at": r.get::<_, String>(6),
                "expired": r.get::<_, bool>(7),
                "expiring_soon": r.get::<_, bool>(8),
                "version": versions.get(&id),
            })
        })
        .collect())
}

async fn list(Extension(auth): Extension<Auth>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let tags: Vec<String> = q.into_iter().filter(|(k, _)| k == "tag").map(|(_, v)| v).collect();
    let items = db(&s, move |c| metadata(c, &tags, None)).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(items)))
}

/// The value and metadata of one secret in one statement, for the hot read path. The value is
/// decrypted once (the mask is made from it): the view's column is read in a subquery that
/// OFFSET 0 keeps from being merged into the outer query, where it would be computed (and, with
/// vault.audit_reads, audited) once per use. A session's statement holds `MAY_LOG_IN` as a
/// one-time filter (nothing is decrypted for a role that may no longer log in, and no round trip
/// is added). Column 10 says whether the role may read
/// vault.secrets, where the version is (vault_admin).
macro_rules! get_secret_sql {
    ($last:literal, $gate:expr) => {
        concat!(
            "SELECT d.v, d.id::text, d.name, d.description, coalesce(vault.mask(d.v), ''), d.tags, \
                    to_char(d.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    to_char(d.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    coalesce(d.expires_at <= now(), false), \
                    coalesce(d.expires_at <= now() + interval '7 days', false), ",
            $last,
            " FROM (SELECT s.decrypted_secret AS v, s.id, s.name, s.description, s.tags, s.expires_at, \
                           s.updated_at \
                      FROM vault.decrypted_secrets s WHERE s.name = $1 AND ",
            $gate,
            " OFFSET 0) d"
        )
    };
}
const GET_SECRET: &str = get_secret_sql!("has_table_privilege('vault.secrets', 'SELECT')", may_log_in!());
/// A token's read: its transaction checks the token, not the server role's login.
const GET_SECRET_AS_TOKEN: &str = get_secret_sql!("has_table_privilege('vault.secrets', 'SELECT')", "true");
/// The same with the version (column 11) from the same snapshot: only for a role that may read
/// vault.secrets (others get 42501 from it).
const GET_SECRET_VERSIONED: &str = get_secret_sql!(
    "true, (SELECT s.version FROM vault.secrets s WHERE s.id = d.id)",
    may_log_in!()
);
const VERSION_OF: &str = "SELECT version FROM vault.secrets WHERE id = $1::text::uuid";

/// `sql` with one parameter, prepared on this connection the first time it runs there.
fn query_one_row(
    c: &mut Client,
    statements: &mut Prepared,
    sql: &'static str,
    param: &str,
) -> Result<Option<postgres::Row>, postgres::Error> {
    let st = match statements.get(sql) {
        Some(st) => st.clone(),
        None => {
            let st = c.prepare(sql)?;
            statements.insert(sql, st.clone());
            st
        }
    };
    c.query_opt(&st, &[&param])
}

async fn get_secret(Extension(auth): Extension<Auth>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    // A session reads with one statement outside BEGIN/COMMIT (two round trips fewer); a role
    // that could read vault.secrets at login (or at its last GET /api/v1/session) gets the
    // version in that statement. A token's request is one transaction anyway (SET LOCAL ROLE),
    // so it asks for the version with a second statement when the role may read it.
    let session = match &s {
        Who::Session(sess) => Some(sess.clone()),
        Who::Token { .. } => None,
    };
    let tx = if session.is_some() {
        Tx::OneStatement
    } else {
        Tx::Wrapped
    };
    let body = db_prepared(&s, tx, move |c, statements| {
        let versioned = session.as_ref().is_some_and(|s| s.versions.load(Ordering::Relaxed));
        let row = if versioned {
            match query_one_row(c, statements, GET_SECRET_VERSIONED, &name) {
                Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                    // vault_admin was revoked since login: read as the role is now.
                    if let Some(s) = &session {
                        s.versions.store(false, Ordering::Relaxed);
                    }
                    query_one_row(c, statements, GET_SECRET, &name)?
                }
                other => other?,
            }
        } else if session.is_some() {
            query_one_row(c, statements, GET_SECRET, &name)?
        } else {
            query_one_row(c, statements, GET_SECRET_AS_TOKEN, &name)?
        };
        let Some(r) = row else {
            return Err(ApiError::not_found(&name));
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
        let id: String = r.get(1);
        let may_read_versions = r.get::<_, bool>(10);
        let version: Option<i32> = if r.len() > 11 {
            r.get(11)
        } else if session.is_none() && may_read_versions {
            query_one_row(c, statements, VERSION_OF, &id)?.map(|v| v.get(0))
        } else {
            // A session whose role became able to read versions after login: from its next
            // read on (one statement, one snapshot).
            if let Some(s) = &session {
                s.versions.store(may_read_versions, Ordering::Relaxed);
            }
            None
        };
        let meta = json!({
            "id": id,
            "name": r.get::<_, Option<String>>(2),
            "description": r.get::<_, String>(3),
            "masked": r.get::<_, String>(4),
            "tags": tags_of(&r, 5),
            "expires_at": r.get::<_, Option<String>>(6),
            "updated_at": r.get::<_, String>(7),
            "expired": r.get::<_, bool>(8),
            "expiring_soon": r.get::<_, bool>(9),
            "version": version,
            "value": value.as_str(),
        });
        Ok(meta.to_string())
    })
    .await?;
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn put_secret(
    Extension(auth): Extension<Auth>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let m = json_body(&headers, &body)?;
    drop(body);
    // Unlike `pgvault set`, "=" is allowed: the value has its own field here, so a name cannot
    // be a KEY=VALUE typed by habit.
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "a secret name cannot be empty or contain control characters",
        ));
    }
    let value = opt_string(&m, "value")?.map(Zeroizing::new);
    if value.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(ApiError::bad("empty value; nothing was changed"));
    }
    if value.as_ref().is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::bad("the value contains a NUL byte, which text cannot hold"));
    }
    let description = opt_string(&m, "description")?;
    let tags: Option<Vec<String>> = match m.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad("\"tags\" must be an array of strings"))?,
        ),
        Some(_) => return Err(ApiError::bad("\"tags\" must be an array of strings")),
    };
    let expires = match m.get("expires_at") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.is_empty() => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => return Err(ApiError::bad("\"expires_at\" must be a timestamp string or null")),
    };
    let expected: Option<i32> = match m.get("expected_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| ApiError::bad("\"expected_version\" must be an integer"))?,
        ),
    };
    drop(m);
    let (created, meta) = db(&s, move |tx| {
        let existing = tx.query_opt(
            "SELECT id::text, version FROM vault.secrets WHERE name = $1 FOR UPDATE",
            &[&name],
        )?;
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
                )?;
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
                )?;
                true
            }
        };
        if let Some(at) = expires {
            tx.execute(
                "UPDATE vault.secrets SET expires_at = $2::text::timestamptz WHERE name = $1",
                &[&name, &at],
            )?;
        }
        let meta = metadata(tx, &[], Some(&name))?.pop().unwrap_or(Value::Null);
        Ok((created, meta))
    })
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, &meta))
}

async fn delete_secret(Extension(auth): Extension<Auth>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    db(&s, move |c| {
        match c.execute("DELETE FROM vault.secrets WHERE name = $1", &[&name])? {
            0 => Err(ApiError::not_found(&name)),
            _ => Ok(StatusCode::NO_CONTENT.into_response()),
        }
    })
    .await
}

fn secret_id(c: &mut Client, name: &str) -> Result<String, ApiError> {
    c.query_opt("SELECT id::text FROM vault.secrets WHERE name = $1", &[&name])?
        .map(|r| r.get(0))
        .ok_or_else(|| ApiError::not_found(name))
}

async fn versions(Extension(auth): Extension<Auth>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let rows = db(&s, move |c| {
        let id = secret_id(c, &name)?;
        let rows = c.query(
            "SELECT version, true, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), NULL::text \
               FROM vault.secrets WHERE id = $1::text::uuid \
             UNION ALL \
             SELECT version, false, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), created_by::text \
               FROM vault.secret_versions WHERE secret_id = $1::text::uuid \
             ORDER BY 1 DESC",
            &[&id],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({"version": r.get::<_, i32>(0), "current": r.get::<_, bool>(1),
                       "at": r.get::<_, String>(2), "replaced_by": r.get::<_, Option<String>>(3)})
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &Value::Array(rows)))
}

async fn rollback(
    Extension(auth): Extension<Auth>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let m = json_body(&headers, &body)?;
    let version = m
        .get("version")
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| ApiError::bad("give {\"version\": N}"))?;
    let new = db(&s, move |c| {
        let id = secret_id(c, &name)?;
        let new: i32 = c
            .query_one("SELECT vault.rollback_secret($1::text::uuid, $2)", &[&id, &version])?
            .get(0);
        Ok(new)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"version": new, "from_version": version}),
    ))
}

/// Per-secret grants (vault.grant_secret): who, besides vault_admin, may read the secret.
async fn grants(Extension(auth): Extension<Auth>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let rows = db(&s, move |c| {
        let id = secret_id(c, &name)?;
        let rows = c.query(
            "SELECT grantee::text, granted_by::text, \
                    to_char(granted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
               FROM vault.secret_acl WHERE secret_id = $1::text::uuid ORDER BY 1",
            &[&id],
        )?;
        Ok(rows
            .iter()
            .map(|r| json!({"role": r.get::<_, String>(0), "granted_by": r.get::<_, String>(1), "at": r.get::<_, String>(2)}))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &Value::Array(rows)))
}

async fn grant(
    Extension(auth): Extension<Auth>,
    Path((name, role)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change_grant(
        auth,
        name,
        role,
        "SELECT vault.grant_secret($1::text::uuid, $2::text::regrole)",
    )
    .await
}

async fn revoke(
    Extension(auth): Extension<Auth>,
    Path((name, role)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change_grant(
        auth,
        name,
        role,
        "SELECT vault.revoke_secret($1::text::uuid, $2::text::regrole)",
    )
    .await
}

async fn change_grant(auth: Auth, name: String, role: String, statement: &'static str) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    db(&s, move |c| {
        let id = secret_id(c, &name)?;
        c.execute(statement, &[&id, &role])?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

async fn audit(Extension(auth): Extension<Auth>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let limit = match q.iter().find(|(k, _)| k == "limit") {
        None => 100,
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| ApiError::bad("limit must be a number from 1 to 10000"))?,
    };
    let rows = db(&s, move |c| {
        let rows = c.query(
            "SELECT id::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), session_role::text, \
                    action::text, secret_name::text, secret_id::text, coalesce(detail::text, '') \
               FROM vault.audit_log ORDER BY at DESC, id LIMIT $1",
            &[&limit],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({"id": r.get::<_, String>(0), "at": r.get::<_, String>(1), "role": r.get::<_, String>(2),
                       "action": r.get::<_, String>(3), "secret_name": r.get::<_, Option<String>>(4),
                       "secret_id": r.get::<_, Option<String>>(5), "detail": r.get::<_, String>(6)})
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &Value::Array(rows)))
}

/// The keys with their status (vault.key_status: vault_admin), oldest first.
async fn keys(Extension(auth): Extension<Auth>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let rows = db(&s, move |c| {
        let rows = c.query(
            "SELECT id::text, name, key_type, key_id, status, \
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    secrets, root_key \
               FROM vault.key_status ORDER BY created_at, id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let status: String = r.get(4);
                json!({"id": r.get::<_, String>(0), "name": r.get::<_, Option<String>>(1),
                       "type": r.get::<_, String>(2), "key_id": r.get::<_, i64>(3),
                       "default": status == "default", "status": status,
                       "created_at": r.get::<_, String>(5), "expires_at": r.get::<_, Option<String>>(6),
                       "secrets": r.get::<_, i64>(7), "root_key": r.get::<_, String>(8)})
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(json_response(StatusCode::OK, &Value::Array(rows)))
}

/// vault.verify_secrets() (vault_admin): how many values (current and kept versions) were
/// checked, and those that need attention: not decrypting, or decrypting but with a note (under
/// the previous root key); a kept version's bare "version N" is no note. Never a value. It only
/// reads, so it is a GET.
async fn verify(Extension(auth): Extension<Auth>) -> Result<Response, ApiError> {
    let s = need(&auth)?;
    let body = db(&s, move |c| {
        let r = c.query_one(
            "SELECT count(*), count(*) FILTER (WHERE NOT bad), \
                    coalesce(json_agg(json_build_object('id', id, 'name', name, 'key_id', key_id, \
                                                        'status', status, 'detail', detail)) \
                               FILTER (WHERE bad), '[]')::text \
               FROM (SELECT v.*, v.status <> 'ok' OR coalesce(v.detail !~ '^version [0-9]+$', false) AS bad \
                       FROM vault.verify_secrets() v) v",
            &[],
        )?;
        let problems: Value = serde_json::from_str(&r.get::<_, String>(2)).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad answer from verify_secrets",
                None,
            )
        })?;
        Ok(json!({"checked": r.get::<_, i64>(0), "ok": r.get::<_, i64>(1), "problems": problems}))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &body))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route", None)
}

fn router(app: Arc<App>) -> Router {
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
        .with_state(app)
}

/// Checks the options, then serves until SIGINT / SIGTERM.
pub fn run(target: conn::Target, opts: Options) -> Result<(), Failure> {
    if opts.insecure_http && !opts.listen.ip().is_loopback() {
        return Err(Failure::usage(format!(
            "--insecure-http serves plain HTTP, so only on a loopback address (127.0.0.1, ::1), not {}",
            opts.listen.ip()
        )));
    }
    let tls = match (&opts.tls_cert, &opts.tls_key, opts.insecure_http) {
        (Some(c), Some(k), false) => Some((c.clone(), k.clone())),
        (_, _, true) => None,
        _ => {
            return Err(Failure::usage(
                "serve needs --tls-cert FILE and --tls-key FILE (HTTPS only); for a test certificate: \
                 openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
                 -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout key.pem -out cert.pem",
            ))
        }
    };
    // Database connections for sessions: what the open-file limit leaves after the HTTP
    // connections, less the token pool's and the server's own first connection.
    let session_budget = crate::limits::database_connection_budget(opts.max_connections)
        .saturating_sub(opts.token_connections.max(1) + 1);
    if session_budget < opts.session_connections.max(1) + 1 {
        eprintln!(
            "pgvault serve: warning: the open-file limit leaves no room for a console session's database \
             connections (each costs {} file descriptors): raise `ulimit -n` or lower --max-connections",
            crate::limits::DESCRIPTORS_PER_DATABASE_CONNECTION
        );
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("cannot start: {e}")))?;
    let app = Arc::new(App {
        target: target.clone(),
        sessions: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        trusted_proxies: opts.trusted_proxies.clone(),
        known: Mutex::new(HashMap::new()),
        limits: crate::limits::Limits::new(
            opts.max_connections,
            opts.max_connections_per_address,
            opts.trusted_proxies.clone(),
        ),
        body_timeout: opts.first_request_timeout,
        db_budget: Arc::new(Semaphore::new(session_budget)),
        idle_timeout: opts.idle_timeout,
        max_login_failures: opts.max_login_failures,
        login_window: opts.login_window,
        tokens: TokenPool {
            slots: Arc::new(Semaphore::new(opts.token_connections.max(1))),
            idle: Mutex::new(Vec::new()),
        },
        session_connections: opts.session_connections.max(1),
        max_sessions_per_role: opts.max_sessions_per_role.max(1),
        login_slots: Arc::new(Semaphore::new(LOGINS_AT_ONCE)),
        kv_mount: vault_kv::check_mount(&opts.kv_mount).map_err(Failure::usage)?,
    });
    // Bearer tokens act through the server's own role: say now whether they can.
    match conn::connect(&target) {
        Ok(mut c) => {
            let (superuser, usage) = c
                .query_one(
                    "SELECT rolsuper, pg_catalog.has_schema_privilege('vault', 'USAGE') \
                       FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) session_user",
                    &[],
                )
                .map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1)))
                .unwrap_or((true, false));
            if superuser {
                eprintln!("pgvault serve: {}", superuser_refusal(target.user()));
            } else if !usage {
                eprintln!(
                    "pgvault serve: note: Bearer tokens cannot be checked until the server's own role may use \
                     schema vault: GRANT USAGE ON SCHEMA vault TO {}",
                    quote_ident(target.user())
                );
            } else {
                eprintln!(
                    "pgvault serve: Bearer tokens act through role \"{}\" (at most {} connections)",
                    escape(target.user()),
                    opts.token_connections.max(1)
                );
                app.tokens.give(c);
            }
        }
        Err(f) => eprintln!(
            "pgvault serve: note: Bearer tokens need the server's own connection, which failed for now: {}",
            escape(f.message())
        ),
    }
    runtime.block_on(async move {
        let config = match &tls {
            Some((cert, key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| {
                        Failure::usage(format!(
                            "cannot load the TLS certificate {} and key {}: {e}",
                            cert.display(),
                            key.display()
                        ))
                    })?,
            ),
            None => None,
        };
        let sweeper = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                sweeper.sweep();
            }
        });
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            stopper.graceful_shutdown(Some(Duration::from_secs(5)));
        });
        let limited = crate::limits::Limited(app.limits.clone());
        let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
        let scheme = if config.is_some() { "https" } else { "http" };
        let listener = std::net::TcpListener::bind(opts.listen)
            .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", opts.listen)))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Failure::new(1, e.to_string()))?;
        eprintln!(
            "pgvault serve: listening on {scheme}://{} for {}",
            listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            conn::describe(&target).replace(&format!(" as \"{}\"", target.user()), " as the logged-in role")
        );
        if scheme == "http" {
            eprintln!("pgvault serve: warning: plain HTTP (--insecure-http): use it only behind a TLS proxy on this host");
        }
        // Bounds on what a client that connects and sends nothing can hold (issue 26): its
        // connection counts against --max-connections and its address's share until the
        // handshake (TLS), the first request's head or, between requests, the next one's head
        // is late; hyper's header-read timer also runs while a kept-alive connection is idle.
        let mut server = axum_server::from_tcp(listener)
            .map_err(|e| Failure::new(1, e.to_string()))?
            .handle(handle)
            .first_request_timeout(opts.first_request_timeout);
        server.http_builder().http1().header_read_timeout(opts.keepalive_timeout);
        let served = match config {
            Some(config) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(config)
                    .handshake_timeout(opts.first_request_timeout)
                    .acceptor(limited);
                server.acceptor(tls).serve(service).await
            }
            None => server.acceptor(limited).serve(service).await,
        };
        served.map_err(|e| Failure::new(1, format!("server stopped: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_http_statuses() {
        assert_eq!(status_of("42501"), StatusCode::FORBIDDEN);
        assert_eq!(status_of("P0002"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("40001"), StatusCode::CONFLICT);
        assert_eq!(status_of("28P01"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of("22023"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("22007"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("XX000"), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; pgvault_session=abc; c=d"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("xpgvault_session=abc"));
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn ids_are_256_random_bits() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()) && !same(&a, &b) && !same(&a, "short"));
    }
}
