//! Console sessions (each the role's own connections, opened at login) and the login limiter.

use crate::conn::Connection;
use crate::serve::reply::ApiError;
use crate::serve::state::{lock, App};
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_postgres::{Client, Statement};

/// PostgreSQL's longest role name (NAMEDATALEN - 1).
pub(crate) const MAX_USER_BYTES: usize = 63;

/// Longer passwords are refused at login (see `login`).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// Logins checked by the database at the same time.
pub(crate) const LOGINS_AT_ONCE: usize = 4;

/// Failed logins count against the limits for this long.
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(60);
pub(crate) const COOKIE: &str = "pgvault_session";
/// The largest request body read (a secret of 1 MiB with room for JSON escapes).
pub(crate) const MAX_BODY: usize = 2 << 20;

/// A session's connection, with the statements prepared on it (see `Db::one_row`) and whether
/// a request may have left a transaction open on it (it ended half way: the client went away
/// and the request's future was dropped).
pub(crate) struct Conn {
    pub(crate) client: Option<Client>,
    pub(crate) statements: Prepared,
    pub(crate) open: bool,
}

/// Statements prepared once on a connection, by their SQL text.
pub(crate) type Prepared = HashMap<&'static str, Statement>;

impl Conn {
    pub(crate) fn new(c: Connection) -> Arc<Mutex<Conn>> {
        Arc::new(Mutex::new(Conn {
            client: Some(c.client),
            statements: Prepared::new(),
            open: false,
        }))
    }
}

/// One logged-in user: the role's own connection and the CSRF token the page must echo.
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) csrf: String,
    pub(crate) client: Arc<Mutex<Conn>>,
    /// More connections of the same role (`--session-connections`), opened at login.
    pub(crate) more: Vec<Arc<Mutex<Conn>>>,
    pub(crate) next: AtomicUsize,
    pub(crate) last_used: StdMutex<Instant>,
    /// Whether the role could read vault.secrets at login (vault_admin): its reads of a value
    /// then take the version in the same statement (see `get_secret`).
    pub(crate) versions: AtomicBool,
    /// The role lost LOGIN, expired, became a superuser or was dropped (see `MAY_LOG_IN`): the
    /// session is over, and is removed at its next lookup.
    pub(crate) ended: AtomicBool,
    /// Its connections' share of the file descriptors (`App::db_budget`), given back with it.
    pub(crate) _budget: tokio::sync::OwnedSemaphorePermit,
}

pub(crate) const MAY_LOG_IN: &str = may_log_in!();

impl Session {
    /// A connection of this session for one request: one that is free right now if there is
    /// one, else the next in turn (the request then waits for it).
    pub(crate) fn pick(&self) -> Arc<Mutex<Conn>> {
        let all = || std::iter::once(&self.client).chain(self.more.iter());
        let free = |c: &&Arc<Mutex<Conn>>| c.try_lock().is_ok();
        if let Some(free) = all().find(free) {
            return free.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % (1 + self.more.len());
        all().nth(n).unwrap_or(&self.client).clone()
    }
}

pub(crate) fn random_hex() -> Result<String, ApiError> {
    let mut buf = [0u8; 32];
    openssl::rand::rand_bytes(&mut buf)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness", None))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

/// The session id in the request's `Cookie` headers, if any.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<String> {
    axum_extra::extract::CookieJar::from_headers(headers)
        .get(COOKIE)
        .map(|c| c.value().to_string())
}

impl App {
    /// The live session named by the request's cookie; an idle one is ended here.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
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
    pub(crate) fn end_oldest_session(&self, user: &str) -> bool {
        let mut sessions = lock(&self.sessions);
        let oldest = sessions
            .iter()
            .filter(|(_, s)| s.user == user)
            .min_by_key(|(_, s)| *lock(&s.last_used))
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| sessions.remove(&k).is_some())
    }

    pub(crate) fn sweep(&self) {
        let timeout = self.idle_timeout;
        lock(&self.sessions).retain(|_, s| lock(&s.last_used).elapsed() <= timeout && !s.ended.load(Ordering::Relaxed));
        self.logins.sweep();
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the one the nearest proxy saw; the
/// entries before it are the client's own claims). A header that does not parse is ignored.
pub(crate) fn client_address(trusted: &[IpAddr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
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
