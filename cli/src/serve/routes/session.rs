//! `/api/v1/session`: log in, who am I, log out.

use crate::api::types::{self, Rights};
use crate::serve::auth::Caller;
use crate::serve::db::db;
use crate::serve::reply::{json_response, ApiError, JsonBody};
use crate::serve::sessions::{
    client_address, cookie_value, random_hex, Conn, Session, COOKIE, MAX_PASSWORD_BYTES, MAX_USER_BYTES,
};
use crate::serve::state::{lock, App, LogRole};
use crate::text::escape;
use crate::{conn, Failure};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use zeroize::Zeroizing;

/// `POST /api/v1/session`'s body.
#[derive(Deserialize)]
pub(crate) struct LoginBody {
    user: Option<String>,
    #[serde(default, deserialize_with = "types::conceal_opt")]
    password: Option<Zeroizing<String>>,
}

pub(crate) async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(logged): Extension<LogRole>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let ip = client_address(&app.trusted_proxies, peer.ip(), &headers);
    let user = body.user.unwrap_or_default();
    let password = body.password.unwrap_or_default();
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
    let Some(mut attempt) = app.logins.reserve(ip, &user) else {
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
    let connect = |target: &conn::Target| {
        let target = target.clone();
        async move { conn::connect(&target, false).await }
    };
    let mut result: Result<conn::Connection, Failure> = connect(&target).await;
    // The role is at its CONNECTION LIMIT, partly with this server's sessions: PostgreSQL checks
    // that limit only after the password was accepted, so this login is the role's own. Its
    // oldest session here makes room (as past --max-sessions-per-role); its backends take a
    // moment to exit.
    if result.as_ref().err().is_some_and(role_limit_reached) && app.end_oldest_session(&user) {
        for pause in [25, 50, 100, 200, 400, 800, 1600] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            result = connect(&target).await;
            if !result.as_ref().err().is_some_and(role_limit_reached) {
                break;
            }
        }
    }
    let client = match result {
        Ok(c) => c,
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
    let probed = connect(&app.target.as_login(&user, &random_hex()?)).await;
    drop(probe_budget);
    match probed {
        Err(f) if matches!(f.sqlstate(), Some("28P01" | "28000")) => {}
        Ok(_) => {
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
    // The console is for vault roles: a superuser (or a role that may become one) would
    // hold every secret and the server itself behind a browser cookie.
    refuse_superuser(&client.client).await?;
    let rights = rights(&client.client).await;
    let mut more = Vec::new();
    if rights.is_ok() {
        for _ in 0..extra {
            match connect(&target).await {
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
    drop(target);
    let client = Conn::new(client);
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
    app.logins.remember(ip, &user);
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
        &types::Session {
            user: user.clone(),
            csrf_token: Some(csrf),
            token: None,
            rights: Some(rights),
        },
    );
    let cookie = format!("{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/");
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex cookie"));
    logged.set(user);
    Ok(r)
}

/// PostgreSQL refused a connection because the role has as many as its CONNECTION LIMIT
/// allows (53300 is also "too many clients" for the whole server, checked before the password;
/// the role's limit is told apart by its message).
pub(crate) fn role_limit_reached(f: &Failure) -> bool {
    f.sqlstate() == Some("53300") && f.message().contains("too many connections for role")
}

/// 403 for a role that is, or is a member of, a superuser.
pub(crate) async fn refuse_superuser(c: &Client) -> Result<(), ApiError> {
    let superuser: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r \
                             WHERE r.rolsuper AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER'))",
            &[],
        )
        .await?
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
pub(crate) async fn rights(c: &Client) -> Result<(Rights, bool), ApiError> {
    let r = c
        .query_one(
            "SELECT pg_has_role('vault_viewer', 'USAGE'), pg_has_role('vault_reader', 'USAGE'), \
                pg_has_role('vault_admin', 'USAGE'), \
                CASE WHEN has_schema_privilege('vault', 'USAGE') \
                     THEN has_table_privilege('vault.key_status', 'SELECT') ELSE false END, \
                CASE WHEN has_schema_privilege('vault', 'USAGE') \
                     THEN has_function_privilege('vault.verify_secrets()', 'EXECUTE') ELSE false END, \
                CASE WHEN has_schema_privilege('vault', 'USAGE') \
                     THEN has_table_privilege('vault.secrets', 'SELECT') ELSE false END",
            &[],
        )
        .await?;
    Ok((
        Rights {
            view: r.get(0),
            read: r.get(1),
            admin: r.get(2),
            keys: r.get(3),
            verify: r.get(4),
        },
        r.get::<_, bool>(5),
    ))
}

pub(crate) async fn whoami(caller: Caller) -> Result<Response, ApiError> {
    let who = caller;
    let (rights, versions) = db(&who, async |c| rights(c).await).await?;
    let body = match &who {
        Caller::Session(s) => {
            s.versions.store(versions, Ordering::Relaxed);
            types::Session {
                user: s.user.clone(),
                csrf_token: Some(s.csrf.clone()),
                token: None,
                rights: Some(rights),
            }
        }
        Caller::Token { acted, .. } => types::Session {
            user: acted.get().unwrap_or_default(),
            csrf_token: None,
            token: Some(true),
            rights: Some(rights),
        },
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub(crate) async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
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
