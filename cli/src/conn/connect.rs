//! Connecting: each endpoint in turn, with the TLS attempts its mode calls for, a password
//! from the settings, the password file or a prompt; then the check for vault_ext.

use super::pgpass::password_from_file;
use super::tls::tls_connector;
use super::{describe, is_socket, Endpoint, Mode, Target};
use crate::Failure;
use std::error::Error as StdError;
use std::io::{self, IsTerminal};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::config::{ChannelBinding, SslMode, TargetSessionAttrs};
use tokio_postgres::tls::TlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};
use zeroize::Zeroizing;

/// A connection: its client, and the notifications its server sends after a LISTEN. The
/// connection itself is driven by a task on the runtime it was made on, which ends when the
/// client is dropped (and closes the connection then, without blocking anyone).
pub struct Connection {
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<Notification>,
    pub canceller: Canceller,
}

/// What cancels the statement a connection is running: PostgreSQL's cancel request, sent on a
/// new connection with the TLS the connection itself used.
#[derive(Clone)]
pub struct Canceller {
    token: tokio_postgres::CancelToken,
    tls: Option<MakeTls>,
}

impl Canceller {
    /// Asks the server to cancel the connection's running statement (nothing when it runs none).
    pub async fn cancel(&self) {
        let _ = match &self.tls {
            Some(tls) => self.token.cancel_query(tls.clone()).await,
            None => self.token.cancel_query(NoTls).await,
        };
    }
}

/// Starts the task that drives `conn`, forwarding its notifications (notices are dropped, as
/// libpq's default notice processor would print them to a terminal nobody reads here).
fn drive<S, T>(client: Client, mut conn: tokio_postgres::Connection<S, T>, tls: Option<MakeTls>) -> Connection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: TlsStream + Unpin + Send + 'static,
{
    let (tx, notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let canceller = Canceller {
        token: client.cancel_token(),
        tls,
    };
    Connection {
        client,
        notifications,
        canceller,
    }
}

/// The driver's settings for one endpoint.
pub(super) fn driver_config(target: &Target, ep: &Endpoint, password: Option<&str>) -> Result<Config, Failure> {
    let mut c = Config::new();
    if !ep.host.is_empty() {
        c.host(&ep.host);
    }
    if let Some(a) = &ep.hostaddr {
        c.hostaddr(
            a.parse()
                .map_err(|_| Failure::usage(format!("hostaddr is not an IP address: {a}")))?,
        );
    }
    c.port(ep.port).user(target.user()).dbname(target.dbname());
    let app = target
        .get("application_name")
        .or(target.get("fallback_application_name"))
        .unwrap_or("pgvault");
    c.application_name(app);
    if let Some(p) = password {
        c.password(p);
    }
    if let Some(o) = target.get("options") {
        c.options(o);
    }
    if let Some(t) = target.get("connect_timeout").and_then(|t| t.parse::<u64>().ok()) {
        if t > 0 {
            c.connect_timeout(Duration::from_secs(t.max(2)));
        }
    }
    match target.get("target_session_attrs") {
        None | Some("any") => {}
        Some("read-write") => {
            c.target_session_attrs(TargetSessionAttrs::ReadWrite);
        }
        Some("read-only") => {
            c.target_session_attrs(TargetSessionAttrs::ReadOnly);
        }
        Some(o) => return Err(Failure::usage(format!("invalid target_session_attrs \"{o}\""))),
    }
    match target.get("channel_binding") {
        None | Some("prefer") => {}
        Some("disable") => {
            c.channel_binding(ChannelBinding::Disable);
        }
        Some("require") => {
            c.channel_binding(ChannelBinding::Require);
        }
        Some(o) => return Err(Failure::usage(format!("invalid channel_binding \"{o}\""))),
    }
    Ok(c)
}

/// How one attempt went wrong, in words that keep the cause.
pub(super) fn explain(e: &tokio_postgres::Error, ep: &Endpoint) -> String {
    if let Some(db) = e.as_db_error() {
        return crate::error_text(e)
            + if db.code().code() == "28000" && db.message().contains("no encryption") {
                "\nhint: the server accepts this role only over TLS; use sslmode=require or stronger"
            } else {
                ""
            };
    }
    let mut chain = Vec::new();
    let mut io_kind = None;
    let mut src: Option<&(dyn StdError + 'static)> = StdError::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        let text = s.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        src = s.source();
    }
    let cause = chain.first().cloned().unwrap_or_default();
    let text = e.to_string();
    let place = if is_socket(&ep.host) {
        format!("socket \"{}/.s.PGSQL.{}\"", ep.host, ep.port)
    } else {
        format!("{}:{}", ep.hostaddr.as_deref().unwrap_or(&ep.host), ep.port)
    };
    if text.starts_with("error performing TLS handshake") {
        let mut msg = format!("TLS failure with {place}: {cause}");
        if cause.ends_with("hostname mismatch") || cause.ends_with("IP address mismatch") {
            msg.push_str(&format!(
                "\nhint: the server's certificate does not carry the name \"{}\" (sslmode=verify-full checks it): \
                 connect by a name the certificate carries",
                ep.host
            ));
        } else if cause.contains("certificate verify failed") {
            msg.push_str("\nhint: the server's certificate is not signed by a root in sslrootcert");
        }
        return msg;
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => {
            if is_socket(&ep.host) {
                format!("connection refused at {place}: is the server running and accepting connections there?")
            } else {
                format!("connection refused by {place}: is the server running on that host and accepting TCP/IP connections on that port?")
            }
        }
        Some(io::ErrorKind::NotFound) if is_socket(&ep.host) => {
            format!("no server at {place} (no such socket file): is a server running locally with that socket directory and port?")
        }
        _ if cause.contains("lookup address") || cause.contains("Name or service not known") => {
            format!("unknown host \"{}\": {cause}", ep.host)
        }
        _ if text.starts_with("timeout") => format!("timed out connecting to {place}"),
        _ if cause.is_empty() => format!("{text} ({place})"),
        _ => format!("{text} ({place}): {}", chain.join(": ")),
    }
}

pub(super) fn password_missing(e: &tokio_postgres::Error) -> bool {
    e.to_string() == "invalid configuration" && StdError::source(e).is_some_and(|s| s.to_string() == "password missing")
}

/// One attempt: `config` with `ssl`, over TLS or not.
async fn attempt(config: &Config, ssl: SslMode, tls: Option<MakeTls>) -> Result<Connection, tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(ssl);
    match tls {
        None => config.connect(NoTls).await.map(|(c, conn)| drive(c, conn, None)),
        Some(tls) => config
            .connect(tls.clone())
            .await
            .map(|(c, conn)| drive(c, conn, Some(tls))),
    }
}

