//! The server's state: its settings, its sessions, the login limiter and the token pool.

use crate::conn;
use crate::serve::limiter::LoginLimiter;
use crate::serve::sessions::Session;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

pub(crate) struct App {
    pub(crate) target: conn::Target,
    pub(crate) sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Failed logins and those being checked, against their limits.
    pub(crate) logins: LoginLimiter,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    pub(crate) trusted_proxies: Vec<IpAddr>,
    /// The open connections (`limits`).
    pub(crate) limits: Arc<crate::limits::Limits>,
    /// Time for a request's body (`--first-request-timeout`).
    pub(crate) body_timeout: Duration,
    /// The bytes of request bodies being read, against their budgets (`bodies.rs`).
    pub(crate) bodies: Arc<crate::serve::bodies::Bodies>,
    /// Database connections the file descriptors allow for sessions (`limits`): a login takes
    /// its session's and the password check's before it connects.
    pub(crate) db_budget: Arc<Semaphore>,
    pub(crate) idle_timeout: Duration,
    /// Connections of the server's own role for Bearer-token requests (`db::TokenPool`).
    pub(crate) tokens: crate::serve::db::TokenPool,
    /// Tokens (their SHA-256) whose role could read vault.secrets at their last read: their
    /// reads take the version in the same statement (`db::token_read`).
    pub(crate) token_versions: Mutex<std::collections::HashSet<[u8; 32]>>,
    pub(crate) session_connections: usize,
    pub(crate) max_sessions_per_role: usize,
    /// Logins being checked at once (see `login`).
    pub(crate) login_slots: Arc<Semaphore>,
    /// The KV v2 mount of HashiCorp Vault's API under /v1/ (`--kv-mount`, routes/vault_kv.rs).
    pub(crate) kv_mount: String,
}

/// The role a request acted as, once known, for its access-log line: set by the login (the
/// role that logged in) and by the token path (`db`: the token's role). One per request, in
/// its extensions, made by `auth::guard`; a session's role is known before.
#[derive(Clone, Default)]
pub(crate) struct LogRole(Arc<Mutex<Option<String>>>);

impl LogRole {
    pub(crate) fn set(&self, role: String) {
        *lock(&self.0) = Some(role);
    }
    pub(crate) fn get(&self) -> Option<String> {
        lock(&self.0).clone()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
