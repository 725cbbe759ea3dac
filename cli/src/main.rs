//! pgvault: the secrets of a vault_ext database from the command line.
//!
//! Values travel only as query parameters and results, the child's environment (`run`) and
//! standard output (`get`, `export`); never through argv, messages or files pgvault writes.

mod conn;
mod dotenv;
mod prompt;

use postgres::Client;
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use zeroize::Zeroizing;

const USAGE: &str = "\
usage: pgvault [--dsn CONNINFO] COMMAND [ARGS]

commands:
  list [--tag T]...                    names, masked values, tags, expiry (vault_viewer)
  get NAME                             print the value (vault_reader)
  set NAME [--description D] [--tag T]... [--expires TIMESTAMP]
                                       create or update; the value comes from standard input
                                       or a prompt that does not echo, never the command line
                                       (vault_admin)
  rm NAME                              delete a secret (vault_admin)
  run [--tag T]... [--only NAME]... -- CMD [ARGS]...
                                       run CMD with the secrets as environment variables
                                       (names upper-cased, other characters as _) (vault_reader)
  import FILE.env [--tag T]...         create or update one secret per KEY=VALUE line; FILE may
                                       be - for standard input (vault_admin)
  export [--format env|json] [--tag T]... [--only NAME]...
                                       write the values to standard output (vault_reader)

connection: --dsn (URL, key=value pairs or service=NAME), else DATABASE_URL, else the libpq
            variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE, PGSSLMODE, ...);
            passwords from PGPASSWORD, ~/.pgpass (PGPASSFILE) or a prompt
exit codes: 0 ok, 1 server error, 2 usage, 3 no such secret, 4 permission denied,
            5 cannot connect, 6 no vault_ext in that database, 7 bad input;
            run: the command's own exit code (126 not executable, 127 not found)
";

/// Why pgvault stops, as the documented exit code and a message (never a value).
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(2, message)
    }
    fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(3, message)
    }
    pub fn connect(message: impl Into<String>) -> Failure {
        Failure::new(5, message)
    }
    pub fn no_extension(message: impl Into<String>) -> Failure {
        Failure::new(6, message)
    }
    fn input(message: impl Into<String>) -> Failure {
        Failure::new(7, message)
    }
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        let code = match e.code().map(|c| c.code()) {
            Some("42501") => 4,
            Some("P0002") => 3,
            Some("3F000" | "42P01" | "42883") => 6,
            None if e.is_closed() => 5,
            _ => 1,
        };
        let mut message = error_text(&e);
        if code == 4 {
            message.push_str(
                "\nhint: list needs vault_viewer, get/run/export vault_reader, set/rm/import vault_admin \
                 (GRANT vault_reader TO your_role)",
            );
        }
        Failure::new(code, message)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::new(1, e.to_string())
    }
}

/// A server error as psql shows it: severity, message, SQLSTATE, detail and hint.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("\ndetail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("\nhint: {hint}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// The command line after `--dsn` is taken out: options with values, flags, and positionals.
struct Args {
    words: Vec<String>,
}

