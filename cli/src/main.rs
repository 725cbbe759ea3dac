//! pgvault: the secrets of a vault_ext database from the command line.
//!
//! Values travel only as query parameters and results, the child's environment (`run`) and
//! standard output (`get`, `export`); never through argv, messages or files pgvault writes.

mod conn;
mod dotenv;
mod envplan;
mod limits;
mod prompt;
mod remote;
mod serve;
mod text;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use postgres::Client;
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use zeroize::Zeroizing;

const EXIT_CODES: &str = "\
Connection: --dsn (a postgresql:// URL, key=value pairs, or service=NAME), else DATABASE_URL,
else the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE, PGSSLMODE,
PGSSLROOTCERT, ...); passwords from PGPASSWORD, ~/.pgpass (PGPASSFILE) or a prompt.
get, run and export read through pgvault serve instead when PGVAULT_URL (https://...) is set,
with a service token in PGVAULT_TOKEN (and PGVAULT_CACERT, a CA file, if needed).

Exit codes: 0 ok, 1 server error, 2 usage, 3 no such secret (or version), 4 permission denied,
5 cannot connect, 6 no vault_ext in that database, 7 bad input, 8 verify found damaged secrets;
run: the command's own exit code (126 not executable, 127 not found).";

/// The secrets of a vault_ext database: list, read, write, run programs with them.
#[derive(Parser)]
#[command(name = "pgvault", version, after_help = EXIT_CODES, arg_required_else_help = true)]
struct Cli {
    /// Where to connect: a postgresql:// URL, libpq key=value pairs, or service=NAME
    /// (a password here is visible in ps: prefer PGPASSWORD or ~/.pgpass)
    #[arg(long, global = true, value_name = "CONNINFO")]
    dsn: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Env,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Names, masked values, tags, descriptions and expiry (vault_viewer)
    #[command(
        after_help = "Examples:\n  pgvault list\n  pgvault list --tag prod\n  pgvault list --json | jq '.[].name'"
    )]
    List {
        /// Only secrets having this tag (repeat: every tag)
        #[arg(long, value_name = "T")]
        tag: Vec<String>,
        /// A JSON array of objects (masked values only)
        #[arg(long)]
        json: bool,
    },
    /// Print a secret's value (vault_reader)
    #[command(after_help = "Examples:\n  pgvault get stripe_key\n  pgvault get -n stripe_key | sha256sum")]
    Get {
        name: String,
        /// No newline after the value
        #[arg(short = 'n', long)]
        no_newline: bool,
    },
    /// Create or update a secret; the value comes from standard input or a prompt (vault_admin)
    #[command(
        after_help = "The value is all of standard input (one trailing newline dropped) or, at a terminal, typed
twice at a prompt that does not echo; never from the command line, where shell history and ps
would keep it.

Examples:
  printf %s \"$STRIPE_KEY\" | pgvault set stripe_key --tag prod --description \"Stripe live key\"
  pgvault set db_url                         # at a terminal: asks twice, without echo
  pgvault set stripe_key --keep-value --expires 30d --tag prod,rotated
  pgvault set stripe_key --keep-value --expires never"
    )]
    Set {
        name: String,
        /// Replace the description
        #[arg(long, value_name = "D")]
        description: Option<String>,
        /// Replace the tags (repeat, or comma-separated)
        #[arg(long, value_name = "T", value_delimiter = ',')]
        tag: Vec<String>,
        /// Expiry: a timestamp, an interval from now (30d, 12h, 2w, "+30 days") or never
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// Change only tags / description / expiry of an existing secret, not its value
        #[arg(long)]
        keep_value: bool,
        #[arg(hide = true)]
        value_in_argv: Vec<String>,
    },
    /// Delete a secret (vault_admin)
    #[command(after_help = "Example:\n  pgvault rm stripe_key")]
    Rm { name: String },
    /// Run a command with the secrets in its environment (vault_reader)
    #[command(
        after_help = run_help()
    )]
    Run {
        /// Only secrets having this tag (repeat: every tag)
        #[arg(long, value_name = "T")]
        tag: Vec<String>,
        /// Only these secrets (repeat)
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Let a secret set this otherwise protected variable (repeat)
        #[arg(long, value_name = "VAR")]
        allow_var: Vec<String>,
        /// Keep the value of a variable already in the environment instead of the secret's
        #[arg(long)]
        keep_env: bool,
        /// The command and its arguments, after --
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Create or update one secret per KEY=VALUE line of an env file (vault_admin)
    #[command(
        after_help = "Unchanged values are not rewritten (no new version); a key given twice: the last wins,
with a warning. FILE may be - for standard input. One transaction: a malformed line imports
nothing.

Examples:
  pgvault import .env --tag imported
  cat .env | pgvault import -"
    )]
    Import {
        #[arg(value_name = "FILE.env")]
        file: String,
        /// Tags for every imported secret (replaces theirs)
        #[arg(long, value_name = "T")]
        tag: Vec<String>,
    },
    /// Write the values to standard output (vault_reader)
    #[command(
        after_help = "Examples:\n  pgvault export --format json > backup.json\n  pgvault export --tag prod > prod.env"
    )]
    Export {
        #[arg(long, value_enum, default_value = "env")]
        format: Format,
        #[arg(long, value_name = "T")]
        tag: Vec<String>,
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
    },
    /// The versions of a secret, without values (vault_admin)
    #[command(after_help = "Example:\n  pgvault history stripe_key")]
    History { name: String },
    /// Make an earlier version the current value (a new version) (vault_admin)
    #[command(after_help = "Example:\n  pgvault history stripe_key && pgvault rollback stripe_key 3")]
    Rollback { name: String, version: i32 },
    /// The audit log: who created, changed, deleted, rolled back or granted what (vault_admin)
    #[command(
        after_help = "Examples:\n  pgvault audit --since 7d\n  pgvault audit --secret stripe_key --since 2026-01-01"
    )]
    Audit {
        /// Only rows about this secret
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
        /// Only rows since a timestamp or an interval ago (7d, 24h)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many rows, the latest
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Let ROLE read the secret (a per-secret grant narrows readers to its grantees) (vault_admin)
    #[command(after_help = "Example:\n  pgvault grant stripe_key billing_service")]
    Grant { name: String, role: String },
    /// Take back a per-secret grant (vault_admin)
    #[command(after_help = "Example:\n  pgvault revoke stripe_key billing_service")]
    Revoke { name: String, role: String },
    /// Check that every secret and kept version decrypts (vault_admin); exit 8 when some do not
    #[command(after_help = "Example:\n  pgvault verify")]
    Verify,
    /// The web console and its JSON API over HTTPS, each user logged in as their own role
    #[command(
        after_help = "Users log in with their Postgres role and password (checked by the database, which must
ask for one: scram-sha-256 in pg_hba.conf); each session uses that role's own connection, made
with the connection options above. The console is at https://LISTEN/; the API under /api/v1.
Services send `Authorization: Bearer TOKEN` (pgvault token create) instead: those requests run
on the connection options' own role (never a superuser), switched to the token's role.

