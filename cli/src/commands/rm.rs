//! `pgvault rm`: delete a secret.

use super::Ctx;
use crate::error::Failure;
use crate::store::secrets;
use crate::text;

/// Delete a secret (vault_admin)
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pgvault rm stripe_key")]
pub struct Rm {
    name: String,
}

impl Rm {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        if !db.wait(secrets::delete(db.client(), &self.name))? {
            return Err(Failure::not_found(format!(
                "no secret named {}",
                text::escape(&self.name)
            )));
        }
        eprintln!("pgvault: deleted secret {}", text::escape(&self.name));
        Ok(())
    }
}
