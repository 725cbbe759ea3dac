//! What get, run and export share: reading values over SQL or through `pgvault serve`, and
//! choosing which of them to use.

use super::Ctx;
use crate::error::Failure;
use crate::remote::Remote;
use crate::selection::{fetch_remote, select, Secrets};
use crate::store::secrets;
use std::path::PathBuf;

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

/// The named secrets with every tag in `tags` (and in `only`, when given), read where `via`
/// says, then narrowed by [`select`].
pub fn secrets(ctx: &Ctx, via: &Via, tags: &[String], only: &[String]) -> Result<Secrets, Failure> {
    let rows = match via.remote(ctx)? {
        Some(r) => fetch_remote(&r, tags, only)?,
        None => {
            let db = ctx.connect()?;
            db.wait(secrets::values(db.client(), tags, only))?
        }
    };
    select(rows, tags, only)
}
