//! Connecting the way libpq (and so psql) does.
//!
//! The settings come, first one wins, from the connection string (`--dsn`, else
//! `DATABASE_URL`; a `postgresql://` URL or `key=value` pairs), then the service it names
//! (`service=` / `PGSERVICE`, looked up in `PGSERVICEFILE` or `~/.pg_service.conf`, then
//! `PGSYSCONFDIR/pg_service.conf`), then the libpq environment variables (PGHOST, PGPORT,
//! PGSSLMODE, ...), then libpq's defaults. A password missing from all of those comes from the
//! password file (`passfile` / `PGPASSFILE` / `~/.pgpass`), else a prompt at a terminal when the
//! server asks for one.
//!
//! TLS follows libpq's `sslmode`: disable, allow, prefer (the default), require, verify-ca,
//! verify-full, with `sslrootcert` (a file, or `system` for the system's trusted roots),
//! `sslcert` and `sslkey`. Nothing connects with less protection than the mode asks for. As in
//! libpq, Unix-domain sockets never use TLS.

mod blocking;
mod connect;
mod conninfo;
mod pgpass;
mod service;
#[cfg(test)]
mod tests;
mod tls;

pub use blocking::Db;
pub use connect::{connect, Canceller, Connection};
pub use conninfo::parse_conninfo;
pub use pgpass::pgpass_lookup;

use crate::Failure;
use service::lookup_service;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The connection keywords pgvault understands (libpq's names).
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "service",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "channel_binding",
    "gssencmode",
    "keepalives",
    "keepalives_idle",
    "sslcompression",
    "sslsni",
    "client_encoding",
];

/// libpq's environment variables and the keyword each one stands for.
const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGGSSENCMODE", "gssencmode"),
];