Examples:
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \\
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout key.pem -out cert.pem
  pgvault --dsn 'host=db.internal dbname=app sslmode=verify-full' serve --tls-cert cert.pem --tls-key key.pem"
    )]
    Serve {
        /// Address and port to listen on
        #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        /// The server's certificate chain (PEM)
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<std::path::PathBuf>,
        /// The certificate's private key (PEM)
        #[arg(long, value_name = "FILE")]
        tls_key: Option<std::path::PathBuf>,
        /// Serve plain HTTP (loopback addresses only, e.g. behind a TLS proxy on this host)
        #[arg(long)]
        insecure_http: bool,
        /// End a session unused for this many seconds
        #[arg(long, default_value_t = 900, value_name = "SECS")]
        idle_timeout: u64,
        /// Failed logins from one address, within a minute, before it gets 429
        #[arg(long, default_value_t = 5, value_name = "N")]
        max_login_failures: usize,
        /// Connections of the server's own role (the connection options) for Bearer-token requests
        #[arg(long, default_value_t = 4, value_name = "N")]
        token_connections: usize,
        /// Database connections per session, opened at login as that role, so a user's
        /// parallel requests do not wait for each other (1: one connection per session)
        #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
        session_connections: u16,
        /// Console sessions one role may hold at once; a new login past that ends its oldest
        #[arg(long, default_value_t = 4, value_name = "N")]
        max_sessions_per_role: usize,
        /// A proxy in front of the server (repeatable): its X-Forwarded-For names the client for
        /// the login limits, and it has no per-address connection share
        #[arg(long = "trusted-proxy", value_name = "IP")]
        trusted_proxies: Vec<std::net::IpAddr>,
        /// Connections open at once (default: half of what the open-file limit leaves after 64)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
        /// Connections open at once from one address (default: a quarter of --max-connections, at least 8)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections_per_address: Option<u32>,
        /// Seconds a new connection has for its TLS handshake, and then for its first request's head
        #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        first_request_timeout: u64,
        /// Seconds a kept-alive connection may wait for its next request's head before it is closed
        #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        keepalive_timeout: u64,
        /// The mount of HashiCorp Vault's KV version 2 API under /v1/ (hvac, node-vault, vault kv get)
        #[arg(long, default_value = "secret", value_name = "NAME")]
        kv_mount: String,
    },
    /// Service tokens for pgvault serve's API: create (shown once), list, revoke (vault_admin)
    #[command(
        subcommand,
        after_help = "A token acts as one role (--role) over `Authorization: Bearer TOKEN`; the server's own login
role must be a NOINHERIT member of that role. Only a hash of the token is stored.

Examples:
  pgvault token create ci-deploy --role ci_reader --expires 90d > ci.token
  pgvault token list
  pgvault token revoke ci-deploy
  PGVAULT_URL=https://vault.internal:8443 PGVAULT_TOKEN=$(cat ci.token) pgvault run --tag prod -- ./deploy"
    )]
    Token(TokenCmd),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  pgvault completions bash > /etc/bash_completion.d/pgvault\n  pgvault completions zsh > \"${fpath[1]}/_pgvault\"\n  pgvault completions fish > ~/.config/fish/completions/pgvault.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token acting as ROLE; printed once, to standard output
    Create {
        name: String,
        /// The role the token acts as (not a superuser)
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Expiry: a timestamp, an interval from now (30d, 12h, 2w, "+30 days") or never
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// The tokens: name, role, creator, creation, expiry, last use, state (never the token)
    List {
        /// A JSON array of objects
        #[arg(long)]
        json: bool,
    },
    /// Revoke the active token NAME: it stops working at once
    Revoke { name: String },
}

/// Why pgvault stops, as the documented exit code and a message (never a value).
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
    /// The server's SQLSTATE, when the database refused (`pgvault serve` maps it to HTTP).
    sqlstate: Option<String>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            sqlstate: None,
        }
    }
    pub fn with_sqlstate(mut self, sqlstate: Option<String>) -> Failure {
        self.sqlstate = sqlstate;
        self
    }
    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlstate.as_deref()
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(2, message)
    }
    fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(3, message)
    }
    fn denied(message: impl Into<String>) -> Failure {
        Failure::new(4, message)
    }
    pub fn connect(message: impl Into<String>) -> Failure {
        Failure::new(5, message)
    }
    pub fn no_extension(message: impl Into<String>) -> Failure {
        Failure::new(6, message)
    }
    fn input(message: impl Into<String>) -> Failure {
        Failure::new(7, message)
    }
}

