//! Running a request's statements: on a session's own connection, or on a pooled connection
//! of the server's own role switched to a token's role, in one transaction. Everything runs on
//! the server's runtime (tokio-postgres); statements that run on every request are prepared
//! once per connection (`Db::one_row`).

use crate::conn;
use crate::serve::auth::Caller;
use crate::serve::reply::ApiError;
use crate::serve::sessions::{Conn, Prepared, MAY_LOG_IN};
use crate::serve::state::lock;
use crate::text::escape;
use axum::http::StatusCode;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

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

/// A request's connection: the client (methods through `Deref`) and the statements prepared
/// on it.
pub(crate) struct Db<'a> {
    pub(crate) client: &'a Client,
    statements: &'a mut Prepared,
}

impl Deref for Db<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
    }
}

impl Db<'_> {
    /// `sql` prepared on this connection, the first time it is asked for there.
    async fn prepared(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql).await?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }

    /// `sql` with one parameter, prepared on this connection the first time it runs there.
    pub(crate) async fn one_row(
        &mut self,
        sql: &'static str,
        param: &str,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.client.query_opt(&st, &[&param]).await
    }
}

/// Whether a simple query's answer holds a row whose first column is `t`.
fn said_true(messages: &[SimpleQueryMessage]) -> bool {
    messages
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")))
}

/// A session's request in one transaction, begun in the same round trip as the check that its
/// role may still log in (`MAY_LOG_IN`).
async fn session_transaction<T>(
    db: &mut Db<'_>,
    f: impl AsyncFnOnce(&mut Db<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let c = db.client;
    let begun = c.simple_query(&format!("BEGIN; SELECT {MAY_LOG_IN}")).await;
    if !matches!(&begun, Ok(m) if said_true(m)) {
        if !c.is_closed() {
            let _ = c.batch_execute("ROLLBACK").await;
        }
        return match begun {
            Err(e) if !role_is_gone(&e) => Err(e.into()),
            _ => Err(ApiError::session_ended()),
        };
    }
    match f(db).await {
        Ok(v) => {
            c.batch_execute("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            if !c.is_closed() {
                let _ = c.batch_execute("ROLLBACK").await;
            }
            Err(e)
        }
    }
}

/// Ok when the session's role may still log in; the session's end otherwise (also when the
/// check fails in the database: a dropped role's `session_user`).
async fn role_may_log_in(c: &Client) -> Result<(), ApiError> {
    match c.query_one(&format!("SELECT {MAY_LOG_IN}"), &[]).await {
        Ok(r) if r.get::<_, bool>(0) => Ok(()),
        Err(e) if !role_is_gone(&e) => Err(e.into()),
        _ => Err(ApiError::session_ended()),
    }
}

/// Whether the check that a session's role may log in failed because the role is gone or lost
/// its rights (a dropped role's `session_user` is 42704; 42501 and class 28 likewise), not for
/// a passing reason (a statement timeout, a cancel, a lost connection): only those end the
/// session.
fn role_is_gone(e: &tokio_postgres::Error) -> bool {
    e.code()
        .map(|c| c.code())
        .is_some_and(|c| c == "42704" || c == "42501" || c.starts_with("28"))
}

/// A role name as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A connection of the server's own login role, for Bearer-token requests.
pub(crate) struct Pooled {
    client: Client,
    canceller: conn::Canceller,
    statements: Prepared,
    /// A request began a transaction on it and did not see it end (its future was dropped
    /// half way: the client went away): rolled back before the connection is used again.
    open: bool,
}

/// The pool's connections (deadpool): made with the server's connection options, never a
/// superuser's; one that closed, or whose open transaction cannot be rolled back, is dropped.
pub(crate) struct TokenConnections {
    pub(crate) target: conn::Target,
}

impl managed::Manager for TokenConnections {
    type Type = Pooled;
    type Error = ApiError;

    async fn create(&self) -> Result<Pooled, ApiError> {
        let connection = conn::connect(&self.target, false).await.map_err(|f| {
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
        let (client, canceller) = (connection.client, connection.canceller);
        let superuser: bool = client
            .query_one(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) session_user",
                &[],
            )
            .await?
            .get(0);
        if superuser {
            return Err(superuser_unavailable(self.target.user()));
        }
        Ok(Pooled {
            client,
            canceller,
            statements: Prepared::new(),
            open: false,
        })
    }

    async fn recycle(&self, c: &mut Pooled, _: &Metrics) -> RecycleResult<ApiError> {
        if c.client.is_closed() {
            return Err(RecycleError::message("closed"));
        }
        // A request that ended half way closes its connection (`TokenHold`); one left open
        // anyway is not used again.
        if c.open {
            return Err(RecycleError::message("left inside a transaction"));
        }
        Ok(())
    }
}

pub(crate) type TokenPool = managed::Pool<TokenConnections>;

/// A request's hold on a pooled connection. A request dropped half way (its client went away)
/// inside its transaction leaves it open, maybe with a statement waiting on a lock: dropping
/// the hold then cancels that statement, rolls back and closes the connection, on a task of its
/// own that keeps it until then, so no transaction lingers with its locks and the pool never
/// has more connections than its size (the review of issue 27 found both). Closed, not
/// returned: a cancel request reaches the backend later than it is sent, and on a reused
/// connection it hit the next request's statement (the second review).
struct TokenHold(Option<Object<TokenConnections>>);

impl Drop for TokenHold {
    fn drop(&mut self) {
        let Some(c) = self.0.take() else { return };
        if !c.open {
            return;
        }
        // The pool counts the connection as in use until the task is done with it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                c.canceller.cancel().await;
                let _ = c.client.batch_execute("ROLLBACK").await;
                drop(Object::take(c));
            });
        } else {
            drop(Object::take(c));
        }
    }
}