/// libpq's `sslmode`, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, Failure> {
        Ok(match s {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(Failure::usage(format!(
                    "invalid sslmode \"{other}\": use disable, allow, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Allow => "allow",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// Where to connect: the merged settings, one entry per libpq keyword.
#[derive(Debug, Clone)]
pub struct Target {
    params: BTreeMap<String, String>,
    /// Where the environment is read from (the process's, or a test's).
    home: Option<PathBuf>,
}

/// One place to try, from the host / hostaddr / port lists.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    host: String,
    hostaddr: Option<String>,
    port: u16,
}

/// The settings to connect with, from `dsn` (else `DATABASE_URL`) and the process environment.
/// `from_argv` says the string came from the command line, where a password is visible to
/// every user in `ps`: that earns a warning.
pub fn config(dsn: Option<&str>) -> Result<Target, Failure> {
    if let Some(d) = dsn {
        if parse_conninfo(d).map(|p| p.contains_key("password")).unwrap_or(false) {
            eprintln!(
                "pgvault: warning: the password in --dsn can be seen by other users (ps, shell history); \
                 prefer PGPASSWORD, ~/.pgpass or a service file"
            );
        }
    }
    resolve(dsn, &|name| std::env::var(name).ok().filter(|s| !s.is_empty()))
}

/// [`config`] with the environment given as a function, so tests need not touch the process's.
pub fn resolve(dsn: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, Failure> {
    let dsn = dsn.map(str::to_string).or_else(|| env("DATABASE_URL"));
    let mut params = match &dsn {
        Some(d) => parse_conninfo(d)?,
        None => BTreeMap::new(),
    };
    let home = env("HOME").map(PathBuf::from);
    // The service file fills what the string left out; the environment fills the rest.
    let service = params.get("service").cloned().or_else(|| env("PGSERVICE"));
    if let Some(service) = service {
        for (k, v) in lookup_service(&service, env, home.as_deref())? {
            params.entry(k).or_insert(v);
        }
    }
    for (var, key) in ENV_VARS {
        if let Some(v) = env(var) {
            params.entry((*key).to_string()).or_insert(v);
        }
    }
    if !params.contains_key("user") {
        let user = env("USER")
            .or_else(|| env("LOGNAME"))
            .unwrap_or_else(|| "postgres".into());
        params.insert("user".into(), user);
    }
    if !params.contains_key("dbname") {
        let user = params["user"].clone();
        params.insert("dbname".into(), user);
    }
    let target = Target { params, home };
    // Check everything now, before a prompt or a connection attempt.
    target.mode()?;
    target.endpoints()?;
    if let Some(t) = target.params.get("connect_timeout") {
        t.parse::<u64>()
            .map_err(|_| Failure::usage(format!("connect_timeout is not a number of seconds: {t}")))?;
    }
    if target.params.get("gssencmode").map(String::as_str) == Some("require") {
        return Err(Failure::usage(
            "gssencmode=require: pgvault cannot encrypt with GSSAPI; use sslmode=verify-full",
        ));
    }
    Ok(target)
}

/// Whether `host` names a Unix-domain socket directory (libpq: an absolute path).
fn is_socket(host: &str) -> bool {
    host.starts_with('/') || host.starts_with('@')
}

/// libpq's default host: the Debian socket directory when it exists, else /tmp.
fn default_host() -> &'static str {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql"
    } else {
        "/tmp"
    }
}

impl Target {
    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// The sslmode asked for (default prefer), checked against `sslrootcert=system`.
    pub fn mode(&self) -> Result<Mode, Failure> {
        let mode = Mode::parse(self.get("sslmode").unwrap_or("prefer"))?;
        if self.get("sslrootcert") == Some("system") && mode != Mode::VerifyFull {
            if self.params.contains_key("sslmode") {
                return Err(Failure::usage(format!(
                    "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                    mode.name()
                )));
            }
            // libpq: sslrootcert=system without an sslmode means verify-full.
            return Ok(Mode::VerifyFull);
        }
        Ok(mode)
    }

    /// These settings for another role, logging in with `password` (`pgvault serve`): that
    /// role's own connection, never a password from the server's files or a prompt.
    pub fn as_login(&self, user: &str, password: &str) -> Target {
        let mut t = self.clone();
        t.params.insert("user".into(), user.into());
        t.params.insert("password".into(), password.into());
        t
    }

    pub fn user(&self) -> &str {
        self.get("user").unwrap_or_default()
    }

    pub fn dbname(&self) -> &str {
        self.get("dbname").unwrap_or_default()
    }

    /// The places to try, in order: libpq's comma-separated host, hostaddr and port lists.
    fn endpoints(&self) -> Result<Vec<Endpoint>, Failure> {
        let split = |k: &str| -> Vec<String> {
            self.params
                .get(k)
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        };
        let (mut hosts, addrs, ports) = (split("host"), split("hostaddr"), split("port"));
        let n = hosts.len().max(addrs.len()).max(1);
        if hosts.is_empty() {
            hosts = vec![String::new(); n];
        }
        if !addrs.is_empty() && addrs.len() != hosts.len() {
            return Err(Failure::usage(format!(
                "could not match {} host names to {} hostaddr values",
                hosts.len(),
                addrs.len()
            )));
        }
        if ports.len() > 1 && ports.len() != hosts.len() {
            return Err(Failure::usage(format!(
                "could not match {} port numbers to {} hosts",
                ports.len(),
                hosts.len()
            )));
        }
        let mut out = Vec::new();
        for (i, host) in hosts.into_iter().enumerate() {
            let hostaddr = addrs.get(i).filter(|a| !a.is_empty()).cloned();
            if let Some(a) = &hostaddr {
                a.parse::<std::net::IpAddr>()
                    .map_err(|_| Failure::usage(format!("hostaddr is not an IP address: {a}")))?;
            }
            let host = if host.is_empty() && hostaddr.is_none() {
                default_host().to_string()
            } else {
                host
            };
            let port = ports.get(i).or(ports.first()).map(String::as_str).unwrap_or("");
            let port = if port.is_empty() {
                5432
            } else {
                port.parse()
                    .map_err(|_| Failure::usage(format!("invalid port number: \"{port}\"")))?
            };
            out.push(Endpoint { host, hostaddr, port });
        }
        Ok(out)
    }

    /// The password file to read: `passfile`, PGPASSFILE, else ~/.pgpass.
    fn passfile(&self) -> Option<PathBuf> {
        self.get("passfile")
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(".pgpass")))
    }

    /// A file under ~/.postgresql, libpq's default place for certificates and keys.
    fn default_file(&self, name: &str) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".postgresql").join(name))
    }
}

/// Where `target` points, for messages (never the password).
pub fn describe(target: &Target) -> String {
    let place = match target.endpoints() {
        Ok(eps) => eps
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e.hostaddr.as_deref().filter(|_| e.host.is_empty()).unwrap_or(&e.host),
                    e.port
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => "?".into(),
    };
    format!("database \"{}\" as \"{}\" at {place}", target.dbname(), target.user())
}
