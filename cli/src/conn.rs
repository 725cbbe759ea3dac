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

use crate::Failure;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres::config::{ChannelBinding, SslMode, TargetSessionAttrs};
use postgres::{Client, Config};
use postgres_openssl::MakeTlsConnector;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fs;
use std::io::{self, IsTerminal};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

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

/// A connection string: a `postgresql://` / `postgres://` URL, `key=value` pairs, or (as psql
/// takes it) a bare database name.
pub fn parse_conninfo(s: &str) -> Result<BTreeMap<String, String>, Failure> {
    let params = if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        parse_url(s)?
    } else if s.contains('=') {
        parse_pairs(s)?
    } else {
        BTreeMap::from([("dbname".to_string(), s.to_string())])
    };
    for k in params.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(Failure::usage(format!("invalid connection option \"{k}\"")));
        }
    }
    Ok(params)
}

fn bad_string(why: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("cannot parse the connection string: {why}"))
}

/// `key = value` pairs separated by white space; a value may be single-quoted, with `\'` and
/// `\\` inside.
fn parse_pairs(s: &str) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad_string(format!("missing \"=\" after \"{key}\"")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad_string("unterminated quoted string")),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(bad_string("unterminated quoted string")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.insert(key, value);
    }
}

fn percent_decode(s: &str) -> Result<String, Failure> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_string("invalid percent-encoded token"))?;
            if hex == 0 {
                return Err(bad_string("forbidden value %00 in percent-encoded value"));
            }
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_string("percent-encoded value is not UTF-8"))
}

/// `postgresql://[user[:password]@][host][:port][,...][/dbname][?key=value&...]`
fn parse_url(s: &str) -> Result<BTreeMap<String, String>, Failure> {
    let rest = s.split_once("://").map(|x| x.1).unwrap_or_default();
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let mut out = BTreeMap::new();
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.insert("user".into(), percent_decode(user)?);
            }
            if let Some(p) = password {
                out.insert("password".into(), percent_decode(p)?);
            }
            hostspec
        }
        None => authority,
    };
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for part in hostspec.split(',') {
        let (host, port) = if let Some(v6) = part.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad_string("missing \"]\" in an IPv6 host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match part.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (part, None),
            }
        };
        hosts.push(percent_decode(host)?);
        ports.push(port.map(percent_decode).transpose()?.unwrap_or_default());
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        out.insert("host".into(), hosts.join(","));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        out.insert("port".into(), ports.join(","));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.insert("dbname".into(), percent_decode(db)?);
    }
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad_string(format!("missing \"=\" in URI query parameter \"{pair}\"")))?;
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        // libpq's JDBC-compatible spelling.
        if k == "ssl" && v == "true" {
            out.insert("sslmode".into(), "require".into());
        } else {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// The settings of service `name`: the user's file (PGSERVICEFILE, else ~/.pg_service.conf)
/// first, then the system's (PGSYSCONFDIR/pg_service.conf).
fn lookup_service(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Vec<(String, String)>, Failure> {
    let user_file = env("PGSERVICEFILE")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let sysconf = env("PGSYSCONFDIR").unwrap_or_else(|| "/etc/postgresql-common".into());
    let files = [user_file, Some(Path::new(&sysconf).join("pg_service.conf"))];
    for file in files.iter().flatten() {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Failure::usage(format!(
                    "cannot read service file \"{}\": {e}",
                    file.display()
                )))
            }
        };
        if let Some(found) = parse_service(&text, name, file)? {
            return Ok(found);
        }
    }
    Err(Failure::usage(format!(
        "definition of service \"{name}\" not found (looked in {})",
        files
            .iter()
            .flatten()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )))
}

/// The `key=value` lines of section `[name]` of a service file, or None without that section.
fn parse_service(text: &str, name: &str, file: &Path) -> Result<Option<Vec<(String, String)>>, Failure> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            in_section = section.strip_suffix(']') == Some(name);
            if in_section {
                found = Some(Vec::new());
            }
            continue;
        }
        if !in_section {
            continue;
        }
        let bad = |why: &str| {
            Failure::usage(format!(
                "syntax error in service file \"{}\", line {}: {why}",
                file.display(),
                n + 1
            ))
        };
        let (k, v) = line.split_once('=').ok_or_else(|| bad("expected key=value"))?;
        let k = k.trim();
        if k == "service" {
            return Err(bad("nested service specifications not supported"));
        }
        if !KEYWORDS.contains(&k) {
            return Err(bad(&format!("invalid connection option \"{k}\"")));
        }
        if let Some(f) = found.as_mut() {
            f.push((k.to_string(), v.trim().to_string()));
        }
    }
    Ok(found)
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

