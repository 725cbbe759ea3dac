//! `pgvault serve`: the web console and its JSON API.

use super::Ctx;
use crate::error::Failure;
use crate::limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The web console and its JSON API over HTTPS, each user logged in as their own role
#[derive(clap::Parser)]
#[command(
    name = "serve",
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
pub struct Serve {
    /// Address and port to listen on
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (loopback addresses only, e.g. behind a TLS proxy on this host)
    #[arg(long)]
    pub insecure_http: bool,
    /// End a session unused for this many seconds
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Failed logins from one address, within a minute, before it gets 429
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_login_failures: usize,
    /// Connections of the server's own role (the connection options) for Bearer-token requests
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub token_connections: usize,
    /// Database connections per session, opened at login as that role, so a user's
    /// parallel requests do not wait for each other (1: one connection per session)
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub session_connections: u16,
    /// Console sessions one role may hold at once; a new login past that ends its oldest
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_sessions_per_role: usize,
    /// A proxy in front of the server (repeatable): its X-Forwarded-For names the client for
    /// the login limits, and it has no per-address connection share
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections open at once (default: half of what the open-file limit leaves after 64)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Connections open at once from one address (default: a quarter of --max-connections, at least 8)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,
    /// Seconds a new connection has for its TLS handshake, and then for its first request's head
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub first_request_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request's head before it is closed
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_timeout: u64,
    /// The mount of HashiCorp Vault's KV version 2 API under /v1/ (hvac, node-vault, vault kv get)
    #[arg(long, default_value = "secret", value_name = "NAME")]
    pub kv_mount: String,
}

impl Serve {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        crate::serve::run(ctx.target()?, &self)
    }

    /// How long an unused session lives.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout.max(1))
    }

    /// Connections open at once, in all.
    pub fn max_connections(&self) -> usize {
        self.max_connections
            .map_or_else(limits::default_max_connections, |n| n as usize)
    }

    /// Connections open at once from one address.
    pub fn max_connections_per_address(&self) -> usize {
        self.max_connections_per_address.map_or_else(
            || limits::default_max_per_address(self.max_connections()),
            |n| n as usize,
        )
    }

    /// Time for the TLS handshake and then the first request's head.
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_secs(self.first_request_timeout)
    }

    /// Time a kept-alive connection may wait for its next request's head.
    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.keepalive_timeout)
    }
}
