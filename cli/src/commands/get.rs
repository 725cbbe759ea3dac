//! `pgvault get`: print a secret's value.

use super::reading::Via;
use super::Ctx;
use crate::error::Failure;
use crate::remote::Fetched;
use crate::selection::not_granted;
use crate::store::secrets;
use crate::text;
use std::io::{self, Write};
use zeroize::Zeroizing;

/// Print a secret's value (vault_reader)
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  pgvault get stripe_key\n  pgvault get -n stripe_key | sha256sum")]
pub struct Get {
    name: String,
    /// No newline after the value
    #[arg(short = 'n', long)]
    no_newline: bool,
    #[command(flatten)]
    via: Via,
}

impl Get {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let found = match self.via.remote(ctx)? {
            Some(r) => {
                r.may_read()?;
                match r.value(&self.name)? {
                    Fetched::Value(v) => Some(Some(v)),
                    Fetched::NotGranted => Some(None),
                    Fetched::NotFound => None,
                }
            }
            None => {
                let db = ctx.connect()?;
                db.wait(secrets::value(db.client(), &self.name))?
            }
        };
        write_value(&self.name, found, self.no_newline)
    }
}

/// What `get` prints (or refuses), over SQL or HTTP alike.
fn write_value(name: &str, found: Option<Option<Zeroizing<String>>>, no_newline: bool) -> Result<(), Failure> {
    let Some(value) = found else {
        return Err(Failure::not_found(format!("no secret named {}", text::escape(name))));
    };
    let value = value.ok_or_else(|| not_granted(name))?;
    let mut out = io::stdout().lock();
    out.write_all(value.as_bytes())?;
    if !no_newline {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