/// The password for `ep` from a password file's text: the first line whose
/// host:port:database:user fields match (`*` matches anything; `\:` and `\\` escape).
pub fn pgpass_lookup(text: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<Zeroizing<String>> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut fields: Vec<String> = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        fields.last_mut().unwrap().push(n);
                    }
                }
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut().unwrap().push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        let fields = Zeroizing::new(fields);
        if wanted.iter().zip(fields.iter()).all(|(w, f)| f == "*" || f == w) {
            return Some(Zeroizing::new(fields[4].clone()));
        }
    }
    None
}

/// The password file's entry for `ep`, when the file exists, is a plain file and is not
/// readable by group or others (libpq ignores it otherwise, with a warning).
fn password_from_file(target: &Target, ep: &Endpoint) -> Option<Zeroizing<String>> {
    let file = target.passfile()?;
    let meta = fs::metadata(&file).ok()?;
    if !meta.is_file() {
        eprintln!(
            "pgvault: warning: password file \"{}\" is not a plain file",
            file.display()
        );
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "pgvault: warning: password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        );
        return None;
    }
    let text = Zeroizing::new(fs::read_to_string(&file).ok()?);
    // libpq: a socket (or no host, only hostaddr) matches the host name "localhost".
    let host = if ep.host.is_empty() {
        ep.hostaddr.as_deref().unwrap_or("localhost")
    } else if is_socket(&ep.host) {
        "localhost"
    } else {
        ep.host.as_str()
    };
    pgpass_lookup(&text, host, ep.port, target.dbname(), target.user())
}

