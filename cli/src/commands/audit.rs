//! `pgvault audit`: who created, changed, deleted, rolled back or granted what.

use super::Ctx;
use crate::error::Failure;
use crate::store::audit;
use crate::text;
use crate::when::{bad_when, When};
use std::io;

/// The audit log: who created, changed, deleted, rolled back or granted what (vault_admin)
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  pgvault audit --since 7d\n  pgvault audit --secret stripe_key --since 2026-01-01")]
pub struct Audit {
    /// Only rows about this secret
    #[arg(long, value_name = "NAME")]
    secret: Option<String>,
    /// Only rows since a timestamp or an interval ago (7d, 24h)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// At most this many rows, the latest
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

impl Audit {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let since = self.since.as_deref().map(When::parse).transpose()?;
        let instant = since.as_ref().map(When::instant).unwrap_or_default();
        let db = ctx.connect()?;
        let rows = db
            .wait(audit::recent(db.client(), self.secret.as_deref(), instant, self.limit))
            .map_err(bad_when("--since", self.since.as_deref().unwrap_or("")))?;
        let mut table = vec![["AT", "ROLE", "ACTION", "SECRET", "DETAIL"].map(String::from)];
        for r in rows {
            table.push([
                r.at,
                text::escape(&r.role),
                text::escape(&r.action),
                text::escape(&r.secret),
                text::escape(&r.detail),
            ]);
        }
        text::write_table(&mut io::stdout().lock(), &table)?;
        Ok(())
    }
}