pub const ROLES_HINT: &str =
    "hint: list needs vault_viewer, get/run/export vault_reader, set/rm/import/history/rollback/\
audit/grant/revoke/verify vault_admin (GRANT vault_reader TO your_role)";

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        let code = match e.code().map(|c| c.code()) {
            Some("42501") => 4,
            Some("P0002") => 3,
            Some("3F000" | "42P01" | "42883") => 6,
            Some("42704" | "22007" | "22008" | "22P02" | "22023" | "22004" | "42710") => 7,
            None if e.is_closed() => 5,
            _ => 1,
        };
        let mut message = error_text(&e);
        if code == 4 {
            message.push('\n');
            message.push_str(ROLES_HINT);
        }
        Failure::new(code, message).with_sqlstate(e.code().map(|c| c.code().to_string()))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        // The reader went away (pgvault list | head -1): stop quietly, as cat does.
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure::new(0, "");
        }
        Failure::new(1, e.to_string())
    }
}

/// A server error as psql shows it: severity, message, SQLSTATE, detail and hint.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("\ndetail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("\nhint: {hint}"));
            }
            s
        }
        None => e.to_string(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.code == 0 => ExitCode::SUCCESS,
        Err(f) => {
            let _ = writeln!(io::stderr(), "pgvault: {}", f.message);
            if f.code == 2 {
                let _ = writeln!(
                    io::stderr(),
                    "run pgvault help for the commands, pgvault help COMMAND for one"
                );
            }
            ExitCode::from(f.code)
        }
    }
}

/// A name a new secret may have: not empty, no `=` (the `set KEY=VALUE` habit would put the
/// value in the name, shown to every viewer), no control characters.
fn check_name(name: &str) -> Result<(), Failure> {
    if let Some((key, _)) = name.split_once('=') {
        let key = text::escape(key);
        return Err(Failure::usage(format!(
            "a secret name cannot contain \"=\"; nothing was changed. pgvault takes values from standard \
             input, never the command line: printf %s \"$VALUE\" | pgvault set {key}"
        )));
    }
    if name.is_empty() {
        return Err(Failure::usage("a secret name cannot be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "a secret name cannot contain control characters: {}",
            text::escape(name)
        )));
    }
    Ok(())
}

fn run_cli(cli: Cli) -> Result<(), Failure> {
    let target = || conn::config(cli.dsn.as_deref());
    let connect = || conn::connect(&target()?);
    // get / run / export through `pgvault serve` with a token, when PGVAULT_URL is set.
    let remote = || match remote::from_env(None)? {
        Some(_) if cli.dsn.is_some() => Err(Failure::usage(
            "give either --dsn (a database connection) or PGVAULT_URL (pgvault serve with PGVAULT_TOKEN), not both",
        )),
        r => Ok(r),
    };
    match cli.command {
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pgvault", &mut script);
            let mut out = io::stdout().lock();
            out.write_all(&script)?;
            out.flush()?;
            Ok(())
        }
        Cmd::List { tag, json } => list(&mut connect()?, &tag, json),
        Cmd::Get { name, no_newline } => {
            let found = match remote()? {
                Some(r) => {
                    r.may_read()?;
                    match r.value(&name)? {
                        remote::Fetched::Value(v) => Some(Some(v)),
                        remote::Fetched::NotGranted => Some(None),
                        remote::Fetched::NotFound => None,
                    }
                }
                None => get(&mut connect()?, &name)?,
            };
            write_value(&name, found, no_newline)
        }
        Cmd::Set {
            name,
            description,
            tag,
            expires,
            keep_value,
            value_in_argv,
        } => {
            check_name(&name)?;
            if !value_in_argv.is_empty() {
                return Err(Failure::usage(
                    "set takes the value from standard input or a prompt, never from the command line \
                     (it would be kept in shell history and shown by ps): printf %s \"$VALUE\" | pgvault set NAME",
                ));
            }
            let expires = expires.as_deref().map(When::parse).transpose()?;
            if keep_value && description.is_none() && tag.is_empty() && expires.is_none() {
                return Err(Failure::usage(
                    "set --keep-value changes tags, description or expiry: give --tag, --description or --expires",
                ));
            }
            // Connect and check the rights first: nobody types a value only to learn it was for nothing.
            let mut client = connect()?;
            may_write(&mut client)?;
            let value = if keep_value { None } else { Some(read_value(&name)?) };
            let mut tx = client.transaction()?;
            let outcome = upsert(
                &mut tx,
                &name,
                value.as_ref().map(|v| v.as_str()),
                description.as_deref(),
                &tag,
                false,
            )?;
            if let Some(when) = expires {
                set_expiry(&mut tx, &name, &when)?;
            }
            tx.commit()?;
            eprintln!("pgvault: {} secret {}", outcome.word(), text::escape(&name));
            Ok(())
        }
        Cmd::Rm { name } => {
            let n = connect()?.execute("DELETE FROM vault.secrets WHERE name = $1", &[&name])?;
            if n == 0 {
                return Err(Failure::not_found(format!("no secret named {}", text::escape(&name))));
            }
            eprintln!("pgvault: deleted secret {}", text::escape(&name));
            Ok(())
        }
        Cmd::Run {
            tag,
            only,
            allow_var,
            keep_env,
            command,
        } => {
            let secrets = match remote()? {
                Some(r) => select(fetch_remote(&r, &tag, &only)?, &tag, &only)?,
                None => select(fetch(connect()?, &tag, &only)?, &tag, &only)?,
            };
            exec_with(secrets, &command, &allow_var, keep_env)
        }
        Cmd::Import { file, tag } => import(&mut connect()?, &file, &tag),
        Cmd::Export { format, tag, only } => {
            let secrets = match remote()? {
                Some(r) => select(fetch_remote(&r, &tag, &only)?, &tag, &only)?,
                None => select(fetch(connect()?, &tag, &only)?, &tag, &only)?,
            };
            export(&secrets, format)
        }
        Cmd::History { name } => history(&mut connect()?, &name),
        Cmd::Rollback { name, version } => {
            let mut client = connect()?;
            let id = secret_id(&mut client, &name)?;
            let new: i32 = client
                .query_one("SELECT vault.rollback_secret($1::text::uuid, $2)", &[&id, &version])?
                .get(0);
            eprintln!(
                "pgvault: secret {} now has the value of version {version} (as version {new})",
                text::escape(&name)
            );
            Ok(())
        }
        Cmd::Audit { secret, since, limit } => audit(&mut connect()?, secret.as_deref(), since.as_deref(), limit),
        Cmd::Grant { name, role } => {
            let mut client = connect()?;
            let id = secret_id(&mut client, &name)?;
            client.execute(
                "SELECT vault.grant_secret($1::text::uuid, $2::text::regrole)",
                &[&id, &role],
            )?;
            eprintln!(
                "pgvault: {} may read secret {} (with vault_reader)",
                text::escape(&role),
                text::escape(&name)
            );
            Ok(())
        }
        Cmd::Revoke { name, role } => {
            let mut client = connect()?;
            let id = secret_id(&mut client, &name)?;
            let had = client
                .query_one(
                    "SELECT count(*) FROM vault.secret_acl WHERE secret_id = $1::text::uuid AND grantee = $2::text::regrole",
                    &[&id, &role],
                )?
                .get::<_, i64>(0);
            client.execute(
                "SELECT vault.revoke_secret($1::text::uuid, $2::text::regrole)",
                &[&id, &role],
            )?;
            if had == 0 {
                eprintln!(
                    "pgvault: warning: {} had no grant on secret {}",
                    text::escape(&role),
                    text::escape(&name)
                );
            } else {
                eprintln!(
                    "pgvault: revoked {}'s grant on secret {}",
                    text::escape(&role),
                    text::escape(&name)
                );
            }
            Ok(())
        }
        Cmd::Verify => verify(&mut connect()?),
        Cmd::Token(TokenCmd::Create { name, role, expires }) => {
            let when = expires.as_deref().map(When::parse).transpose()?;
            token_create(&mut connect()?, &name, &role, when.as_ref())
        }
        Cmd::Token(TokenCmd::List { json }) => token_list(&mut connect()?, json),
        Cmd::Token(TokenCmd::Revoke { name }) => {
            connect()?.execute("SELECT vault.revoke_api_token($1)", &[&name])?;
            eprintln!("pgvault: revoked token {}", text::escape(&name));
            Ok(())
        }
        Cmd::Serve {
            listen,
            tls_cert,
            tls_key,
            insecure_http,
            idle_timeout,
            max_login_failures,
            token_connections,
            session_connections,
            max_sessions_per_role,
            trusted_proxies,
            max_connections,
            max_connections_per_address,
            first_request_timeout,
            keepalive_timeout,
            kv_mount,
        } => serve::run(
            target()?,
            serve::Options {
                listen,
                tls_cert,
                tls_key,
                insecure_http,
                idle_timeout: std::time::Duration::from_secs(idle_timeout.max(1)),
                max_login_failures: max_login_failures.max(1),
                login_window: std::time::Duration::from_secs(60),
                token_connections,
                session_connections: usize::from(session_connections),
                max_sessions_per_role,
                max_connections_per_address: max_connections_per_address.map(|n| n as usize).unwrap_or_else(|| {
                    limits::default_max_per_address(
                        max_connections.map_or_else(limits::default_max_connections, |n| n as usize),
                    )
                }),
                max_connections: max_connections.map_or_else(limits::default_max_connections, |n| n as usize),
                trusted_proxies,
                first_request_timeout: std::time::Duration::from_secs(first_request_timeout),
                keepalive_timeout: std::time::Duration::from_secs(keepalive_timeout),
                kv_mount,
            },
        ),
    }
}

