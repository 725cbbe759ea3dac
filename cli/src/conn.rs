//! Connecting the way psql does: `--dsn`, else `DATABASE_URL`, else nothing; whatever that
//! leaves unset comes from the libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
//! PGDATABASE, PGAPPNAME, PGCONNECT_TIMEOUT), then libpq's defaults (the local socket
//! directory, port 5432, the OS user, a database named after the user).

use crate::Failure;
use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use std::env;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The settings to connect with, from a DSN (URL or `key=value` string) and the environment.
pub fn config(dsn: Option<&str>) -> Result<Config, Failure> {
    let dsn = dsn
        .map(str::to_string)
        .or_else(|| env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()));
    let mut config = match &dsn {
        Some(dsn) => {
            Config::from_str(dsn).map_err(|e| Failure::usage(format!("cannot parse the connection string: {e}")))?
        }
        None => Config::new(),
    };
    let var = |name: &str| env::var(name).ok().filter(|s| !s.is_empty());
    if config.get_hosts().is_empty() {
        match var("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|h| {
                config.host(h);
            }),
            None => {
                config.host(default_host());
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = var("PGPORT") {
            let port = port
                .parse()
                .map_err(|_| Failure::usage(format!("PGPORT is not a port number: {port}")))?;
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        let user = var("PGUSER")
            .or_else(|| var("USER"))
            .or_else(|| var("LOGNAME"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Some(password) = var("PGPASSWORD") {
            config.password(&password);
        }
    }
    if config.get_dbname().is_none() {
        let db = var("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or_default().to_string());
        config.dbname(&db);
    }
    if config.get_application_name().is_none() {
        config.application_name(&var("PGAPPNAME").unwrap_or_else(|| "pgvault".into()));
    }
    if config.get_connect_timeout().is_none() {
        if let Some(secs) = var("PGCONNECT_TIMEOUT").and_then(|s| s.parse::<u64>().ok()) {
            config.connect_timeout(Duration::from_secs(secs.max(2)));
        }
    }
    Ok(config)
}

/// libpq's default: the Debian socket directory when it exists, else /tmp.
fn default_host() -> &'static str {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql"
    } else {
        "/tmp"
    }
}

/// Where `config` points, for messages (never the password).
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database \"{}\" as \"{}\" at {host}:{port}",
        config.get_dbname().unwrap_or_default(),
        config.get_user().unwrap_or_default()
    )
}

/// Connects and checks that the database has vault_ext.
pub fn connect(config: &Config) -> Result<Client, Failure> {
    let mut client = config.connect(NoTls).map_err(|e| {
        Failure::connect(format!(
            "cannot connect to {}: {}",
            describe(config),
            crate::error_text(&e)
        ))
    })?;
    let installed = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vault_ext'",
            &[],
        )
        .map_err(Failure::from)?;
    if installed.is_none() {
        return Err(Failure::no_extension(format!(
            "{} has no vault_ext extension (a superuser runs CREATE EXTENSION vault_ext there, \
             on a server with shared_preload_libraries = 'vault_ext')",
            describe(config)
        )));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_wins_and_the_environment_fills_the_gaps() {
        // One test owns the environment: tests run in parallel threads.
        env::remove_var("DATABASE_URL");
        env::set_var("PGHOST", "/tmp/sock");
        env::set_var("PGPORT", "5499");
        env::set_var("PGUSER", "alice");
        env::remove_var("PGDATABASE");
        env::set_var("PGPASSWORD", "pw");
        let c = config(None).unwrap();
        assert_eq!(c.get_hosts(), &[Host::Unix("/tmp/sock".into())]);
        assert_eq!(c.get_ports(), &[5499]);
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_dbname(), Some("alice"));
        assert_eq!(c.get_application_name(), Some("pgvault"));
        assert!(!describe(&c).contains("pw"));

        let c = config(Some("postgresql://bob@db.example:6000/app")).unwrap();
        assert_eq!(c.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(c.get_ports(), &[6000]);
        assert_eq!((c.get_user(), c.get_dbname()), (Some("bob"), Some("app")));

        env::set_var("DATABASE_URL", "host=/run/x dbname=d");
        let c = config(None).unwrap();
        assert_eq!(c.get_hosts(), &[Host::Unix("/run/x".into())]);
        assert_eq!(
            (c.get_user(), c.get_dbname(), c.get_ports()),
            (Some("alice"), Some("d"), &[5499][..])
        );

        env::set_var("PGPORT", "nope");
        assert!(config(Some("host=/x")).is_err());
        for v in ["DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"] {
            env::remove_var(v);
        }
        assert!(config(Some("host=/x port=notaport")).is_err());
    }
}
