//! `pgvault run`: start a command with the secrets in its environment, its output masked
//! (the work is done by [`crate::run`]).

use super::reading::Via;
use super::Ctx;
use crate::envplan;
use crate::error::Failure;

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
    /// Exec the command directly: its output is not masked (and may be a terminal)
    #[arg(long)]
    no_masking: bool,
    /// Variables from this env file (import's format), values pgvault://NAME or containing
    /// {{ pgvault://NAME }}; then only --tag/--only secrets are added besides
    #[arg(long, value_name = "FILE")]
    env_file: Option<String>,
    /// Restart the command when its secrets change (LISTEN, or polling over HTTPS)
    #[arg(long)]
    watch: bool,
    /// The signal that asks the command to stop for a restart
    #[arg(long, value_name = "SIG", default_value = "TERM", requires = "watch")]
    restart_signal: String,
    /// Seconds between the restart signal and SIGKILL
    #[arg(long, value_name = "SECONDS", default_value_t = 10, requires = "watch")]
    grace: u64,
    /// Seconds between two polls of pgvault serve (--server, PGVAULT_URL)
    #[arg(long, value_name = "SECONDS", default_value_t = 30, requires = "watch")]
    interval: u64,
    #[command(flatten)]
    via: Via,
    /// The command and its arguments, after --
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(super) command: Vec<String>,
}

impl Run {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let remote = self.via.remote(ctx)?;
        crate::run::main(
            crate::run::Options {
                tag: self.tag,
                only: self.only,
                allow_var: self.allow_var,
                keep_env: self.keep_env,
                no_masking: self.no_masking,
                env_file: self.env_file,
                watch: self.watch,
                restart_signal: self.restart_signal,
                grace: self.grace,
                interval: self.interval,
                command: self.command,
            },
            remote,
            &|| ctx.target(),
        )
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

Masking: the command's standard output and error pass through pgvault, which writes
<concealed by pgvault> for every injected secret value of 6 or more bytes, also when the value
is split across writes. They are then pipes, not a terminal (programs may stop using colours or
buffer differently). Masking cannot catch a value the command encodes or transforms (base64,
hex, URL-encoding, upper case, a part of the value, one character per line) nor what it writes
elsewhere (files, sockets, /dev/tty). Only the start of a possible value is held back until the
next bytes show it is not one (or the output ends); everything else is written at once.
Signals INT, TERM, HUP, QUIT, USR1, USR2 and WINCH are passed to the command, and pgvault exits
with its status (128 + N after signal N). --no-masking execs the command directly instead.

--watch: pgvault stays the command's parent and listens for NOTIFY vault_ext_changed (over
PGVAULT_URL: polls every --interval seconds). When the environment it would build differs, it
sends --restart-signal (TERM), waits --grace seconds, kills the command if it is still there and
starts it again with the new values. A lost connection is retried while the command runs.
The listening connection is a second one: give the password through PGPASSWORD, ~/.pgpass or
the DSN (else it is asked again at the terminal, as on each reconnection).

--env-file FILE: its variables are added to the environment; a value pgvault://NAME is the
secret's value, {{{{ pgvault://NAME }}}} inside a value is replaced by it. A variable whose value
comes from a secret follows the rules above. An unknown or unreadable secret stops run before
the command starts (exit 3 or 4, as get).

Examples:
  pgvault run --tag prod -- ./server
  pgvault run --only db_url -- sh -c 'psql \"$DB_URL\"'
  pgvault run --keep-env -- make deploy       # variables already set win
  pgvault run --env-file .env.pgvault -- ./server
  pgvault run --watch --grace 5 --tag prod -- ./server",
        envplan::rule_help()
    )
}
