//! `pgvault grant` and `pgvault revoke`: per-secret grants.

use super::{secret_id, Ctx};
use crate::error::Failure;
use crate::store::secrets;
use crate::text;

/// Let ROLE read the secret (a per-secret grant narrows readers to its grantees) (vault_admin)
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pgvault grant stripe_key billing_service")]
pub struct Grant {
    name: String,
    role: String,
}

impl Grant {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        let id = secret_id(&db, &self.name)?;
        db.wait(secrets::grant(db.client(), &id, &self.role))?;
        eprintln!(
            "pgvault: {} may read secret {} (with vault_reader)",
            text::escape(&self.role),
            text::escape(&self.name)
        );
        Ok(())
    }
}

/// Take back a per-secret grant (vault_admin)
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pgvault revoke stripe_key billing_service")]
pub struct Revoke {
    name: String,
    role: String,
}

impl Revoke {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        let id = secret_id(&db, &self.name)?;
        let (role, name) = (text::escape(&self.role), text::escape(&self.name));
        if db.wait(secrets::revoke(db.client(), &id, &self.role))? {
            eprintln!("pgvault: revoked {role}'s grant on secret {name}");
        } else {
            eprintln!("pgvault: warning: {role} had no grant on secret {name}");
        }
        Ok(())
    }
}