/// The TLS settings for `mode`: which roots to trust, the client certificate, and whether the
/// host name must match. Fails when a file the mode needs is missing.
fn tls_connector(target: &Target, mode: Mode) -> Result<MakeTlsConnector, Failure> {
    let tls_err = |e: openssl::error::ErrorStack| Failure::connect(format!("TLS setup failed: {e}"));
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(tls_err)?;
    let root = target
        .get("sslrootcert")
        .map(PathBuf::from)
        .or_else(|| target.default_file("root.crt"));
    let verify = match &root {
        Some(p) if p.as_os_str() == "system" => {
            b.set_default_verify_paths().map_err(tls_err)?;
            true
        }
        Some(p) if p.exists() => {
            b.set_ca_file(p).map_err(|e| {
                Failure::connect(format!("could not read root certificate file \"{}\": {e}", p.display()))
            })?;
            // libpq: with a root certificate file, every mode checks the server's chain.
            true
        }
        _ if mode >= Mode::VerifyCa => {
            return Err(Failure::connect(format!(
                "root certificate file \"{}\" does not exist\nhint: either provide the file (sslrootcert=FILE), \
                 use the system's trusted roots with sslrootcert=system, or change sslmode to disable server \
                 certificate verification",
                root.map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.postgresql/root.crt".into())
            )))
        }
        _ => false,
    };
    b.set_verify(if verify {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    let cert = target.get("sslcert").map(PathBuf::from);
    let cert = match cert {
        Some(c) => Some(c),
        None => target.default_file("postgresql.crt").filter(|p| p.exists()),
    };
    if let Some(cert) = cert {
        if !cert.exists() {
            return Err(Failure::connect(format!(
                "certificate file \"{}\" does not exist",
                cert.display()
            )));
        }
        let key = target
            .get("sslkey")
            .map(PathBuf::from)
            .or_else(|| target.default_file("postgresql.key"))
            .ok_or_else(|| Failure::connect("no sslkey for the client certificate"))?;
        let meta = fs::metadata(&key)
            .map_err(|e| Failure::connect(format!("cannot read private key file \"{}\": {e}", key.display())))?;
        let mode_bits = meta.permissions().mode();
        let too_open = if meta.uid() == 0 {
            mode_bits & 0o037 != 0
        } else {
            mode_bits & 0o077 != 0
        };
        if too_open {
            return Err(Failure::connect(format!(
                "private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or \
                 less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
                key.display()
            )));
        }
        b.set_certificate_chain_file(&cert)
            .map_err(|e| Failure::connect(format!("could not load certificate file \"{}\": {e}", cert.display())))?;
        b.set_private_key_file(&key, SslFiletype::PEM)
            .map_err(|e| Failure::connect(format!("could not load private key file \"{}\": {e}", key.display())))?;
        b.check_private_key().map_err(|e| {
            Failure::connect(format!(
                "certificate does not match private key file \"{}\": {e}",
                key.display()
            ))
        })?;
    }
    let mut connector = MakeTlsConnector::new(b.build());
    if mode != Mode::VerifyFull {
        connector.set_callback(|cfg, _| {
            cfg.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// The driver's settings for one endpoint.
fn driver_config(target: &Target, ep: &Endpoint, password: Option<&str>) -> Result<Config, Failure> {
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
fn explain(e: &postgres::Error, ep: &Endpoint) -> String {
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

fn password_missing(e: &postgres::Error) -> bool {
    e.to_string() == "invalid configuration" && StdError::source(e).is_some_and(|s| s.to_string() == "password missing")
}

/// Tries `ep` with the TLS attempts its mode calls for.
fn try_endpoint(target: &Target, ep: &Endpoint, mode: Mode, password: Option<&str>) -> Result<Client, postgres::Error> {
    let config = |ssl: SslMode| -> Config {
        let mut c = driver_config(target, ep, password).expect("checked by connect");
        c.ssl_mode(ssl);
        c
    };
    // As libpq: no TLS on Unix-domain sockets, whatever the mode.
    if is_socket(&ep.host) && ep.hostaddr.is_none() {
        return config(SslMode::Disable).connect(postgres::NoTls);
    }
    let tls = || tls_connector(target, mode).expect("checked by connect");
    match mode {
        Mode::Disable => config(SslMode::Disable).connect(postgres::NoTls),
        Mode::Allow => match config(SslMode::Disable).connect(postgres::NoTls) {
            Err(e) if e.as_db_error().is_some() => config(SslMode::Require).connect(tls()),
            other => other,
        },
        Mode::Prefer => match config(SslMode::Prefer).connect(tls()) {
            Err(e) if e.to_string().starts_with("error performing TLS handshake") || e.as_db_error().is_some() => {
                config(SslMode::Disable).connect(postgres::NoTls).map_err(|_| e)
            }
            other => other,
        },
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => config(SslMode::Require).connect(tls()),
    }
}

/// Connects (each host in turn, as libpq) and checks that the database has vault_ext.
pub fn connect(target: &Target) -> Result<Client, Failure> {
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
        let mut result = try_endpoint(target, ep, mode, password.as_deref().map(String::as_str));
        if let Err(e) = &result {
            if password_missing(e) && io::stdin().is_terminal() {
                let typed = Zeroizing::new(crate::prompt::password(&format!(
                    "Password for user {}: ",
                    target.user()
                ))?);
                result = try_endpoint(target, ep, mode, Some(typed.as_str()));
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
    let Some(mut client) = client else {
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
    client
        .batch_execute("SET search_path = pg_catalog, pg_temp")
        .map_err(Failure::from)?;
    let installed = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'vault_ext'",
            &[],
        )
        .map_err(Failure::from)?;
    if installed.is_none() {
        return Err(Failure::no_extension(format!(
            "{} has no vault_ext extension (a superuser runs CREATE EXTENSION vault_ext there, \
             on a server with shared_preload_libraries = 'vault_ext')",
            describe(target)
        )));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn eps(t: &Target) -> Vec<(String, u16)> {
        t.endpoints().unwrap().into_iter().map(|e| (e.host, e.port)).collect()
    }

    #[test]
    fn dsn_wins_and_the_environment_fills_the_gaps() {
        let env = env_of(&[
            ("PGHOST", "/tmp/sock"),
            ("PGPORT", "5499"),
            ("PGUSER", "alice"),
            ("PGPASSWORD", "pw"),
        ]);
        let t = resolve(None, &env).unwrap();
        assert_eq!(eps(&t), [("/tmp/sock".to_string(), 5499)]);
        assert_eq!((t.user(), t.dbname()), ("alice", "alice"));
        assert!(!describe(&t).contains("pw"));

        let t = resolve(Some("postgresql://bob@db.example:6000/app"), &env).unwrap();
        assert_eq!(eps(&t), [("db.example".to_string(), 6000)]);
        assert_eq!((t.user(), t.dbname()), ("bob", "app"));

        let env2 = env_of(&[
            ("DATABASE_URL", "host=/run/x dbname=d"),
            ("PGUSER", "alice"),
            ("PGPORT", "5499"),
        ]);
        let t = resolve(None, &env2).unwrap();
        assert_eq!(eps(&t), [("/run/x".to_string(), 5499)]);
        assert_eq!((t.user(), t.dbname()), ("alice", "d"));

        assert!(resolve(Some("host=/x"), &env_of(&[("PGPORT", "nope")])).is_err());
        assert!(resolve(Some("host=/x port=notaport"), &env_of(&[])).is_err());
    }

    #[test]
    fn urls_and_pairs_carry_the_tls_settings() {
        let p = parse_conninfo(
            "postgresql://u:p%40ss@h1:5433,[::1]:5434/db?sslmode=verify-full&sslrootcert=%2Fca%20dir%2Froot.crt",
        )
        .unwrap();
        assert_eq!(p["user"], "u");
        assert_eq!(p["password"], "p@ss");
        assert_eq!(p["host"], "h1,::1");
        assert_eq!(p["port"], "5433,5434");
        assert_eq!(p["dbname"], "db");
        assert_eq!(p["sslmode"], "verify-full");
        assert_eq!(p["sslrootcert"], "/ca dir/root.crt");
        let p = parse_conninfo("host=h sslmode = require  sslcert='/a b/c\\'s.crt' sslkey=/k").unwrap();
        assert_eq!(p["sslmode"], "require");
        assert_eq!(p["sslcert"], "/a b/c's.crt");
        assert_eq!(p["sslkey"], "/k");
        assert_eq!(parse_conninfo("postgres:///d?ssl=true").unwrap()["sslmode"], "require");
        assert_eq!(parse_conninfo("mydb").unwrap()["dbname"], "mydb");
        assert!(parse_conninfo("host=h sslmod=require").is_err());
        assert!(parse_conninfo("host='unterminated").is_err());
        // An unknown mode is refused, never treated as a weaker one.
        assert!(resolve(Some("host=h sslmode=verify_full"), &env_of(&[])).is_err());
        // PGSSLMODE applies when the string does not say.
        let t = resolve(Some("host=h"), &env_of(&[("PGSSLMODE", "verify-full")])).unwrap();
        assert_eq!(t.mode().unwrap(), Mode::VerifyFull);
        let t = resolve(Some("host=h sslmode=require"), &env_of(&[("PGSSLMODE", "disable")])).unwrap();
        assert_eq!(t.mode().unwrap(), Mode::Require);
        assert_eq!(
            resolve(Some("host=h"), &env_of(&[])).unwrap().mode().unwrap(),
            Mode::Prefer
        );
        // sslrootcert=system: verify-full, or refused with a weaker mode.
        let t = resolve(Some("host=h sslrootcert=system"), &env_of(&[])).unwrap();
        assert_eq!(t.mode().unwrap(), Mode::VerifyFull);
        assert!(resolve(Some("host=h sslrootcert=system sslmode=require"), &env_of(&[])).is_err());
    }

    #[test]
    fn pgpass_matching_follows_libpq() {
        let text = "# comment\n\
                    other:5432:*:*:nope\n\
                    db\\:host:*:app:*:escaped\\:pw\\\\\n\
                    localhost:5433:*:alice:sock\n\
                    *:*:*:alice:any\n";
        let get = |h, p, d, u| pgpass_lookup(text, h, p, d, u).map(|s| s.to_string());
        assert_eq!(get("db:host", 1, "app", "x").as_deref(), Some("escaped:pw\\"));
        assert_eq!(get("localhost", 5433, "d", "alice").as_deref(), Some("sock"));
        assert_eq!(get("elsewhere", 5433, "d", "alice").as_deref(), Some("any"));
        assert_eq!(get("elsewhere", 5433, "d", "bob"), None);
        assert_eq!(get("other", 5432, "d", "bob").as_deref(), Some("nope"));
    }

    #[test]
    fn service_files_fill_what_the_string_leaves_out() {
        let dir = std::env::temp_dir().join(format!("pgvault-svc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let user = dir.join("user.conf");
        fs::write(
            &user,
            "# mine\n[app]\nhost=db.internal\nport=6543\nsslmode=verify-full\n[other]\nhost=x\n",
        )
        .unwrap();
        fs::write(dir.join("pg_service.conf"), "[sys]\nhost=sys.host\ndbname=sysdb\n").unwrap();
        let sysconf = dir.display().to_string();
        let userfile = user.display().to_string();
        let env = env_of(&[
            ("PGSERVICEFILE", &userfile),
            ("PGSYSCONFDIR", &sysconf),
            ("PGHOST", "env.host"),
        ]);
        let t = resolve(Some("service=app dbname=d"), &env).unwrap();
        assert_eq!(eps(&t), [("db.internal".to_string(), 6543)]);
        assert_eq!((t.dbname(), t.mode().unwrap()), ("d", Mode::VerifyFull));
        // The string wins over the service.
        let t = resolve(Some("service=app host=h2"), &env).unwrap();
        assert_eq!(eps(&t)[0].0, "h2");
        // The system file, and PGSERVICE.
        let env2 = env_of(&[
            ("PGSERVICEFILE", &userfile),
            ("PGSYSCONFDIR", &sysconf),
            ("PGSERVICE", "sys"),
        ]);
        let t = resolve(None, &env2).unwrap();
        assert_eq!((eps(&t)[0].0.as_str(), t.dbname()), ("sys.host", "sysdb"));
        assert!(resolve(Some("service=nope"), &env).is_err());
        fs::write(&user, "[app]\nservice=x\n").unwrap();
        assert!(resolve(Some("service=app"), &env).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
