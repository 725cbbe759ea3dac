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

mod auth;
mod bodies;
mod db;
mod limiter;
mod reply;
mod routes;
mod sessions;
mod state;

use crate::commands::serve::Serve;
use crate::text::escape;
use crate::{conn, Failure};
use axum::Router;
use db::{quote_ident, superuser_refusal};
use limiter::LoginLimiter;
use routes::router;
use sessions::{LOGINS_AT_ONCE, LOGIN_WINDOW};
use state::App;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The server's state for these options.
pub(crate) fn new_app(target: &conn::Target, opts: &Serve) -> Arc<App> {
    Arc::new(App {
        target: target.clone(),
        sessions: Mutex::new(HashMap::new()),
        logins: LoginLimiter::new(opts.max_login_failures, LOGIN_WINDOW),
        trusted_proxies: opts.trusted_proxies.clone(),
        limits: crate::limits::Limits::new(
            opts.max_connections(),
            opts.max_connections_per_address(),
            opts.trusted_proxies.clone(),
        ),
        body_timeout: opts.first_request_timeout(),
        bodies: bodies::Bodies::new(
            bodies::ALL_BODIES,
            bodies::BODIES_PER_ADDRESS,
            opts.trusted_proxies.clone(),
        ),
        db_budget: Arc::new(Semaphore::new(session_budget(opts))),
        idle_timeout: opts.idle_timeout(),
        tokens: db::token_pool(target, opts.token_connections),
        token_versions: Mutex::new(std::collections::HashSet::new()),
        session_connections: usize::from(opts.session_connections).max(1),
        max_sessions_per_role: opts.max_sessions_per_role.max(1),
        login_slots: Arc::new(Semaphore::new(LOGINS_AT_ONCE)),
        // Checked by `run` (and clap's callers) first; a bad one here serves the default.
        kv_mount: routes::vault_kv::check_mount(&opts.kv_mount).unwrap_or_else(|_| "secret".into()),
    })
}

/// Database connections for sessions: what the open-file limit leaves after the HTTP
/// connections, less the token pool's and the server's own first connection.
fn session_budget(opts: &Serve) -> usize {
    crate::limits::database_connection_budget(opts.max_connections()).saturating_sub(opts.token_connections.max(1) + 1)
}

/// The console and API for `target` with `opts`, without a listener: what `run` serves, and
/// what the in-process API tests (cli/tests/api.rs) send requests to. Requests need a
/// `ConnectInfo<SocketAddr>` extension (the listener adds it).
pub fn router_with(target: &conn::Target, opts: &Serve) -> Router {
    router(new_app(target, opts))
}

/// Checks the options, then serves until SIGINT / SIGTERM.
pub fn run(target: conn::Target, opts: &Serve) -> Result<(), Failure> {
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
    routes::vault_kv::check_mount(&opts.kv_mount).map_err(Failure::usage)?;
    if session_budget(opts) < usize::from(opts.session_connections).max(1) + 1 {
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
        .map_err(|e| Failure::failed(format!("cannot start: {e}")))?;
    let app = new_app(&target, opts);
    runtime.block_on(async move {
        say_how_tokens_act(&target, opts).await;
        let config = match &tls {
            Some((cert, key)) => Some(
                http1_only(
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
            .map_err(|e| Failure::failed(e.to_string()))?;
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
            .map_err(|e| Failure::failed(e.to_string()))?
            .handle(handle)
            .first_request_timeout(opts.first_request_timeout())
            .http1_only();
        server.http_builder().http1().header_read_timeout(opts.keepalive_timeout());
        let served = match config {
            Some(config) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(config)
                    .handshake_timeout(opts.first_request_timeout())
                    .acceptor(limited);
                server.acceptor(tls).serve(service).await
            }
            None => server.acceptor(limited).serve(service).await,
        };
        served.map_err(|e| Failure::failed(format!("server stopped: {e}")))
    })
}

/// HTTP/1.1 only: TLS offers no other protocol (ALPN), and a connection that starts HTTP/2
/// anyway is not served. The console and the APIs need nothing of HTTP/2, whose many streams
/// per connection each held a request body: 80 connections grew the server to 1.2 GB past the
/// bounds on bodies (the second review of issue 27).
fn http1_only(config: axum_server::tls_rustls::RustlsConfig) -> axum_server::tls_rustls::RustlsConfig {
    let mut inner = (*config.get_inner()).clone();
    inner.alpn_protocols = vec![b"http/1.1".to_vec()];
    axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(inner))
}

/// Bearer tokens act through the server's own role: says at start whether they can.
async fn say_how_tokens_act(target: &conn::Target, opts: &Serve) {
    match conn::connect(target, false).await {
        Ok(c) => {
            let (superuser, usage) = c
                .client
                .query_one(
                    "SELECT rolsuper, pg_catalog.has_schema_privilege('vault', 'USAGE') \
                       FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) session_user",
                    &[],
                )
                .await
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
            }
        }
        Err(f) => eprintln!(
            "pgvault serve: note: Bearer tokens need the server's own connection, which failed for now: {}",
            escape(f.message())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::reply::status_of;
    use super::sessions::{cookie_value, random_hex, same};
    use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

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
