//! `pgvault history`: the versions of a secret, without values.

use super::{secret_id, Ctx};
use crate::error::Failure;
use crate::store::secrets;
use crate::text;
use std::io;

/// The versions of a secret, without values (vault_admin)
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pgvault history stripe_key")]
pub struct History {
    name: String,
}

impl History {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        let id = secret_id(&db, &self.name)?;
        let mut table = vec![["VERSION", "STATE", "SINCE", "BY"].map(String::from)];
        for v in db.wait(secrets::history(db.client(), &id))? {
            table.push([v.version.to_string(), v.state, v.since, text::escape(&v.by)]);
        }
        text::write_table(&mut io::stdout().lock(), &table)?;
        Ok(())
    }
}
