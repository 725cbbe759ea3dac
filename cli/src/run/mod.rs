//! `pgvault run` (SPEC §7, §13): the child's environment from the selected secrets and an env
//! file's references, then either exec (`--no-masking`) or pgvault stays the parent: output
//! masked, signals forwarded, and with `--watch` the child restarted when its secrets change.
//!
//! Entry point: [`main`]. The pieces: [`mask`] (the streaming matcher), [`child`] (start, pump,
//! signals, exit status), [`watch`] (LISTEN / polling and restarts), [`references`] (the
//! `pgvault://NAME` syntax, shared with `pgvault inject`).

pub mod child;
pub mod mask;
pub mod references;
pub mod watch;

use crate::envplan;
use crate::remote::{self, Remote};
use crate::selection;
use crate::store::secrets;
use crate::text::escape;
use crate::{conn, dotenv, Failure};
use references::{Found, Template};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use zeroize::Zeroizing;

/// What `pgvault run` was asked (its command-line options).
pub struct Options {
    pub tag: Vec<String>,
    pub only: Vec<String>,
    pub allow_var: Vec<String>,
    pub keep_env: bool,
    pub no_masking: bool,
    pub env_file: Option<String>,
    pub watch: bool,
    pub restart_signal: String,
    pub grace: u64,
    pub interval: u64,
    pub command: Vec<String>,
}

/// The child's environment: variables to add to pgvault's, and the secret values among them
/// (what masking conceals; inside a composed value only the secret's part).
#[derive(Default)]
pub struct Env {
    pub set: Vec<(String, Zeroizing<String>)>,
    pub secrets: Vec<Zeroizing<String>>,
    pub warnings: Vec<String>,
}

impl Env {
    /// Whether the child would see the same variables with the same values.
    pub fn same_as(&self, other: &Env) -> bool {
        self.set.len() == other.set.len()
            && self
                .set
                .iter()
                .zip(&other.set)
                .all(|(a, b)| a.0 == b.0 && a.1.as_str() == b.1.as_str())
    }
}

/// Which secrets make the environment: the selection (--tag / --only; everything when no env
/// file is given) and the env file's variables.
pub struct Spec {
    tags: Vec<String>,
    only: Vec<String>,
    /// Whether the selected secrets are added (else only the env file's variables).
    select: bool,
    file: Vec<(String, Template)>,
    allow: Vec<String>,
    keep_env: bool,
}

/// Where secrets are read: a database connection or `pgvault serve` with a token.
pub enum Source<'a> {
    Db(&'a mut conn::Db),
    Remote(&'a Remote),
}

impl Source<'_> {
    fn value(&mut self, name: &str) -> Result<Found, Failure> {
        match self {
            Source::Db(db) => Ok(db.wait(secrets::value(db.client(), name))?),
            Source::Remote(r) => Ok(match r.value(name)? {
                remote::Fetched::Value(v) => Some(Some(v)),
                remote::Fetched::NotGranted => Some(None),
                remote::Fetched::NotFound => None,
            }),
        }
    }
}

impl Spec {
    /// The environment as the secrets are now.
    pub fn build(&self, src: &mut Source<'_>) -> Result<Env, Failure> {
        let secrets = if self.select {
            let rows = match src {
                Source::Db(db) => db.wait(secrets::values(db.client(), &self.tags, &self.only))?,
                Source::Remote(r) => selection::fetch_remote(r, &self.tags, &self.only)?,
            };
            selection::select(rows, &self.tags, &self.only)?
        } else {
            Vec::new()
        };
        let values = references::resolve(self.file.iter().flat_map(|(_, t)| t.names()), &mut |n| src.value(n))?;
        let exists = |v: &str| v != "PGVAULT_TOKEN" && std::env::var_os(v).is_some();
        let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
        let plan = envplan::plan(&names, &self.allow, self.keep_env, &exists);
        let mut env = Env {
            warnings: plan.warnings,
            ..Env::default()
        };
        for (i, var) in plan.set {
            if self.file.iter().any(|(k, _)| k == &var) {
                continue;
            }
            env.set.push((var, secrets[i].1.clone()));
            env.secrets.push(secrets[i].1.clone());
        }
        for (var, template) in &self.file {
            if !envplan::is_env_key(var) {
                env.warnings.push(format!(
                    "skipping {}: it cannot be an environment variable name",
                    escape(var)
                ));
                continue;
            }
            if template.has_references() {
                if envplan::is_protected(var) && !self.allow.iter().any(|a| a == var) {
                    env.warnings.push(format!(
                        "skipping {var} from the env file: its value comes from a secret and it would set a \
                         variable that changes how programs are found or loaded (allow it with --allow-var {var})"
                    ));
                    continue;
                }
                if self.keep_env && exists(var) {
                    env.warnings
                        .push(format!("keeping {var} from the environment (--keep-env)"));
                    continue;
                }
                for name in template.names() {
                    env.secrets.push(values[name].clone());
                }
            }
            env.set.retain(|(v, _)| v != var);
            env.set.push((var.clone(), template.render(&values)));
        }
        env.set.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(env)
    }
}