impl Args {
    /// Every value of `--name V` / `--name=V`, removed from the words.
    fn take_all(&mut self, name: &str) -> Result<Vec<String>, Failure> {
        let mut values = Vec::new();
        let mut i = 0;
        let long = format!("--{name}");
        let prefix = format!("--{name}=");
        while i < self.words.len() {
            if self.words[i] == long {
                if i + 1 >= self.words.len() {
                    return Err(Failure::usage(format!("{long} needs a value")));
                }
                values.push(self.words.remove(i + 1));
                self.words.remove(i);
            } else if let Some(v) = self.words[i].strip_prefix(&prefix) {
                values.push(v.to_string());
                self.words.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(values)
    }

    /// The value of an option given at most once.
    fn take_one(&mut self, name: &str) -> Result<Option<String>, Failure> {
        let mut values = self.take_all(name)?;
        if values.len() > 1 {
            return Err(Failure::usage(format!("--{name} given more than once")));
        }
        Ok(values.pop())
    }

    /// The one remaining positional, named `what` in the usage message.
    fn one(self, what: &str, command: &str) -> Result<String, Failure> {
        Ok(self.positionals(&[what], command)?.swap_remove(0))
    }

    /// The remaining positionals, refusing unknown options.
    fn positionals(self, expected: &[&str], command: &str) -> Result<Vec<String>, Failure> {
        if let Some(opt) = self.words.iter().find(|w| w.starts_with("--")) {
            return Err(Failure::usage(format!("{command}: unknown option {opt}")));
        }
        if self.words.len() != expected.len() {
            if command == "set" && self.words.len() > expected.len() {
                return Err(Failure::usage(
                    "set takes the value from standard input or a prompt, never from the command line \
                     (it would be kept in shell history and shown by ps): printf %s \"$VALUE\" | pgvault set NAME",
                ));
            }
            return Err(Failure::usage(format!(
                "usage: pgvault {command} {}",
                expected.join(" ")
            )));
        }
        Ok(self.words)
    }
}

fn main() -> ExitCode {
    match run_cli(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("pgvault: {}", f.message);
            if f.code == 2 {
                eprintln!("run pgvault --help for the commands");
            }
            ExitCode::from(f.code)
        }
    }
}

fn run_cli(argv: Vec<String>) -> Result<(), Failure> {
    // Everything after `--` belongs to the command `run` starts.
    let split = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let (mine, child) = (argv[..split].to_vec(), argv.get(split + 1..).map(<[String]>::to_vec));
    let mut args = Args { words: mine };
    let dsn = args.take_one("dsn")?;
    if args.words.is_empty() {
        eprint!("{USAGE}");
        return Err(Failure::usage("no command given"));
    }
    if args.words.iter().any(|w| w == "--help" || w == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    if args.words.iter().any(|w| w == "--version") {
        println!("pgvault {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let command = args.words.remove(0);
    if child.is_some() && command != "run" {
        return Err(Failure::usage(format!("{command} takes no command after --")));
    }
    let config = conn::config(dsn.as_deref())?;
    match command.as_str() {
        "list" => {
            let tags = args.take_all("tag")?;
            args.positionals(&[], "list")?;
            list(&mut conn::connect(&config)?, &tags)
        }
        "get" => {
            let name = args.one("NAME", "get")?;
            get(&mut conn::connect(&config)?, &name)
        }
        "set" => {
            let description = args.take_one("description")?;
            let tags = args.take_all("tag")?;
            let expires = args.take_one("expires")?;
            let name = args.one("NAME", "set")?;
            let value = read_value(&name)?;
            let mut client = conn::connect(&config)?;
            let mut tx = client.transaction()?;
            let created = upsert(&mut tx, &name, &value, description.as_deref(), &tags)?;
            if let Some(expires) = expires {
                let when = if expires.is_empty() || expires == "never" {
                    None
                } else {
                    Some(expires)
                };
                tx.execute(
                    "UPDATE vault.secrets SET expires_at = $2::text::timestamptz WHERE name = $1",
                    &[&name, &when],
                )?;
            }
            tx.commit()?;
            eprintln!("pgvault: {} secret {name}", if created { "created" } else { "updated" });
            Ok(())
        }
        "rm" => {
            let name = args.one("NAME", "rm")?;
            let n = conn::connect(&config)?.execute("DELETE FROM vault.secrets WHERE name = $1", &[&name])?;
            if n == 0 {
                return Err(Failure::not_found(format!("no secret named {name}")));
            }
            eprintln!("pgvault: deleted secret {name}");
            Ok(())
        }
        "run" => {
            let tags = args.take_all("tag")?;
            let only = args.take_all("only")?;
            args.positionals(&[], "run")?;
            let Some(child) = child.filter(|c| !c.is_empty()) else {
                return Err(Failure::usage(
                    "usage: pgvault run [--tag T]... [--only NAME]... -- CMD [ARGS]...",
                ));
            };
            let secrets = fetch(conn::connect(&config)?, &tags, &only)?;
            exec_with(secrets, &child)
        }
        "import" => {
            let tags = args.take_all("tag")?;
            let file = args.one("FILE.env", "import")?;
            import(&mut conn::connect(&config)?, &file, &tags)
        }
        "export" => {
            let format = args.take_one("format")?.unwrap_or_else(|| "env".into());
            let tags = args.take_all("tag")?;
            let only = args.take_all("only")?;
            args.positionals(&[], "export")?;
            if format != "env" && format != "json" {
                return Err(Failure::usage(format!("--format must be env or json, not {format}")));
            }
            let secrets = fetch(conn::connect(&config)?, &tags, &only)?;
            export(&secrets, &format)
        }
        other => Err(Failure::usage(format!("unknown command {other}"))),
    }
}

fn list(client: &mut Client, tags: &[String]) -> Result<(), Failure> {
    let rows = client.query(
        "SELECT coalesce(name, '(id ' || id || ')'), coalesce(masked_secret, ''), \
                array_to_string(tags, ','), \
                coalesce(to_char(expires_at, 'YYYY-MM-DD HH24:MI:SSOF'), ''), \
                coalesce(expires_at <= now(), false), \
                to_char(updated_at, 'YYYY-MM-DD HH24:MI:SSOF') \
           FROM vault.masked_secrets \
          WHERE tags @> $1::text[] \
          ORDER BY name NULLS LAST, id",
        &[&tags],
    )?;
    let mut table = vec![["NAME", "VALUE", "TAGS", "EXPIRES", "UPDATED"].map(String::from)];
    for r in &rows {
        let expires: String = r.get(3);
        let expired: bool = r.get(4);
        let expires = if expired {
            format!("{expires} (expired)")
        } else {
            expires
        };
        table.push([r.get(0), r.get(1), r.get(2), expires, r.get(5)]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = io::stdout().lock();
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn get(client: &mut Client, name: &str) -> Result<(), Failure> {
    let row = client.query_opt(
        "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1",
        &[&name],
    )?;
    let Some(row) = row else {
        return Err(Failure::not_found(format!("no secret named {name}")));
    };
    let value: Option<String> = row.get(0);
    let value = Zeroizing::new(value.ok_or_else(|| not_granted(name))?);
    let mut out = io::stdout().lock();
    out.write_all(value.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(())
}

/// The value for `set`: all of standard input (one trailing newline dropped), or typed twice
/// at a prompt that does not echo when standard input is a terminal.
fn read_value(name: &str) -> Result<Zeroizing<String>, Failure> {
    let value = if io::stdin().is_terminal() {
        let first = Zeroizing::new(prompt::password(&format!("value for {name}: "))?);
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
    check_value(name, &value)?;
    Ok(value)
}

/// The value of a secret whose per-secret grants (vault.grant_secret) leave this role out
/// reads as NULL.
fn not_granted(name: &str) -> Failure {
    Failure::new(
        4,
        format!(
            "secret {name} is not readable by this role: vault.grant_secret narrowed it to other roles \
             (see vault.secret_grants)"
        ),
    )
}

fn check_value(name: &str, value: &str) -> Result<(), Failure> {
    if value.is_empty() {
        return Err(Failure::input(format!("empty value for {name}; nothing was changed")));
    }
    if value.contains('\0') {
        return Err(Failure::input(format!(
            "the value for {name} contains a NUL byte, which text cannot hold"
        )));
    }
    Ok(())
}

/// Creates or updates the secret `name` inside `tx`; true when it was created. Tags given
/// replace the secret's tags; a description given replaces its description.
fn upsert(
    tx: &mut postgres::Transaction<'_>,
    name: &str,
    value: &str,
    description: Option<&str>,
    tags: &[String],
) -> Result<bool, Failure> {
    let tags = (!tags.is_empty()).then_some(tags);
    let existing = tx.query_opt(
        "SELECT id::text FROM vault.secrets WHERE name = $1 FOR UPDATE",
        &[&name],
    )?;
    match existing {
        Some(row) => {
            let id: String = row.get(0);
            tx.execute(
                "SELECT vault.update_secret($1::text::uuid, $2, NULL, $3, NULL, $4::text[])",
                &[&id, &value, &description, &tags],
            )?;
            Ok(false)
        }
        None => {
            tx.execute(
                "SELECT vault.create_secret($1, $2, coalesce($3, ''), NULL, $4::text[])",
                &[&value, &name, &description, &tags],
            )?;
            Ok(true)
        }
    }
}

/// Name and value of the secrets that have a name, every tag in `tags` and, when `only` is not
/// empty, one of those names (each of which must exist).
fn fetch(mut client: Client, tags: &[String], only: &[String]) -> Result<Vec<(String, Zeroizing<String>)>, Failure> {
    let only_filter = (!only.is_empty()).then_some(only);
    let rows = client.query(
        "SELECT name, decrypted_secret, coalesce(expires_at <= now(), false) \
           FROM vault.decrypted_secrets \
          WHERE name IS NOT NULL AND tags @> $1::text[] AND ($2::text[] IS NULL OR name = ANY($2)) \
          ORDER BY name",
        &[&tags, &only_filter],
    )?;
    let mut secrets = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: String = r.get(0);
        let value: Option<String> = r.get(1);
        let Some(value) = value.map(Zeroizing::new) else {
            // A secret with per-secret grants that leave this role out: named ones are an
            // error, the others are left out with a word on standard error.
            if only.contains(&name) {
                return Err(not_granted(&name));
            }
            eprintln!("pgvault: warning: skipping secret {name}: its grants leave this role out");
            continue;
        };
        if r.get::<_, bool>(2) {
            eprintln!("pgvault: warning: secret {name} has expired (its value is used all the same)");
        }
        secrets.push((name, value));
    }
    if let Some(missing) = only
        .iter()
        .find(|n| !rows.iter().any(|r| r.get::<_, &str>(0) == n.as_str()))
    {
        let why = if tags.is_empty() { "" } else { " with those tags" };
        return Err(Failure::not_found(format!("no secret named {missing}{why}")));
    }
    Ok(secrets)
}

/// Replaces pgvault with `child`, the secrets in its environment: the exit code and signals
/// are the child's own, and nothing of pgvault (its connection included) stays around.
fn exec_with(secrets: Vec<(String, Zeroizing<String>)>, child: &[String]) -> Result<(), Failure> {
    let mut by_var: BTreeMap<String, &str> = BTreeMap::new();
    for (name, _) in &secrets {
        if let Some(other) = by_var.insert(dotenv::env_name(name), name) {
            return Err(Failure::input(format!(
                "secrets {other} and {name} both become the variable {}; pick one with --only",
                dotenv::env_name(name)
            )));
        }
    }
    let mut command = Command::new(&child[0]);
    command.args(&child[1..]);
    for (name, value) in &secrets {
        command.env(dotenv::env_name(name), value.as_str());
    }
    let err = command.exec();
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Err(Failure::new(code, format!("cannot run {}: {err}", child[0])))
}

fn import(client: &mut Client, file: &str, tags: &[String]) -> Result<(), Failure> {
    let mut text = Zeroizing::new(String::new());
    if file == "-" {
        io::stdin().read_to_string(&mut text)?;
    } else {
        let bytes =
            Zeroizing::new(std::fs::read(file).map_err(|e| Failure::input(format!("cannot read {file}: {e}")))?);
        *text = String::from_utf8(bytes.to_vec()).map_err(|_| Failure::input(format!("{file} is not UTF-8 text")))?;
    }
    let pairs = dotenv::parse(&text).map_err(|e| Failure::input(format!("{file}: {e}; nothing was imported")))?;
    let pairs: Vec<(String, Zeroizing<String>)> = pairs.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect();
    let mut seen = BTreeMap::new();
    for (key, value) in &pairs {
        if seen.insert(key.as_str(), ()).is_some() {
            return Err(Failure::input(format!(
                "{file}: {key} appears twice; nothing was imported"
            )));
        }
        check_value(key, value).map_err(|f| Failure::input(format!("{file}: {}; nothing was imported", f.message)))?;
    }
    let mut tx = client.transaction()?;
    let mut created = 0;
    for (key, value) in &pairs {
        created += usize::from(upsert(&mut tx, key, value, None, tags)?);
    }
    tx.commit()?;
    eprintln!(
        "pgvault: imported {} secrets ({created} created, {} updated)",
        pairs.len(),
        pairs.len() - created
    );
    Ok(())
}

fn export(secrets: &[(String, Zeroizing<String>)], format: &str) -> Result<(), Failure> {
    let mut text = Zeroizing::new(String::new());
    if format == "json" {
        let map: serde_json::Map<String, serde_json::Value> = secrets
            .iter()
            .map(|(n, v)| (n.clone(), serde_json::Value::String(v.to_string())))
            .collect();
        text.push_str(&serde_json::to_string_pretty(&map).map_err(|e| Failure::new(1, e.to_string()))?);
        text.push('\n');
    } else {
        if let Some((bad, _)) = secrets.iter().find(|(n, _)| !dotenv::is_valid_key(n)) {
            return Err(Failure::input(format!(
                "secret name {bad:?} cannot be a key in an env file; use --format json or --only"
            )));
        }
        for (name, value) in secrets {
            text.push_str(&dotenv::format_line(name, value));
        }
    }
    eprintln!(
        "pgvault: writing {} secret values in plain text to standard output{}",
        secrets.len(),
        if io::stdout().is_terminal() {
            " (this terminal)"
        } else {
            ""
        }
    );
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
