//! `pgvault set`: create or update a secret; the value from standard input or a prompt.

use super::{check_name, check_value, Ctx};
use crate::error::{Failure, ROLES_HINT};
use crate::store::secrets;
use crate::when::{bad_when, When};
use crate::{prompt, text};
use std::io::{self, IsTerminal, Read};
use zeroize::Zeroizing;

/// Create or update a secret; the value comes from standard input or a prompt (vault_admin)
#[derive(clap::Args)]
#[command(
    after_help = "The value is all of standard input (one trailing newline dropped) or, at a terminal, typed
twice at a prompt that does not echo; never from the command line, where shell history and ps
would keep it.

Examples:
  printf %s \"$STRIPE_KEY\" | pgvault set stripe_key --tag prod --description \"Stripe live key\"
  pgvault set db_url                         # at a terminal: asks twice, without echo
  pgvault set stripe_key --keep-value --expires 30d --tag prod,rotated
  pgvault set stripe_key --keep-value --expires never"
)]
pub struct Set {
    name: String,
    /// Replace the description
    #[arg(long, value_name = "D")]
    description: Option<String>,
    /// Replace the tags (repeat, or comma-separated)
    #[arg(long, value_name = "T", value_delimiter = ',')]
    tag: Vec<String>,
    /// Expiry: a timestamp, an interval from now (30d, 12h, 2w, "+30 days") or never
    #[arg(long, value_name = "WHEN")]
    expires: Option<String>,
    /// Change only tags / description / expiry of an existing secret, not its value
    #[arg(long)]
    keep_value: bool,
    #[arg(hide = true)]
    value_in_argv: Vec<String>,
}

impl Set {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let name = &self.name;
        check_name(name)?;
        if !self.value_in_argv.is_empty() {
            return Err(Failure::usage(
                "set takes the value from standard input or a prompt, never from the command line \
                 (it would be kept in shell history and shown by ps): printf %s \"$VALUE\" | pgvault set NAME",
            ));
        }
        let expires = self.expires.as_deref().map(When::parse).transpose()?;
        if self.keep_value && self.description.is_none() && self.tag.is_empty() && expires.is_none() {
            return Err(Failure::usage(
                "set --keep-value changes tags, description or expiry: give --tag, --description or --expires",
            ));
        }
        // Connect and check the rights first: nobody types a value only to learn it was for nothing.
        let mut db = ctx.connect()?;
        if !db.wait(secrets::may_write(db.client()))? {
            return Err(Failure::denied(format!(
                "permission denied: set needs vault_admin (nothing was asked or changed)\n{ROLES_HINT}"
            )));
        }
        let value = if self.keep_value { None } else { Some(read_value(name)?) };
        let outcome = db.transaction(async |tx| {
            let outcome = upsert(
                tx,
                name,
                value.as_ref().map(|v| v.as_str()),
                self.description.as_deref(),
                &self.tag,
                false,
            )
            .await?;
            if let Some(when) = &expires {
                let past = secrets::set_expiry(tx, name, when.instant())
                    .await
                    .map_err(bad_when("--expires", when.shown()))?;
                if past {
                    eprintln!(
                        "pgvault: warning: the expiry {} is in the past: the secret is expired already",
                        text::escape(when.shown())
                    );
                }
            }
            Ok(outcome)
        })?;
        eprintln!("pgvault: {} secret {}", outcome.word(), text::escape(name));
        Ok(())
    }
}

/// The value for `set`: all of standard input (one trailing newline dropped), or typed twice
/// at a prompt that does not echo when standard input is a terminal.
fn read_value(name: &str) -> Result<Zeroizing<String>, Failure> {
    let shown = text::escape(name);
    let value = if io::stdin().is_terminal() {
        let first = Zeroizing::new(prompt::password(&format!("value for {shown}: "))?);
        let again = Zeroizing::new(prompt::password("again: ")?);
        if first != again {
            return Err(Failure::input("the two values differ; nothing was changed"));
        }
        first
    } else {
        let mut bytes = Zeroizing::new(Vec::new());
        io::stdin().read_to_end(&mut bytes)?;
        let mut text = Zeroizing::new(
            String::from_utf8(std::mem::take(&mut *bytes))
                .map_err(|_| Failure::input("the value on standard input is not UTF-8 text"))?,
        );
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if value.is_empty() {
        return Err(Failure::input(format!("empty value for {shown}; nothing was changed")));
    }
    check_value(name, &value)?;
    Ok(value)
}

/// What a change did.
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Creates or updates the secret `name` inside `tx`. A value of None keeps the value (the
/// secret must exist); tags given replace the secret's tags; a description given replaces its
/// description. With `skip_same`, a value equal to the stored one is not rewritten.
pub async fn upsert(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    value: Option<&str>,
    description: Option<&str>,
    tags: &[String],
    skip_same: bool,
) -> Result<Outcome, Failure> {
    let tags = (!tags.is_empty()).then_some(tags);
    match secrets::lock(tx, name).await? {
        Some(existing) => {
            let mut value = value;
            if skip_same {
                if let Some(v) = value {
                    // Compared here, not in SQL: a value sent as a query parameter would reach a log
                    // that records parameters.
                    let stored = secrets::value_by_id(tx, &existing.id).await?;
                    if stored.as_deref().map(String::as_str) == Some(v) {
                        value = None;
                    }
                }
                let same_tags = tags.is_none_or(|t| existing.tags == t);
                let same_desc = description.is_none_or(|d| existing.description == d);
                if value.is_none() && same_tags && same_desc {
                    return Ok(Outcome::Unchanged);
                }
            }
            secrets::update(tx, &existing.id, value, description, tags, None).await?;
            Ok(Outcome::Updated)
        }
        None => {
            let Some(value) = value else {
                return Err(Failure::not_found(format!(
                    "no secret named {} (--keep-value changes an existing secret)",
                    text::escape(name)
                )));
            };
            secrets::create(tx, name, value, description, tags).await?;
            Ok(Outcome::Created)
        }
    }
}
