//! `pgvault run`: start a command with the secrets in its environment.

use super::reading::{self, Secrets, Via};
use super::Ctx;
use crate::error::Failure;
use crate::{envplan, text};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Run a command with the secrets in its environment (vault_reader)
#[derive(clap::Args)]
#[command(after_help = run_help())]
pub struct Run {
    /// Only secrets having this tag (repeat: every tag)
    #[arg(long, value_name = "T")]
    tag: Vec<String>,
    /// Only these secrets (repeat)
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Let a secret set this otherwise protected variable (repeat)
    #[arg(long, value_name = "VAR")]
    allow_var: Vec<String>,
    /// Keep the value of a variable already in the environment instead of the secret's
    #[arg(long)]
    keep_env: bool,
    #[command(flatten)]
    via: Via,
    /// The command and its arguments, after --
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(super) command: Vec<String>,
}

impl Run {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let secrets = reading::secrets(ctx, &self.via, &self.tag, &self.only)?;
        exec_with(secrets, &self.command, &self.allow_var, self.keep_env)
    }
}

/// `pgvault run --help`'s text after the options: the protected variables' rule in full.
fn run_help() -> String {
    format!(
        "Variables are named after the secrets, upper-cased, other characters as _
(db.url-prod -> DB_URL_PROD). A secret never sets a variable that tells a program where to find
code, configuration or a helper command (pager, editor, askpass, browser), where to send its
traffic (proxies), or which database, host or repository to talk to (PG*, GIT_*, SSH_*), unless
the variable is named with --allow-var: anyone who may write a secret could otherwise run code
in the child or send its connections elsewhere. The rule is by families (listed below; case does
not matter); names that cannot be variables and two secrets for one variable are skipped with a
warning.

{}

Examples:
  pgvault run --tag prod -- ./server
  pgvault run --only db_url -- sh -c 'psql \"$DB_URL\"'
  pgvault run --keep-env -- make deploy       # variables already set win",
        envplan::rule_help()
    )
}

/// Replaces pgvault with `child`, the secrets in its environment: the exit code and signals
/// are the child's own, and nothing of pgvault (its connection included) stays around.
fn exec_with(secrets: Secrets, child: &[String], allow: &[String], keep_env: bool) -> Result<(), Failure> {
    let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
    // The service token (get/run/export over HTTPS) is pgvault's, never the child's.
    let plan = envplan::plan(&names, allow, keep_env, &|v| {
        v != "PGVAULT_TOKEN" && std::env::var_os(v).is_some()
    });
    for w in &plan.warnings {
        eprintln!("pgvault: warning: {w}");
    }
    let mut command = Command::new(&child[0]);
    command.args(&child[1..]).env_remove("PGVAULT_TOKEN");
    for (i, var) in &plan.set {
        command.env(var, secrets[*i].1.as_str());
    }
    let err = command.exec();
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Err(Failure::exit(
        code,
        format!("cannot run {}: {err}", text::escape(&child[0])),
    ))
}
