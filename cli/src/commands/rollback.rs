//! `pgvault rollback`: make an earlier version the current value.

use super::{secret_id, Ctx};
use crate::error::Failure;
use crate::store::secrets;
use crate::text;

/// Make an earlier version the current value (a new version) (vault_admin)
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pgvault history stripe_key && pgvault rollback stripe_key 3")]
pub struct Rollback {
    name: String,
    version: i32,
}

impl Rollback {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        let id = secret_id(&db, &self.name)?;
        let new = db.wait(secrets::rollback(db.client(), &id, self.version))?;
        eprintln!(
            "pgvault: secret {} now has the value of version {} (as version {new})",
            text::escape(&self.name),
            self.version
        );
        Ok(())
    }
}