type MakeTls = postgres_openssl::MakeTlsConnector;

/// Tries `ep` with the TLS attempts its mode calls for.
pub(super) async fn try_endpoint(
    target: &Target,
    ep: &Endpoint,
    mode: Mode,
    password: Option<&str>,
) -> Result<Connection, tokio_postgres::Error> {
    let config = driver_config(target, ep, password).expect("checked by connect");
    // As libpq: no TLS on Unix-domain sockets, whatever the mode.
    if is_socket(&ep.host) && ep.hostaddr.is_none() {
        return attempt(&config, SslMode::Disable, None).await;
    }
    let tls = || Some(tls_connector(target, mode).expect("checked by connect"));
    match mode {
        Mode::Disable => attempt(&config, SslMode::Disable, None).await,
        Mode::Allow => match attempt(&config, SslMode::Disable, None).await {
            Err(e) if e.as_db_error().is_some() => attempt(&config, SslMode::Require, tls()).await,
            other => other,
        },
        Mode::Prefer => match attempt(&config, SslMode::Prefer, tls()).await {
            Err(e) if e.to_string().starts_with("error performing TLS handshake") || e.as_db_error().is_some() => {
                attempt(&config, SslMode::Disable, None).await.map_err(|_| e)
            }
            other => other,
        },
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => attempt(&config, SslMode::Require, tls()).await,
    }
}

/// Connects (each host in turn, as libpq) and checks that the database has vault_ext. A
/// password the server asks for and nobody gave is asked for at the terminal when `may_prompt`
/// (the commands; never the server).
pub async fn connect(target: &Target, may_prompt: bool) -> Result<Connection, Failure> {
    let mode = target.mode()?;
    let endpoints = target.endpoints()?;
    // Surface file problems (a missing root certificate, an open key) before any attempt.
    if mode > Mode::Disable && endpoints.iter().any(|e| !is_socket(&e.host) || e.hostaddr.is_some()) {
        tls_connector(target, mode)?;
    }
    for ep in &endpoints {
        driver_config(target, ep, None)?;
    }
    let mut errors = Vec::new();
    let mut sqlstate = None;
    let mut client = None;
    for ep in &endpoints {
        let mut from_file = false;
        let mut password = target.get("password").map(|p| Zeroizing::new(p.to_string()));
        if password.is_none() {
            password = password_from_file(target, ep);
            from_file = password.is_some();
        }
        let mut result = try_endpoint(target, ep, mode, password.as_deref().map(String::as_str)).await;
        if let Err(e) = &result {
            if may_prompt && password_missing(e) && io::stdin().is_terminal() {
                let typed = Zeroizing::new(crate::prompt::password(&format!(
                    "Password for user {}: ",
                    target.user()
                ))?);
                result = try_endpoint(target, ep, mode, Some(typed.as_str())).await;
            }
        }
        match result {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(e) => {
                sqlstate = e.code().map(|c| c.code().to_string());
                let mut why = if password_missing(&e) {
                    "the server asks for a password and none is known (set PGPASSWORD, add a ~/.pgpass line, \
                     or run at a terminal to be asked)"
                        .to_string()
                } else {
                    explain(&e, ep)
                };
                if from_file && e.code().map(|c| c.code()) == Some("28P01") {
                    why.push_str("\nhint: the password came from the password file");
                }
                errors.push(why);
            }
        }
    }
    let Some(connection) = client else {
        return Err(Failure::connect(format!(
            "cannot connect to {} (sslmode={}): {}",
            describe(target),
            mode.name(),
            errors.join("\n")
        ))
        .with_sqlstate(sqlstate));
    };
    // pgvault's queries name everything they use (vault.*, pg_catalog): with search_path pinned
    // to pg_catalog, none of them can resolve to a function or operator someone else created
    // in a schema on the user's path (public with CREATE for everyone, a schema named after the
    // user, a path set by ALTER DATABASE / ALTER ROLE ... SET).
    let client = &connection.client;
    client
        .batch_execute("SET search_path = pg_catalog, pg_temp")
        .await
        .map_err(Failure::from)?;
    let installed = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'vault_ext'",
            &[],
        )
        .await
        .map_err(Failure::from)?;
    if installed.is_none() {
        return Err(Failure::no_extension(format!(
            "{} has no vault_ext extension (a superuser runs CREATE EXTENSION vault_ext there, \
             on a server with shared_preload_libraries = 'vault_ext')",
            describe(target)
        )));
    }
    Ok(connection)
}
