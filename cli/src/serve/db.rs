//! Running a request's statements: on a session's own connection, or on a connection of the
//! server's own role switched to a token's role, in one transaction.

use crate::conn;
use crate::serve::auth::Caller;
use crate::serve::reply::ApiError;
use crate::serve::sessions::{close, Conn, Prepared, MAY_LOG_IN};
use crate::serve::state::{lock, TokenPool};
use crate::text::escape;
use axum::http::StatusCode;
use postgres::Client;
use std::sync::atomic::Ordering;

/// How a request's statements run on a session's connection (a token's request is always
/// one transaction: its role is set with SET LOCAL ROLE).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tx {
    /// BEGIN ... COMMIT around them: several statements see one snapshot and change together.
    Wrapped,
    /// `f` runs exactly one statement, which is a transaction of its own: two round trips
    /// fewer, for the hot read path.
    OneStatement,
}

/// A session's request in one transaction, begun in the same round trip as the check that its
/// role may still log in (`MAY_LOG_IN`).
pub(crate) fn session_transaction<T>(
    c: &mut Client,
    f: impl FnOnce(&mut Client) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
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
pub(crate) fn role_may_log_in(c: &mut Client) -> Result<(), ApiError> {
    match c.query_one(&format!("SELECT {MAY_LOG_IN}"), &[]) {
        Ok(r) if r.get::<_, bool>(0) => Ok(()),
        Err(e) if e.as_db_error().is_none() => Err(e.into()),
        _ => Err(ApiError::session_ended()),
    }
}

/// A role name as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TokenPool {
    /// An idle connection of the server's own role (`false`), or a new one (`true`): never a
    /// superuser's.
    pub(crate) fn take(&self, target: &conn::Target) -> Result<(Client, bool), ApiError> {
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

    /// Back to the pool, with nothing of the request left on it. A request that ended with
    /// its transaction (`clean`: COMMIT or ROLLBACK went through) left nothing: its role and
    /// search_path were `SET LOCAL`, its prepared statements were closed, and the server's
    /// statements make no temporary tables, cursors or session locks; the next request's check
    /// also refuses a connection whose current role is not its login role. Anything else is
    /// reset with `DISCARD ALL` (every setting, role, temporary table, lock and prepared
    /// statement), or the connection is closed.
    pub(crate) fn give(&self, mut c: Client, clean: bool) {
        if !c.is_closed() && (clean || c.batch_execute("DISCARD ALL").is_ok()) {
            lock(&self.idle).push(c);
        } else {
            close(c);
        }
    }

    /// A transaction for one Bearer request: `BEGIN` and a search_path of pg_catalog only, so no
    /// name in the server's queries resolves to an object a token role (or anyone) created; the
    /// role is switched after that by `act_as_token`. An idle connection that fails here (the
    /// database restarted under it) is dropped and the next one, or a new one, is tried.
    pub(crate) fn begin(&self, target: &conn::Target) -> Result<Client, ApiError> {
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
pub(crate) fn superuser_unavailable(user: &str) -> ApiError {
    eprintln!("pgvault serve: tokens: {}", superuser_refusal(user));
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "this server does not accept tokens: its own database role is a superuser (see the server's output)",
        None,
    )
}

pub(crate) fn superuser_refusal(user: &str) -> String {
    format!(
        "Bearer tokens refused: the server's own role \"{}\" is a superuser, and a token must never act \
         as one; connect as a login role that is a NOINHERIT member of the token roles \
         (CREATE ROLE authenticator LOGIN NOINHERIT; GRANT token_role TO authenticator)",
        escape(user)
    )
}

/// Checks `token` in the database and switches to its role for the rest of the transaction.
pub(crate) fn act_as_token(c: &mut Client, token: &str) -> Result<String, ApiError> {
    // One round trip: the check, the membership, the superuser test, that no role lingers on
    // the connection (its current role is its login role), and, when all of them pass, the
    // switch (`set_config('role', ..., true)` is `SET LOCAL ROLE`). The subquery is computed
    // first (OFFSET 0), so the switch sees the checks as they were before it.
    let row = c
        .query_one(
            "SELECT t.r::pg_catalog.text, t.member, t.superuser, session_user::pg_catalog.text, t.clean, \
                    CASE WHEN t.r IS NOT NULL AND t.member AND t.clean AND NOT t.superuser \
                         THEN pg_catalog.set_config('role', t.r::pg_catalog.text, true) END \
               FROM (SELECT r, pg_catalog.pg_has_role(session_user, r, 'MEMBER') AS member, \
                            (SELECT u.rolsuper FROM pg_catalog.pg_roles u \
                              WHERE u.rolname OPERATOR(pg_catalog.=) session_user) AS superuser, \
                            current_user OPERATOR(pg_catalog.=) session_user AS clean \
                       FROM vault.api_token_role($1) AS r OFFSET 0) t",
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
    if row.get::<_, Option<bool>>(4) != Some(true) {
        eprintln!("pgvault serve: tokens: a pooled connection still had another role: not used");
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "try again", None));
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
    if row.get::<_, Option<String>>(5).is_none() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the role was not switched",
            None,
        ));
    }
    Ok(role)
}

/// Runs `f` for the request, off the async threads and in one transaction: on the session's
/// own connection, or on a connection of the server's pool switched to the token's role.
pub(crate) async fn db<T, F>(who: &Caller, f: F) -> Result<T, ApiError>
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
pub(crate) async fn db_prepared<T, F>(who: &Caller, tx: Tx, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Client, &mut Prepared) -> Result<T, ApiError> + Send + 'static,
{
    let internal = |_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None);
    match who {
        Caller::Session(s) => {
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
        Caller::Token { app, token, acted } => {
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
                let (result, clean) = match result {
                    Ok(v) => match c.batch_execute("COMMIT") {
                        Ok(()) => (Ok(v), true),
                        Err(e) => (Err(ApiError::from(e)), false),
                    },
                    Err(e) => {
                        let rolled_back = !c.is_closed() && c.batch_execute("ROLLBACK").is_ok();
                        (Err(e), rolled_back)
                    }
                };
                app.tokens.give(c, clean);
                result
            })
            .await
            .map_err(internal)?
        }
    }
}

/// `sql` with one parameter, prepared on this connection the first time it runs there.
pub(crate) fn query_one_row(
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