/// Reads and parses `--env-file FILE` (exit 7 when it cannot be read or parsed).
fn env_file(file: &str) -> Result<Vec<(String, Template)>, Failure> {
    let bytes = Zeroizing::new(std::fs::read(file).map_err(|e| Failure::input(format!("cannot read {file}: {e}")))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| Failure::input(format!("{file} is not UTF-8 text")))?;
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let pairs = dotenv::parse(body).map_err(|e| Failure::input(format!("{file}: {e}")))?;
    let mut out: Vec<(String, Template)> = Vec::new();
    for (key, value) in pairs {
        let value = Zeroizing::new(value);
        let t = Template::value(&value).map_err(|e| Failure::input(format!("{file}: {key}: {e}")))?;
        // Last one wins, as when a shell sources the file.
        out.retain(|(k, _)| k != &key);
        out.push((key, t));
    }
    Ok(out)
}

/// The signal `--restart-signal` names (TERM, SIGHUP, ...).
pub fn parse_signal(s: &str) -> Result<i32, Failure> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    use signal_hook::consts::*;
    Ok(match name {
        "TERM" => SIGTERM,
        "INT" => SIGINT,
        "HUP" => SIGHUP,
        "QUIT" => SIGQUIT,
        "USR1" => SIGUSR1,
        "USR2" => SIGUSR2,
        "KILL" => SIGKILL,
        _ => {
            return Err(Failure::usage(format!(
                "--restart-signal {}: give TERM, INT, HUP, QUIT, USR1, USR2 or KILL",
                escape(s)
            )))
        }
    })
}

/// `pgvault run`: `target` connects when no `remote` is given.
pub fn main(
    opts: Options,
    remote: Option<Remote>,
    target: &dyn Fn() -> Result<conn::Target, Failure>,
) -> Result<(), Failure> {
    let restart_signal = parse_signal(&opts.restart_signal)?;
    let file = opts.env_file.as_deref().map(env_file).transpose()?;
    let spec = Spec {
        select: file.is_none() || !opts.tag.is_empty() || !opts.only.is_empty(),
        tags: opts.tag,
        only: opts.only,
        file: file.unwrap_or_default(),
        allow: opts.allow_var,
        keep_env: opts.keep_env,
    };
    let db_target = match &remote {
        Some(_) => None,
        None => Some(target()?),
    };
    let env = match (&remote, &db_target) {
        (Some(r), _) => {
            r.may_read()?;
            spec.build(&mut Source::Remote(r))?
        }
        (None, Some(t)) => spec.build(&mut Source::Db(&mut conn::Db::open(t)?))?,
        (None, None) => unreachable!("a target when not remote"),
    };
    for w in &env.warnings {
        eprintln!("pgvault: warning: {w}");
    }
    if opts.watch {
        let source = match remote {
            Some(r) => watch::Changes::Poll(r, Duration::from_secs(opts.interval.max(1))),
            None => watch::Changes::Listen(db_target.expect("a target when not remote")),
        };
        let code = watch::supervise(
            &opts.command,
            env,
            !opts.no_masking,
            watch::Restart {
                signal: restart_signal,
                grace: Duration::from_secs(opts.grace),
            },
            spec,
            source,
        )?;
        return Err(Failure::status(code));
    }
    if opts.no_masking {
        return exec(&opts.command, &env);
    }
    child::forward_signals()?;
    let running = child::start(&opts.command, &env.set, Some(&env.secrets))?;
    drop(env);
    let status = running.wait();
    Err(Failure::status(child::exit_code(status)))
}

/// Replaces pgvault with the command, the variables in its environment: the exit code and
/// signals are the child's own, and nothing of pgvault (its connection included) stays around.
fn exec(command: &[String], env: &Env) -> Result<(), Failure> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env_remove("PGVAULT_TOKEN");
    for (var, value) in &env.set {
        cmd.env(var, value.as_str());
    }
    let err = cmd.exec();
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Err(Failure::exit(
        code,
        format!("cannot run {}: {err}", escape(&command[0])),
    ))
}