/// `pgvault run --help`'s text after the options: the protected variables' rule in full.
fn run_help() -> String {
    format!(
        "Variables are named after the secrets, upper-cased, other characters as _
(db.url-prod -> DB_URL_PROD). A secret never sets a variable that tells a program where to find
code, configuration or a helper command (pager, editor, askpass, browser), where to send its
traffic (proxies), or which database, host or repository to talk to (PG*, GIT_*, SSH_*), unless
the variable is named with --allow-var: anyone who may write a secret could otherwise run code
in the child or send its connections elsewhere. The rule is by families (listed below; case does
not matter); names that cannot be variables and two secrets for one variable are skipped with a
warning.

{}

Examples:
  pgvault run --tag prod -- ./server
  pgvault run --only db_url -- sh -c 'psql \"$DB_URL\"'
  pgvault run --keep-env -- make deploy       # variables already set win",
        envplan::rule_help()
    )
}

/// The id of the secret named `name`, or exit 3.
fn secret_id(client: &mut Client, name: &str) -> Result<String, Failure> {
    client
        .query_opt("SELECT id::text FROM vault.secrets WHERE name = $1", &[&name])?
        .map(|r| r.get(0))
        .ok_or_else(|| Failure::not_found(format!("no secret named {}", text::escape(name))))
}

/// Refuses (exit 4) a role that could not create or update secrets, before any prompt.
fn may_write(client: &mut Client) -> Result<(), Failure> {
    let ok: bool = client
        .query_one(
            "SELECT has_function_privilege('vault.create_secret(text, text, text, uuid, text[], boolean)', 'EXECUTE') \
                AND has_function_privilege('vault.update_secret(uuid, text, text, text, uuid, text[], integer, boolean)', 'EXECUTE') \
                AND has_table_privilege('vault.secrets', 'SELECT')",
            &[],
        )?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(Failure::denied(format!(
            "permission denied: set needs vault_admin (nothing was asked or changed)\n{ROLES_HINT}"
        )))
    }
}

/// An expiry or a starting point: a timestamp, an interval from now, or never.
#[derive(Debug, PartialEq)]
enum When {
    Never,
    In(String),
    At(String),
}

