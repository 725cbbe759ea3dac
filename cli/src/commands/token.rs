//! `pgvault token`: service tokens for `pgvault serve`'s API.

use super::{print_json, Ctx};
use crate::error::Failure;
use crate::store::tokens;
use crate::text;
use crate::when::{bad_when, When};
use std::io::{self, Write};

/// Service tokens for pgvault serve's API: create (shown once), list, revoke (vault_admin)
#[derive(clap::Subcommand)]
#[command(
    after_help = "A token acts as one role (--role) over `Authorization: Bearer TOKEN`; the server's own login
role must be a NOINHERIT member of that role. Only a hash of the token is stored.

Examples:
  pgvault token create ci-deploy --role ci_reader --expires 90d > ci.token
  pgvault token list
  pgvault token revoke ci-deploy
  PGVAULT_URL=https://vault.internal:8443 PGVAULT_TOKEN=$(cat ci.token) pgvault run --tag prod -- ./deploy"
)]
pub enum Token {
    /// Create a token acting as ROLE; printed once, to standard output
    Create {
        name: String,
        /// The role the token acts as (not a superuser)
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Expiry: a timestamp, an interval from now (30d, 12h, 2w, "+30 days") or never
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// The tokens: name, role, creator, creation, expiry, last use, state (never the token)
    List {
        /// A JSON array of objects
        #[arg(long)]
        json: bool,
    },
    /// Revoke the active token NAME: it stops working at once
    Revoke { name: String },
}

/// One token in `token list --json`.
#[derive(serde::Serialize)]
/// Fields in alphabetical order, as the output has always had them.
struct Item<'a> {
    created_at: Option<&'a str>,
    created_by: &'a str,
    expires_at: Option<&'a str>,
    last_used_at: Option<&'a str>,
    name: &'a str,
    revoked_at: Option<&'a str>,
    role: &'a str,
    state: &'a str,
}

impl Token {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        match self {
            Token::Create { name, role, expires } => {
                let when = expires.as_deref().map(When::parse).transpose()?;
                let instant = when.as_ref().map(When::instant).unwrap_or_default();
                let shown = when.as_ref().map_or("never", When::shown);
                let token = {
                    let db = ctx.connect()?;
                    db.wait(tokens::create(db.client(), &name, &role, instant))
                }
                .map_err(bad_when("--expires", shown))?;
                let mut out = io::stdout().lock();
                writeln!(out, "{}", token.as_str())?;
                out.flush()?;
                eprintln!(
                    "pgvault: created token {} acting as {}: it is shown this once and cannot be shown again (only its hash is kept)",
                    text::escape(&name),
                    text::escape(&role)
                );
                Ok(())
            }
            Token::List { json } => list(ctx, json),
            Token::Revoke { name } => {
                let db = ctx.connect()?;
                db.wait(tokens::revoke(db.client(), &name))?;
                eprintln!("pgvault: revoked token {}", text::escape(&name));
                Ok(())
            }
        }
    }
}

fn list(ctx: &Ctx, json: bool) -> Result<(), Failure> {
    let db = ctx.connect()?;
    let rows = db.wait(tokens::list(db.client()))?;
    let mut out = io::stdout().lock();
    if json {
        let items: Vec<Item<'_>> = rows
            .iter()
            .map(|r| Item {
                name: &r.name,
                role: &r.role,
                created_by: &r.created_by,
                created_at: r.created_at.as_deref(),
                expires_at: r.expires_at.as_deref(),
                last_used_at: r.last_used_at.as_deref(),
                revoked_at: r.revoked_at.as_deref(),
                state: &r.state,
            })
            .collect();
        return print_json(&mut out, &items);
    }
    let mut table = vec![["NAME", "ROLE", "STATE", "CREATED", "BY", "EXPIRES", "LAST USED"].map(String::from)];
    for r in rows {
        let state = if r.state == "revoked" {
            format!("revoked {}", r.revoked_local)
        } else {
            r.state
        };
        table.push([
            text::escape(&r.name),
            text::escape(&r.role),
            state,
            r.created_local,
            text::escape(&r.created_by),
            r.expires_local,
            r.last_used_local,
        ]);
    }
    text::write_table(&mut out, &table)?;
    Ok(())
}
