//! `pgvault list`: names, masked values, tags, descriptions and expiry.

use super::{print_json, Ctx};
use crate::error::Failure;
use crate::store::secrets;
use crate::text;
use std::io;

/// Names, masked values, tags, descriptions and expiry (vault_viewer)
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  pgvault list\n  pgvault list --tag prod\n  pgvault list --json | jq '.[].name'")]
pub struct List {
    /// Only secrets having this tag (repeat: every tag)
    #[arg(long, value_name = "T")]
    tag: Vec<String>,
    /// A JSON array of objects (masked values only)
    #[arg(long)]
    json: bool,
}

/// One secret in `list --json`.
#[derive(serde::Serialize)]
/// Fields in alphabetical order, as the output has always had them.
struct Item<'a> {
    description: &'a str,
    expired: bool,
    expires_at: Option<&'a str>,
    id: &'a str,
    masked: &'a str,
    name: Option<&'a str>,
    tags: &'a [String],
    updated_at: &'a str,
}

impl List {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let db = ctx.connect()?;
        let rows = db.wait(secrets::list(db.client(), &self.tag, None))?;
        let mut out = io::stdout().lock();
        if self.json {
            let items: Vec<Item<'_>> = rows
                .iter()
                .map(|r| Item {
                    name: r.name.as_deref(),
                    id: &r.id,
                    masked: &r.masked,
                    tags: &r.tags,
                    description: &r.description,
                    expires_at: r.expires_at.as_deref(),
                    expired: r.expired,
                    updated_at: &r.updated_at,
                })
                .collect();
            return print_json(&mut out, &items);
        }
        let mut table = vec![["NAME", "VALUE", "TAGS", "EXPIRES", "UPDATED", "DESCRIPTION"].map(String::from)];
        for r in &rows {
            let name = match &r.name {
                Some(n) => text::escape(n),
                None => format!("(id {})", r.id),
            };
            let expires = r.expires_local.clone().unwrap_or_default();
            let expires = if r.expired {
                format!("{expires} (expired)")
            } else {
                expires
            };
            table.push([
                name,
                text::escape(&r.masked),
                text::escape(&r.tags.join(",")),
                expires,
                r.updated_local.clone(),
                text::escape(&r.description),
            ]);
        }
        text::write_table(&mut out, &table)?;
        Ok(())
    }
}