impl When {
    fn parse(s: &str) -> Result<When, Failure> {
        let t = s.trim();
        if t.is_empty() || t == "never" {
            return Ok(When::Never);
        }
        match text::interval(t) {
            Some(i) => Ok(When::In(i)),
            None => Ok(When::At(t.to_string())),
        }
    }
}

fn bad_when<'a>(what: &str, s: &'a str) -> impl Fn(postgres::Error) -> Failure + 'a {
    let what = what.to_string();
    move |e| {
        match e.code().map(|c| c.code()) {
        Some("22007" | "22008" | "22P02" | "22015") => Failure::usage(format!(
            "{what}: \"{}\" is neither a timestamp (2026-12-31, 2026-12-31 23:59+00) nor an interval (30d, 12h, 2w, +30 days)",
            text::escape(s)
        )),
        _ => Failure::from(e),
    }
    }
}

fn set_expiry(tx: &mut postgres::Transaction<'_>, name: &str, when: &When) -> Result<(), Failure> {
    let (interval, at) = match when {
        When::Never => (None, None),
        When::In(i) => (Some(i.as_str()), None),
        When::At(a) => (None, Some(a.as_str())),
    };
    let shown = interval.or(at).unwrap_or("never");
    let row = tx
        .query_one(
            "UPDATE vault.secrets SET expires_at = CASE WHEN $2::text IS NOT NULL THEN now() + $2::text::interval \
                                                   ELSE $3::text::timestamptz END \
              WHERE name = $1 RETURNING coalesce(expires_at <= now(), false)",
            &[&name, &interval, &at],
        )
        .map_err(bad_when("--expires", shown))?;
    if row.get::<_, bool>(0) {
        eprintln!(
            "pgvault: warning: the expiry {} is in the past: the secret is expired already",
            text::escape(shown)
        );
    }
    Ok(())
}

fn list(client: &mut Client, tags: &[String], json: bool) -> Result<(), Failure> {
    let rows = client.query(
        "SELECT name, id::text, coalesce(masked_secret, ''), tags, description, \
                to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                coalesce(expires_at <= now(), false), \
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                coalesce(to_char(expires_at, 'YYYY-MM-DD HH24:MI:SSOF'), ''), \
                to_char(updated_at, 'YYYY-MM-DD HH24:MI:SSOF') \
           FROM vault.masked_secrets \
          WHERE tags @> $1::text[] \
          ORDER BY name NULLS LAST, id",
        &[&tags],
    )?;
    let mut out = io::stdout().lock();
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.get::<_, Option<String>>(0),
                    "id": r.get::<_, String>(1),
                    "masked": r.get::<_, String>(2),
                    "tags": serve::tags_of(r, 3),
                    "description": r.get::<_, String>(4),
                    "expires_at": r.get::<_, Option<String>>(5),
                    "expired": r.get::<_, bool>(6),
                    "updated_at": r.get::<_, String>(7),
                })
            })
            .collect();
        let s = serde_json::to_string_pretty(&items).map_err(|e| Failure::new(1, e.to_string()))?;
        writeln!(out, "{s}")?;
        return Ok(());
    }
    let mut table = vec![["NAME", "VALUE", "TAGS", "EXPIRES", "UPDATED", "DESCRIPTION"].map(String::from)];
    for r in &rows {
        let name = match r.get::<_, Option<String>>(0) {
            Some(n) => text::escape(&n),
            None => format!("(id {})", r.get::<_, String>(1)),
        };
        let tags = serve::tags_of(r, 3);
        let expires: String = r.get(8);
        let expires = if r.get::<_, bool>(6) {
            format!("{expires} (expired)")
        } else {
            expires
        };
        table.push([
            name,
            text::escape(&r.get::<_, String>(2)),
            text::escape(&tags.join(",")),
            expires,
            r.get(9),
            text::escape(&r.get::<_, String>(4)),
        ]);
    }
    text::write_table(&mut out, &table)?;
    Ok(())
}

/// The secret `name`: None when there is none, Some(None) when its per-secret grants leave
/// this role out.
fn get(client: &mut Client, name: &str) -> Result<Option<Option<Zeroizing<String>>>, Failure> {
    let row = client.query_opt(
        "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1",
        &[&name],
    )?;
    Ok(row.map(|r| r.get::<_, Option<String>>(0).map(Zeroizing::new)))
}

