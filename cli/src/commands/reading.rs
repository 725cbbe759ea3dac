//! What get, run and export share: reading values over SQL or through `pgvault serve`, and
//! choosing which of them to use.

use super::{not_granted, Ctx};
use crate::error::Failure;
use crate::remote::{self, Remote};
use crate::store::secrets::{self, Value};
use crate::text;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where values are read: the database (--dsn and the libpq settings), or `pgvault serve`.
#[derive(clap::Args, Default)]
pub struct Via {
    /// Read through pgvault serve at this https:// URL instead of the database, with a service
    /// token in PGVAULT_TOKEN (an environment variable only: never on a command line)
    #[arg(long = "server", env = "PGVAULT_URL", value_name = "URL")]
    url: Option<String>,
    /// A CA certificate file (PEM) to trust besides the system's, for --server
    #[arg(long = "cacert", env = "PGVAULT_CACERT", value_name = "FILE")]
    cacert: Option<PathBuf>,
}

impl Via {
    /// The server to read through, when one is named.
    pub fn remote(&self, ctx: &Ctx) -> Result<Option<Remote>, Failure> {
        let url = self.url.as_deref().filter(|u| !u.is_empty());
        let cacert = self.cacert.as_deref().filter(|c| !c.as_os_str().is_empty());
        ctx.remote(url, cacert)
    }
}

pub type Secrets = Vec<(String, Zeroizing<String>)>;

/// The named secrets with every tag in `tags` (and in `only`, when given), read where `via`
/// says, then narrowed by [`select`].
pub fn secrets(ctx: &Ctx, via: &Via, tags: &[String], only: &[String]) -> Result<Secrets, Failure> {
    let rows = match via.remote(ctx)? {
        Some(r) => fetch_remote(&r, tags, only)?,
        None => secrets::values(&mut ctx.connect()?, tags, only)?,
    };
    select(rows, tags, only)
}

/// [`secrets::values`] through `pgvault serve`: the list (the same filter and order), then
/// each value.
fn fetch_remote(r: &Remote, tags: &[String], only: &[String]) -> Result<Vec<Value>, Failure> {
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
        rows.push(Value {
            name,
            value,
            expired: item.expired,
        });
    }
    Ok(rows)
}

/// Name and value of the rows this role may read; the others are left out with a warning,
/// and an error when named in `only` (each of which must exist).
fn select(rows: Vec<Value>, tags: &[String], only: &[String]) -> Result<Secrets, Failure> {
    let mut out = Vec::with_capacity(rows.len());
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
        out.push((name, value));
    }
    if let Some(missing) = only.iter().find(|n| !rows.iter().any(|r| &r.name == *n)) {
        let why = if tags.is_empty() { "" } else { " with those tags" };
        return Err(Failure::not_found(format!(
            "no secret named {}{why}",
            text::escape(missing)
        )));
    }
    Ok(out)
}
