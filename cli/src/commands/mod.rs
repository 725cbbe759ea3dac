//! The command line: one file per command, each its own `clap::Args` with an `execute`.

mod audit;
mod completions;
mod export;
mod get;
mod grant;
mod history;
mod import;
mod inject;
mod list;
pub(crate) mod reading;
mod rm;
mod rollback;
mod run;
pub mod serve;
mod set;
mod token;
mod verify;

use crate::error::Failure;
use crate::{conn, remote, text};
use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Connection: --dsn (a postgresql:// URL, key=value pairs, or service=NAME), else DATABASE_URL,
else the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE, PGSSLMODE,
PGSSLROOTCERT, ...); passwords from PGPASSWORD, ~/.pgpass (PGPASSFILE) or a prompt.
get, run, export and inject read through pgvault serve instead when PGVAULT_URL (https://...) is set,
with a service token in PGVAULT_TOKEN (and PGVAULT_CACERT, a CA file, if needed).

Exit codes: 0 ok, 1 server error, 2 usage, 3 no such secret (or version), 4 permission denied,
5 cannot connect, 6 no vault_ext in that database, 7 bad input, 8 verify found damaged secrets;
run: the command's own exit code (128 + N after signal N; 126 not executable, 127 not found);
inject: as get.";

/// The secrets of a vault_ext database: list, read, write, run programs with them.
#[derive(Parser)]
#[command(name = "pgvault", version, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    /// Where to connect: a postgresql:// URL, libpq key=value pairs, or service=NAME
    /// (a password here is visible in ps: prefer PGPASSWORD or ~/.pgpass)
    #[arg(long, global = true, value_name = "CONNINFO")]
    dsn: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    List(list::List),
    Get(get::Get),
    Set(set::Set),
    Rm(rm::Rm),
    Run(run::Run),
    Inject(inject::Inject),
    Import(import::Import),
    Export(export::Export),
    History(history::History),
    Rollback(rollback::Rollback),
    Audit(audit::Audit),
    Grant(grant::Grant),
    Revoke(grant::Revoke),
    Verify(verify::Verify),
    Serve(serve::Serve),
    #[command(subcommand)]
    Token(token::Token),
    Completions(completions::Completions),
}

/// What every command may need: where to connect, and how.
pub struct Ctx {
    dsn: Option<String>,
}

impl Ctx {
    /// The connection settings (--dsn, DATABASE_URL, the libpq variables, files).
    pub fn target(&self) -> Result<conn::Target, Failure> {
        conn::config(self.dsn.as_deref())
    }

    /// A connection to a database with vault_ext.
    pub fn connect(&self) -> Result<conn::Db, Failure> {
        conn::Db::open(&self.target()?)
    }

    /// `pgvault serve` to read through instead (get, run, export), when PGVAULT_URL is set.
    pub fn remote(
        &self,
        url: Option<&str>,
        cacert: Option<&std::path::Path>,
    ) -> Result<Option<remote::Remote>, Failure> {
        match remote::open(url, cacert)? {
            Some(_) if self.dsn.is_some() => Err(Failure::usage(
                "give either --dsn (a database connection) or PGVAULT_URL (pgvault serve with PGVAULT_TOKEN), not both",
            )),
            r => Ok(r),
        }
    }
}

impl Cli {
    /// Runs the command; the failure carries the exit code and the message.
    pub fn execute(self) -> Result<(), Failure> {
        let ctx = Ctx { dsn: self.dsn };
        match self.command {
            Cmd::List(c) => c.execute(&ctx),
            Cmd::Get(c) => c.execute(&ctx),
            Cmd::Set(c) => c.execute(&ctx),
            Cmd::Rm(c) => c.execute(&ctx),
            Cmd::Run(c) => c.execute(&ctx),
            Cmd::Inject(c) => c.execute(&ctx),
            Cmd::Import(c) => c.execute(&ctx),
            Cmd::Export(c) => c.execute(&ctx),
            Cmd::History(c) => c.execute(&ctx),
            Cmd::Rollback(c) => c.execute(&ctx),
            Cmd::Audit(c) => c.execute(&ctx),
            Cmd::Grant(c) => c.execute(&ctx),
            Cmd::Revoke(c) => c.execute(&ctx),
            Cmd::Verify(c) => c.execute(&ctx),
            Cmd::Serve(c) => c.execute(&ctx),
            Cmd::Token(c) => c.execute(&ctx),
            Cmd::Completions(c) => c.execute(),
        }
    }
}

/// The id of the secret named `name`, or exit 3.
fn secret_id(db: &conn::Db, name: &str) -> Result<String, Failure> {
    db.wait(crate::store::secrets::id(db.client(), name))?
        .ok_or_else(|| Failure::not_found(format!("no secret named {}", text::escape(name))))
}

/// A name a new secret may have: not empty, no `=` (the `set KEY=VALUE` habit would put the
/// value in the name, shown to every viewer), no control characters.
fn check_name(name: &str) -> Result<(), Failure> {
    if let Some((key, _)) = name.split_once('=') {
        let key = text::escape(key);
        return Err(Failure::usage(format!(
            "a secret name cannot contain \"=\"; nothing was changed. pgvault takes values from standard \
             input, never the command line: printf %s \"$VALUE\" | pgvault set {key}"
        )));
    }
    if name.is_empty() {
        return Err(Failure::usage("a secret name cannot be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "a secret name cannot contain control characters: {}",
            text::escape(name)
        )));
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), Failure> {
    if value.contains('\0') {
        return Err(Failure::input(format!(
            "the value for {} contains a NUL byte, which text cannot hold",
            text::escape(name)
        )));
    }
    Ok(())
}

/// A JSON document on standard output, pretty-printed.
fn print_json(out: &mut impl std::io::Write, value: &impl serde::Serialize) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Failure::failed(e.to_string()))?;
    writeln!(out, "{s}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn names_with_equals_are_refused_without_echoing_the_value() {
        let f = check_name("API_KEY=abc123").unwrap_err();
        assert_eq!(f.code(), 2);
        assert!(f.message().contains("pgvault set API_KEY"));
        assert!(!f.message().contains("abc123"));
        assert!(check_name("").is_err());
        assert!(check_name("a\u{1b}[31m").is_err());
        assert!(check_name("db.url-prod").is_ok());
    }

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pgvault", "run", "--only", "a", "--", "sh", "-c", "x"]).unwrap();
        assert!(matches!(cli.command, Cmd::Run(ref r) if r.command == ["sh", "-c", "x"]));
        assert!(Cli::try_parse_from(["pgvault", "lst"]).is_err());
    }
}