/// What `get` prints (or refuses), over SQL or HTTP alike.
fn write_value(name: &str, found: Option<Option<Zeroizing<String>>>, no_newline: bool) -> Result<(), Failure> {
    let Some(value) = found else {
        return Err(Failure::not_found(format!("no secret named {}", text::escape(name))));
    };
    let value = value.ok_or_else(|| not_granted(name))?;
    let mut out = io::stdout().lock();
    out.write_all(value.as_bytes())?;
    if !no_newline {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The value for `set`: all of standard input (one trailing newline dropped), or typed twice
/// at a prompt that does not echo when standard input is a terminal.
fn read_value(name: &str) -> Result<Zeroizing<String>, Failure> {
    let shown = text::escape(name);
    let value = if io::stdin().is_terminal() {
        let first = Zeroizing::new(prompt::password(&format!("value for {shown}: "))?);
        let again = Zeroizing::new(prompt::password("again: ")?);
        if first != again {
            return Err(Failure::input("the two values differ; nothing was changed"));
        }
        first
    } else {
        let mut bytes = Zeroizing::new(Vec::new());
        io::stdin().read_to_end(&mut bytes)?;
        let mut text = Zeroizing::new(
            String::from_utf8(std::mem::take(&mut *bytes))
                .map_err(|_| Failure::input("the value on standard input is not UTF-8 text"))?,
        );
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if value.is_empty() {
        return Err(Failure::input(format!("empty value for {shown}; nothing was changed")));
    }
    check_value(name, &value)?;
    Ok(value)
}

/// The value of a secret whose per-secret grants (vault.grant_secret) leave this role out, or
/// of a non-exportable secret (never returned, also not to vault_admin), reads as NULL.
fn not_granted(name: &str) -> Failure {
    Failure::denied(format!(
        "secret {} is not readable by this role: vault.grant_secret narrowed it to other roles \
         (see vault.secret_grants), or it is not exportable (only used inside the server, by \
         vault.hmac, vault.sign_jwt, ...)",
        text::escape(name)
    ))
}

fn check_value(name: &str, value: &str) -> Result<(), Failure> {
    if value.contains('\0') {
        return Err(Failure::input(format!(
            "the value for {} contains a NUL byte, which text cannot hold",
            text::escape(name)
        )));
    }
    Ok(())
}

enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Creates or updates the secret `name` inside `tx`. A value of None keeps the value (the
/// secret must exist); tags given replace the secret's tags; a description given replaces its
/// description. With `skip_same`, a value equal to the stored one is not rewritten.
fn upsert(
    tx: &mut postgres::Transaction<'_>,
    name: &str,
    value: Option<&str>,
    description: Option<&str>,
    tags: &[String],
    skip_same: bool,
) -> Result<Outcome, Failure> {
    let tags = (!tags.is_empty()).then_some(tags);
    let existing = tx.query_opt(
        "SELECT id::text, tags, description FROM vault.secrets WHERE name = $1 FOR UPDATE",
        &[&name],
    )?;
    match existing {
        Some(row) => {
            let id: String = row.get(0);
            let mut value = value;
            if skip_same {
                if let Some(v) = value {
                    // Compared here, not in SQL: a value sent as a query parameter would reach a log
                    // that records parameters.
                    let stored: Option<String> = tx
                        .query_one(
                            "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE id = $1::text::uuid",
                            &[&id],
                        )?
                        .get(0);
                    let stored = stored.map(Zeroizing::new);
                    if stored.as_deref().map(String::as_str) == Some(v) {
                        value = None;
                    }
                }
                let same_tags = tags.is_none_or(|t| serve::tags_of(&row, 1) == t);
                let same_desc = description.is_none_or(|d| row.get::<_, String>(2) == d);
                if value.is_none() && same_tags && same_desc {
                    return Ok(Outcome::Unchanged);
                }
            }
            tx.execute(
                "SELECT vault.update_secret($1::text::uuid, $2, NULL, $3, NULL, $4::text[])",
                &[&id, &value, &description, &tags],
            )?;
            Ok(Outcome::Updated)
        }
        None => {
            let Some(value) = value else {
                return Err(Failure::not_found(format!(
                    "no secret named {} (--keep-value changes an existing secret)",
                    text::escape(name)
                )));
            };
            tx.execute(
                "SELECT vault.create_secret($1, $2, coalesce($3, ''), NULL, $4::text[])",
                &[&value, &name, &description, &tags],
            )?;
            Ok(Outcome::Created)
        }
    }
}

type Secrets = Vec<(String, Zeroizing<String>)>;

/// A named secret as read: its value (None when per-secret grants leave this role out) and
/// whether it has expired.
struct Row {
    name: String,
    value: Option<Zeroizing<String>>,
    expired: bool,
}

/// The secrets that have a name, every tag in `tags` and, when `only` is not empty, one of
/// those names; by name.
fn fetch(mut client: Client, tags: &[String], only: &[String]) -> Result<Vec<Row>, Failure> {
    let only_filter = (!only.is_empty()).then_some(only);
    let rows = client.query(
        "SELECT name, decrypted_secret, coalesce(expires_at <= now(), false) \
           FROM vault.decrypted_secrets \
          WHERE name IS NOT NULL AND tags @> $1::text[] AND ($2::text[] IS NULL OR name = ANY($2)) \
          ORDER BY name",
        &[&tags, &only_filter],
    )?;
    Ok(rows
        .iter()
        .map(|r| Row {
            name: r.get(0),
            value: r.get::<_, Option<String>>(1).map(Zeroizing::new),
            expired: r.get(2),
        })
        .collect())
}

/// [`fetch`] through `pgvault serve`: the list (the same filter and order), then each value.
fn fetch_remote(r: &remote::Remote, tags: &[String], only: &[String]) -> Result<Vec<Row>, Failure> {
    r.may_read()?;
    let mut rows = Vec::new();
    for item in r.list(tags)? {
        let Some(name) = item.name else { continue };
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let value = match r.value(&name)? {
            remote::Fetched::Value(v) => Some(v),
            remote::Fetched::NotGranted => None,
            // Deleted since the list was made.
            remote::Fetched::NotFound => continue,
        };
        rows.push(Row {
            name,
            value,
            expired: item.expired,
        });
    }
    Ok(rows)
}

/// Name and value of the rows this role may read; the others are left out with a warning,
/// and an error when named in `only` (each of which must exist).
fn select(rows: Vec<Row>, tags: &[String], only: &[String]) -> Result<Secrets, Failure> {
    let mut secrets = Vec::with_capacity(rows.len());
    for r in &rows {
        let name = r.name.clone();
        let Some(value) = r.value.clone() else {
            // A secret with per-secret grants that leave this role out: named ones are an
            // error, the others are left out with a word on standard error.
            if only.contains(&name) {
                return Err(not_granted(&name));
            }
            eprintln!(
                "pgvault: warning: skipping secret {}: its grants leave this role out, or it is not exportable",
                text::escape(&name)
            );
            continue;
        };
        if r.expired {
            eprintln!(
                "pgvault: warning: secret {} has expired (its value is used all the same)",
                text::escape(&name)
            );
        }
        secrets.push((name, value));
    }
    if let Some(missing) = only.iter().find(|n| !rows.iter().any(|r| &r.name == *n)) {
        let why = if tags.is_empty() { "" } else { " with those tags" };
        return Err(Failure::not_found(format!(
            "no secret named {}{why}",
            text::escape(missing)
        )));
    }
    Ok(secrets)
}

/// Replaces pgvault with `child`, the secrets in its environment: the exit code and signals
/// are the child's own, and nothing of pgvault (its connection included) stays around.
fn exec_with(secrets: Secrets, child: &[String], allow: &[String], keep_env: bool) -> Result<(), Failure> {
    let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
    // The service token (get/run/export over HTTPS) is pgvault's, never the child's.
    let plan = envplan::plan(&names, allow, keep_env, &|v| {
        v != "PGVAULT_TOKEN" && std::env::var_os(v).is_some()
    });
    for w in &plan.warnings {
        eprintln!("pgvault: warning: {w}");
    }
    let mut command = Command::new(&child[0]);
    command.args(&child[1..]).env_remove("PGVAULT_TOKEN");
    for (i, var) in &plan.set {
        command.env(var, secrets[*i].1.as_str());
    }
    let err = command.exec();
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Err(Failure::new(
        code,
        format!("cannot run {}: {err}", text::escape(&child[0])),
    ))
}

fn import(client: &mut Client, file: &str, tags: &[String]) -> Result<(), Failure> {
    let mut raw = Zeroizing::new(String::new());
    if file == "-" {
        io::stdin()
            .read_to_string(&mut raw)
            .map_err(|_| Failure::input("standard input is not UTF-8 text"))?;
    } else {
        let bytes =
            Zeroizing::new(std::fs::read(file).map_err(|e| Failure::input(format!("cannot read {file}: {e}")))?);
        *raw = String::from_utf8(bytes.to_vec()).map_err(|_| Failure::input(format!("{file} is not UTF-8 text")))?;
    }
    // Editors on Windows start files with a byte order mark.
    let body = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
    let pairs = dotenv::parse(body).map_err(|e| Failure::input(format!("{file}: {e}; nothing was imported")))?;
    let pairs: Vec<(String, Zeroizing<String>)> = pairs.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect();
    // Last one wins, as when a shell sources the file.
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        check_name(key).map_err(|f| Failure::input(format!("{file}: {}; nothing was imported", f.message)))?;
        check_value(key, value).map_err(|f| Failure::input(format!("{file}: {}; nothing was imported", f.message)))?;
        if last.insert(key.as_str(), i).is_some() {
            eprintln!("pgvault: warning: {file}: {key} is given more than once; the last one wins");
        }
    }
    let mut tx = client.transaction()?;
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if last[key.as_str()] != i {
            continue;
        }
        match upsert(&mut tx, key, Some(value), None, tags, true)? {
            Outcome::Created => created += 1,
            Outcome::Updated => updated += 1,
            Outcome::Unchanged => unchanged += 1,
        }
    }
    tx.commit()?;
    eprintln!(
        "pgvault: imported {} secrets ({created} created, {updated} updated, {unchanged} unchanged)",
        last.len()
    );
    Ok(())
}

fn export(secrets: &[(String, Zeroizing<String>)], format: Format) -> Result<(), Failure> {
    let mut text = Zeroizing::new(String::new());
    let mut written = 0;
    match format {
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> = secrets
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.to_string())))
                .collect();
            text.push_str(&serde_json::to_string_pretty(&map).map_err(|e| Failure::new(1, e.to_string()))?);
            text.push('\n');
            written = secrets.len();
        }
        Format::Env => {
            for (name, value) in secrets {
                if !dotenv::is_valid_key(name) {
                    eprintln!(
                        "pgvault: warning: skipping secret {}: its name cannot be a key in an env file (use --format json)",
                        crate::text::escape(name)
                    );
                    continue;
                }
                text.push_str(&dotenv::format_line(name, value));
                written += 1;
            }
        }
    }
    eprintln!(
        "pgvault: writing {written} secret values in plain text to standard output{}",
        if io::stdout().is_terminal() {
            " (this terminal)"
        } else {
            ""
        }
    );
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn history(client: &mut Client, name: &str) -> Result<(), Failure> {
    let id = secret_id(client, name)?;
    // A kept version's created_at / created_by say when and by whom it was replaced.
    let rows = client.query(
        "SELECT version, 'current', to_char(updated_at, 'YYYY-MM-DD HH24:MI:SSOF'), '' \
           FROM vault.secrets WHERE id = $1::text::uuid \
         UNION ALL \
         SELECT version, 'replaced', to_char(created_at, 'YYYY-MM-DD HH24:MI:SSOF'), created_by::text \
           FROM vault.secret_versions WHERE secret_id = $1::text::uuid \
         ORDER BY 1 DESC",
        &[&id],
    )?;
    let mut table = vec![["VERSION", "STATE", "SINCE", "BY"].map(String::from)];
    for r in &rows {
        table.push([
            r.get::<_, i32>(0).to_string(),
            r.get(1),
            r.get(2),
            text::escape(&r.get::<_, String>(3)),
        ]);
    }
    text::write_table(&mut io::stdout().lock(), &table)?;
    Ok(())
}

