//! `pgvault verify`: every secret and kept version decrypts.

use super::Ctx;
use crate::error::{Failure, Kind};
use crate::store::secrets;
use crate::text;
use std::io::{self, Write};

/// Check that every secret and kept version decrypts (vault_admin); exit 8 when some do not
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pgvault verify")]
pub struct Verify {}

impl Verify {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        let rows = db.wait(secrets::verify(db.client()))?;
        let bad: Vec<_> = rows.iter().filter(|r| r.status != "ok").collect();
        let mut out = io::stdout().lock();
        if !bad.is_empty() {
            let mut table = vec![["SECRET", "STATUS", "DETAIL"].map(String::from)];
            for r in &bad {
                table.push([
                    text::escape(&r.secret),
                    text::escape(&r.status),
                    text::escape(&r.detail),
                ]);
            }
            text::write_table(&mut out, &table)?;
        }
        writeln!(
            out,
            "{} values checked (secrets and kept versions), {} damaged",
            rows.len(),
            bad.len()
        )?;
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Failure::of(
                Kind::Damaged,
                format!("{} values do not decrypt", bad.len()),
            ))
        }
    }
}