impl TokenHold {
    /// Closes the connection instead of returning it to the pool.
    fn discard(&mut self) {
        if let Some(c) = self.0.take() {
            drop(Object::take(c));
        }
    }
}

/// The same for a session's connection, without the cancel: the rollback is queued behind the
/// request's statement, and the connection stays locked (its session's other requests wait, or
/// use its other connections) until it is done. A cancel request reaches the backend later than
/// it is sent and could hit the session's next statement instead (the second review of issue 27
/// saw it end a session); a session's statements wait only for its own role's locks.
struct SessionHold(Option<OwnedMutexGuard<Conn>>);

impl Drop for SessionHold {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        if !c.open {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let rolled_back = match &c.client {
                    Some(client) => client.batch_execute("ROLLBACK").await.is_ok(),
                    None => false,
                };
                if rolled_back {
                    c.open = false;
                } else {
                    c.client = None;
                }
            });
        }
    }
}

/// How long a request waits for a database connection (the pool's, or its session's) before
/// it gets 503: one whose statements wait on a lock must not hold the rest for ever.
pub(crate) const DB_WAIT: Duration = Duration::from_secs(10);

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database connections for this request are all busy: try again",
        None,
    )
}

pub(crate) fn token_pool(target: &conn::Target, size: usize) -> TokenPool {
    managed::Pool::builder(TokenConnections { target: target.clone() })
        .max_size(size.max(1))
        .wait_timeout(Some(DB_WAIT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("the runtime for the wait timeout is given")
}

fn pool_error(e: PoolError<ApiError>) -> ApiError {
    match e {
        PoolError::Backend(e) => e,
        PoolError::Timeout(_) => busy(),
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping", None),
    }
}

/// Whether the database is a standby, asked on a pooled connection of the server's own role
/// (`sys/health`): one statement outside a transaction, so nothing of it stays there.
pub(crate) async fn in_recovery(pool: &TokenPool) -> Result<bool, ApiError> {
    let c = pool.get().await.map_err(pool_error)?;
    match crate::store::kv::in_recovery(&c.client).await {
        Ok(standby) => Ok(standby),
        Err(e) => {
            drop(Object::take(c));
            Err(e.into())
        }
    }
}

/// The token's check (see `act_as_token`): the token only as a bind parameter. When it switches
/// to the token's role it also sets `pgvault.acting` for the transaction: statements sent in
/// the same round trip as the check (`token_read`) read nothing unless it is set (`TOKEN_GATE`).
const TOKEN_CHECK: &str =
    "SELECT t.r::pg_catalog.text, t.member, t.superuser, session_user::pg_catalog.text, t.clean, \
            CASE WHEN t.r IS NOT NULL AND t.member AND t.clean AND NOT t.superuser \
                 THEN pg_catalog.set_config('role', t.r::pg_catalog.text, true) END, \
            CASE WHEN t.r IS NOT NULL AND t.member AND t.clean AND NOT t.superuser \
                 THEN pg_catalog.set_config('pgvault.acting', 'token', true) END \
       FROM (SELECT r, pg_catalog.pg_has_role(session_user, r, 'MEMBER') AS member, \
                    (SELECT u.rolsuper FROM pg_catalog.pg_roles u \
                      WHERE u.rolname OPERATOR(pg_catalog.=) session_user) AS superuser, \
                    current_user OPERATOR(pg_catalog.=) session_user AS clean \
               FROM vault.api_token_role($1) AS r OFFSET 0) t";

/// A token request's transaction, its token checked, in one round trip: `BEGIN` with a
/// search_path of pg_catalog only (so no name in the server's queries resolves to an object a
/// token role, or anyone, created) and the check (prepared once per connection) are sent
/// together; the route's statements and `COMMIT` follow. With `read` (a statement and its one
/// parameter, gated by `token_gate!`: `token_read`), that read and `COMMIT` go in the same round
/// trip, and the check decides whether its row counts (the gate kept it empty otherwise, and
/// nothing was decrypted). A pooled connection that fails before the database answers (it
/// restarted under it) is dropped and the next one, or a new one, is tried.
#[allow(clippy::type_complexity)]
async fn begin(
    pool: &TokenPool,
    token: &str,
    read: Option<(&'static str, &str)>,
) -> Result<
    (
        TokenHold,
        Result<Row, tokio_postgres::Error>,
        Result<Option<Row>, tokio_postgres::Error>,
    ),
    ApiError,
> {
    let mut tries = pool.status().max_size + 1;
    loop {
        let mut hold = TokenHold(Some(pool.get().await.map_err(pool_error)?));
        let Pooled {
            client,
            statements,
            open,
            ..
        } = &mut **hold.0.as_mut().expect("held");
        // From here on a dropped request cancels and closes (`TokenHold`): preparing may wait on
        // a lock too.
        *open = true;
        let mut db = Db { client, statements };
        let prepared = match (db.prepared(TOKEN_CHECK).await, read) {
            (Ok(check), Some((sql, _))) => db.prepared(sql).await.map(|read| (check, Some(read))),
            (Ok(check), None) => Ok((check, None)),
            (Err(e), _) => Err(e),
        };
        let token: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&token];
        let begin = "BEGIN; SET LOCAL search_path = pg_catalog, pg_temp";
        let sent = match (prepared, read) {
            // The database refused a statement itself (the server's role may not call the
            // check): nothing was begun, and `act_as_token` says what is missing.
            (Err(e), _) if e.as_db_error().is_some() => {
                *open = false;
                return Ok((hold, Err(e), Ok(None)));
            }
            (Err(e), _) => Err(e),
            (Ok((check, Some(statement))), Some((_, param))) => {
                let param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&param];
                let (begun, checked, row, committed) = tokio::join!(
                    client.batch_execute(begin),
                    client.query_one(&check, &token),
                    client.query_opt(&statement, &param),
                    client.batch_execute("COMMIT"),
                );
                // COMMIT in a failed transaction rolls it back: either way it ended.
                if committed.is_ok() {
                    *open = false;
                }
                begun.map(|()| (checked, row))
            }
            (Ok((check, _)), _) => {
                let (begun, checked) = tokio::join!(client.batch_execute(begin), client.query_one(&check, &token));
                begun.map(|()| (checked, Ok(None)))
            }
        };
        match sent {
            Ok((checked, row)) => return Ok((hold, checked, row)),
            Err(e) => {
                hold.discard();
                tries -= 1;
                if tries == 0 {
                    return Err(e.into());
                }
            }
        }
    }
}

/// The condition under which a statement sent together with the token's check may read:
/// the check switched to the token's role in this transaction.
macro_rules! token_gate {
    () => {
        "pg_catalog.current_setting('pgvault.acting', true) OPERATOR(pg_catalog.=) 'token'"
    };
}
pub(crate) use token_gate;

/// A token's read of the secret `name` (`GET /api/v1/secrets/{name}`) in one round trip
/// (`begin` with the read): `plain`, or `versioned` (with the version, for a role that may read
/// vault.secrets) when this token's last read said it may. The first read of such a token, and
/// one after the privilege was revoked, take a second round trip.
pub(crate) async fn token_read(
    who: &Caller,
    plain: &'static str,
    versioned: &'static str,
    name: &str,
) -> Result<Option<Row>, ApiError> {
    let Caller::Token { app, token, acted } = who else {
        return Err(ApiError::unauthorized());
    };
    let key = openssl::sha::sha256(token.as_bytes());
    let mut with_version = lock(&app.token_versions).contains(&key);
    for _ in 0..3 {
        let (_, checked, read) = begin(
            &app.tokens,
            token,
            Some((if with_version { versioned } else { plain }, name)),
        )
        .await?;
        acted.set(act_as_token(checked)?);
        // The privilege changed since this token's last read: read again as the role is now.
        let may_read_versions = match &read {
            Err(e) if with_version && e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
            Ok(Some(r)) if !with_version && r.get::<_, bool>(11) => true,
            _ => return read.map_err(ApiError::from),
        };
        let mut known = lock(&app.token_versions);
        if may_read_versions {
            // Bounded: tokens seen are few, but a flood of valid ones must not grow it for ever.
            if known.len() >= 10_000 {
                known.clear();
            }
            known.insert(key);
        } else {
            known.remove(&key);
        }
        drop(known);
        with_version = may_read_versions;
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "try again", None))
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

/// The role a token acts as, from its check (`TOKEN_CHECK`, sent by `begin`), which also
/// switched to it for the rest of the transaction when every condition held. One round trip
/// does the check, the membership, the superuser test, that no role lingers on the connection
/// (its current role is its login role), and, when all of them pass, the switch
/// (`set_config('role', ..., true)` is `SET LOCAL ROLE`). The subquery is computed first
/// (OFFSET 0), so the switch sees the checks as they were before it.
fn act_as_token(checked: Result<Row, tokio_postgres::Error>) -> Result<String, ApiError> {
    let row = checked.map_err(|e| match e.code().map(|c| c.code()) {
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
        let login: String = row.get(3);
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

/// Runs `f` for the request in one transaction: on the session's own connection, or on a
/// connection of the server's pool switched to the token's role.
pub(crate) async fn db<T>(
    who: &Caller,
    f: impl AsyncFnOnce(&mut Db<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    db_as(who, Tx::Wrapped, f).await
}

/// Like `db`, with the choice of `Tx` for a session's request.
pub(crate) async fn db_as<T>(
    who: &Caller,
    tx: Tx,
    f: impl AsyncFnOnce(&mut Db<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match who {
        Caller::Session(s) => {
            let conn = tokio::time::timeout(DB_WAIT, s.pick().lock_owned())
                .await
                .map_err(|_| busy())?;
            let mut hold = SessionHold(Some(conn));
            let Conn {
                client,
                statements,
                open,
                ..
            } = &mut **hold.0.as_mut().expect("held");
            let Some(c) = client.as_ref() else {
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
            // The last request on this connection ended half way and its rollback failed to
            // be sent (`SessionHold`): what it did must not be committed by this one.
            if *open {
                if c.batch_execute("ROLLBACK").await.is_err() {
                    *client = None;
                    return Err(lost());
                }
                *open = false;
            }
            *open = true;
            let mut db = Db { client: c, statements };
            let result = match tx {
                Tx::Wrapped => session_transaction(&mut db, f).await,
                // The statement holds the check (`GET_SECRET`): it found no row either
                // because there is none or because the role may no longer log in; and a
                // dropped role fails it (42501, 42704). Any failure is checked once more.
                Tx::OneStatement => match f(&mut db).await {
                    Err(e) if !e.ended && !c.is_closed() => match role_may_log_in(c).await {
                        Ok(()) => Err(e),
                        Err(ended) => Err(ended),
                    },
                    other => other,
                },
            };
            *open = false;
            if matches!(&result, Err(e) if e.ended) {
                s.ended.store(true, Ordering::Relaxed);
                *client = None;
            }
            result
        }
        Caller::Token { app, token, acted } => {
            let (mut hold, checked, _) = begin(&app.tokens, token, None).await?;
            let Pooled {
                client,
                statements,
                open,
                ..
            } = &mut **hold.0.as_mut().expect("held");
            let result = match act_as_token(checked) {
                Ok(role) => {
                    acted.set(role);
                    f(&mut Db { client, statements }).await
                }
                Err(e) => Err(e),
            };
            // Back to the pool when the transaction ended (its role and search_path were
            // SET LOCAL, and the server's statements make no temporary tables, cursors or
            // session locks: nothing of the request is left); closed otherwise.
            let (result, ended) = match result {
                Ok(v) => match client.batch_execute("COMMIT").await {
                    Ok(()) => (Ok(v), true),
                    Err(e) => (Err(ApiError::from(e)), false),
                },
                Err(e) => {
                    let rolled_back = !client.is_closed() && client.batch_execute("ROLLBACK").await.is_ok();
                    (Err(e), rolled_back)
                }
            };
            if ended {
                *open = false;
            } else {
                hold.discard();
            }
            result
        }
    }
}