fn audit(client: &mut Client, secret: Option<&str>, since: Option<&str>, limit: i64) -> Result<(), Failure> {
    let (interval, at) = match since.map(When::parse).transpose()? {
        None | Some(When::Never) => (None, None),
        Some(When::In(i)) => (Some(i), None),
        Some(When::At(a)) => (None, Some(a)),
    };
    let rows = client
        .query(
            "SELECT * FROM ( \
               SELECT id, to_char(at, 'YYYY-MM-DD HH24:MI:SSOF'), session_role::text, action, \
                      coalesce(secret_name, coalesce(secret_id::text, '')), coalesce(detail::text, '') \
                 FROM vault.audit_log \
                WHERE ($1::text IS NULL OR secret_name = $1) \
                  AND ($2::text IS NULL OR at >= now() - $2::text::interval) \
                  AND ($3::text IS NULL OR at >= $3::text::timestamptz) \
                ORDER BY id DESC LIMIT $4) t \
             ORDER BY 1",
            &[&secret, &interval, &at, &limit],
        )
        .map_err(bad_when("--since", since.unwrap_or("")))?;
    let mut table = vec![["AT", "ROLE", "ACTION", "SECRET", "DETAIL"].map(String::from)];
    for r in &rows {
        table.push([
            r.get(1),
            text::escape(&r.get::<_, String>(2)),
            text::escape(&r.get::<_, String>(3)),
            text::escape(&r.get::<_, String>(4)),
            text::escape(&r.get::<_, String>(5)),
        ]);
    }
    text::write_table(&mut io::stdout().lock(), &table)?;
    Ok(())
}

fn token_create(client: &mut Client, name: &str, role: &str, when: Option<&When>) -> Result<(), Failure> {
    let (interval, at) = match when {
        None | Some(When::Never) => (None, None),
        Some(When::In(i)) => (Some(i.as_str()), None),
        Some(When::At(a)) => (None, Some(a.as_str())),
    };
    let shown = interval.or(at).unwrap_or("never");
    let token: String = client
        .query_one(
            "SELECT vault.create_api_token($1, $2::text::regrole, \
                    CASE WHEN $3::text IS NOT NULL THEN now() + $3::text::interval ELSE $4::text::timestamptz END)",
            &[&name, &role, &interval, &at],
        )
        .map_err(bad_when("--expires", shown))?
        .get(0);
    let token = Zeroizing::new(token);
    let mut out = io::stdout().lock();
    writeln!(out, "{}", token.as_str())?;
    out.flush()?;
    eprintln!(
        "pgvault: created token {} acting as {}: it is shown this once and cannot be shown again (only its hash is kept)",
        text::escape(name),
        text::escape(role)
    );
    Ok(())
}

fn token_list(client: &mut Client, json: bool) -> Result<(), Failure> {
    let iso = |c: &str| format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
    let local = |c: &str| format!("coalesce(to_char({c}, 'YYYY-MM-DD HH24:MI:SSOF'), '')");
    let rows = client.query(
        &format!(
            "SELECT name, role::text, created_by::text, {}, {}, {}, {}, \
                    CASE WHEN revoked_at IS NOT NULL THEN 'revoked' \
                         WHEN expires_at <= now() THEN 'expired' ELSE 'active' END, \
                    {}, {}, {}, {} \
               FROM vault.api_tokens ORDER BY name, created_at",
            iso("created_at"),
            iso("expires_at"),
            iso("last_used_at"),
            iso("revoked_at"),
            local("created_at"),
            local("expires_at"),
            local("last_used_at"),
            local("revoked_at"),
        ),
        &[],
    )?;
    let mut out = io::stdout().lock();
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.get::<_, String>(0),
                    "role": r.get::<_, String>(1),
                    "created_by": r.get::<_, String>(2),
                    "created_at": r.get::<_, Option<String>>(3),
                    "expires_at": r.get::<_, Option<String>>(4),
                    "last_used_at": r.get::<_, Option<String>>(5),
                    "revoked_at": r.get::<_, Option<String>>(6),
                    "state": r.get::<_, String>(7),
                })
            })
            .collect();
        let s = serde_json::to_string_pretty(&items).map_err(|e| Failure::new(1, e.to_string()))?;
        writeln!(out, "{s}")?;
        return Ok(());
    }
    let mut table = vec![["NAME", "ROLE", "STATE", "CREATED", "BY", "EXPIRES", "LAST USED"].map(String::from)];
    for r in &rows {
        let state: String = r.get(7);
        let state = if state == "revoked" {
            format!("revoked {}", r.get::<_, String>(11))
        } else {
            state
        };
        table.push([
            text::escape(&r.get::<_, String>(0)),
            text::escape(&r.get::<_, String>(1)),
            state,
            r.get(8),
            text::escape(&r.get::<_, String>(2)),
            r.get(9),
            r.get(10),
        ]);
    }
    text::write_table(&mut out, &table)?;
    Ok(())
}

fn verify(client: &mut Client) -> Result<(), Failure> {
    let rows = client.query(
        "SELECT coalesce(name, id::text), status, coalesce(detail, '') FROM vault.verify_secrets() ORDER BY 1",
        &[],
    )?;
    let bad: Vec<_> = rows.iter().filter(|r| r.get::<_, &str>(1) != "ok").collect();
    let mut out = io::stdout().lock();
    if !bad.is_empty() {
        let mut table = vec![["SECRET", "STATUS", "DETAIL"].map(String::from)];
        for r in &bad {
            table.push([text::escape(r.get(0)), text::escape(r.get(1)), text::escape(r.get(2))]);
        }
        text::write_table(&mut out, &table)?;
    }
    writeln!(
        out,
        "{} values checked (secrets and kept versions), {} damaged",
        rows.len(),
        bad.len()
    )?;
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(8, format!("{} values do not decrypt", bad.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_equals_are_refused_without_echoing_the_value() {
        let f = check_name("API_KEY=abc123").unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.message.contains("pgvault set API_KEY"));
        assert!(!f.message.contains("abc123"));
        assert!(check_name("").is_err());
        assert!(check_name("a\u{1b}[31m").is_err());
        assert!(check_name("db.url-prod").is_ok());
    }

    #[test]
    fn when_parses_intervals_timestamps_and_never() {
        assert_eq!(When::parse("30d").unwrap(), When::In("30 days".into()));
        assert_eq!(When::parse("+30 days").unwrap(), When::In("30 days".into()));
        assert_eq!(When::parse("never").unwrap(), When::Never);
        assert_eq!(When::parse("2026-01-01").unwrap(), When::At("2026-01-01".into()));
    }

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pgvault", "run", "--only", "a", "--", "sh", "-c", "x"]).unwrap();
        assert!(matches!(cli.command, Cmd::Run { ref command, .. } if command == &["sh", "-c", "x"]));
        assert!(Cli::try_parse_from(["pgvault", "lst"]).is_err());
    }
}
