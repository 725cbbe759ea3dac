//! `pgvault run --watch` (SPEC §13): pgvault stays the child's parent and learns of changes
//! from `NOTIFY vault_ext_changed` (a dedicated connection that LISTENs) or, over HTTPS, by
//! polling. On each, it builds the environment again; only when the child would see other
//! variables or values does it restart the child: the restart signal, `--grace` seconds, then
//! SIGKILL, and the command again with the new environment. A child that ends by itself ends
//! pgvault with its status.
//!
//! A lost connection is retried with backoff (1 s doubling to 30 s) while the child keeps
//! running; after each (re)connection the environment is built again, so a change made while
//! pgvault was not listening is not missed.

use super::child::{self, Running};
use super::{Env, Source, Spec};
use crate::remote::Remote;
use crate::store::secrets;
use crate::{conn, Failure};
use std::process::ExitStatus;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How changes are learnt.
pub enum Changes {
    /// LISTEN vault_ext_changed on a connection of its own.
    Listen(conn::Target),
    /// `pgvault serve`: read everything again every interval.
    Poll(Remote, Duration),
}

/// How the child is stopped for a restart.
pub struct Restart {
    pub signal: i32,
    pub grace: Duration,
}

enum Event {
    /// The child of that generation ended.
    Exited(u64, ExitStatus),
    /// The environment as built after a notification (or a failure to build it).
    Built(Result<Env, Failure>),
}

/// Runs `command` until it ends by itself; returns pgvault's exit code.
pub fn supervise(
    command: &[String],
    mut env: Env,
    masking: bool,
    restart: Restart,
    spec: Spec,
    changes: Changes,
) -> Result<u8, Failure> {
    let (tx, rx) = channel();
    child::forward_signals()?;
    // Every value the children have had stays concealed.
    let mut concealed: Vec<Zeroizing<String>> = env.secrets.clone();
    let mut generation = 0u64;
    let mask = |c: &Vec<Zeroizing<String>>| masking.then(|| c.clone());
    wait_in_background(
        child::start(command, &env.set, mask(&concealed).as_deref())?,
        generation,
        &tx,
    );
    let events = tx.clone();
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || match changes {
            Changes::Listen(target) => listen(&target, &spec, &events),
            Changes::Poll(remote, every) => poll(&remote, every, &spec, &events),
        })
        .map_err(|e| Failure::failed(format!("cannot start a thread: {e}")))?;
    loop {
        let Ok(event) = rx.recv() else {
            return Err(Failure::failed("the watch stopped"));
        };
        let new = match event {
            Event::Exited(g, status) if g == generation => return Ok(child::exit_code(status)),
            Event::Exited(..) => continue,
            Event::Built(Err(f)) => {
                eprintln!(
                    "pgvault: warning: cannot build the environment again ({}); the command keeps running with the one it has",
                    f.message()
                );
                continue;
            }
            Event::Built(Ok(new)) if new.same_as(&env) => continue,
            Event::Built(Ok(new)) => new,
        };
        let mut new = new;
        eprintln!(
            "pgvault: the command's secrets changed: restarting {}",
            crate::text::escape(&command[0])
        );
        // Stop the child: the signal, the grace period, then SIGKILL. Environments built
        // meanwhile replace the one to start with.
        let _ = child::send_tree(restart.signal);
        let deadline = Instant::now() + restart.grace;
        let mut killed = false;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let event = if killed {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(wait)
            };
            match event {
                Ok(Event::Exited(g, _)) if g == generation => break,
                Ok(Event::Built(Ok(newer))) => new = newer,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!(
                        "pgvault: the command did not stop within {} s: killing it",
                        restart.grace.as_secs()
                    );
                    let _ = child::send_tree(signal_hook::consts::SIGKILL);
                    killed = true;
                }
                Err(RecvTimeoutError::Disconnected) => return Err(Failure::failed("the watch stopped")),
            }
        }
        for w in &new.warnings {
            eprintln!("pgvault: warning: {w}");
        }
        for s in &new.secrets {
            if !concealed.iter().any(|c| c.as_str() == s.as_str()) {
                concealed.push(s.clone());
            }
        }
        env = new;
        generation += 1;
        wait_in_background(
            child::start(command, &env.set, mask(&concealed).as_deref())?,
            generation,
            &tx,
        );
    }
}

fn wait_in_background(running: Running, generation: u64, tx: &Sender<Event>) {
    let tx = tx.clone();
    std::thread::spawn(move || {
        let status = running.wait();
        let _ = tx.send(Event::Exited(generation, status));
    });
}

const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// LISTENs on a connection of its own, reconnecting with backoff; sends the environment built
/// after each (re)connection and each notification.
/// The least time between two rebuilds of the environment on notifications.
const MIN_REBUILD: Duration = Duration::from_secs(1);

fn listen(target: &conn::Target, spec: &Spec, events: &Sender<Event>) {
    let mut backoff = Duration::from_secs(1);
    let mut lost = false;
    loop {
        let connected = conn::Db::open(target).and_then(|db| {
            db.wait(secrets::listen_for_changes(db.client()))?;
            Ok(db)
        });
        let mut db = match connected {
            Ok(db) => db,
            Err(f) => {
                eprintln!(
                    "pgvault: warning: cannot listen for changes ({}); trying again in {} s",
                    f.message().lines().next().unwrap_or_default(),
                    backoff.as_secs()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if lost {
            eprintln!("pgvault: listening for changes again");
        }
        backoff = Duration::from_secs(1);
        loop {
            let built = spec.build(&mut Source::Db(&mut db));
            let closed = db.client().is_closed();
            if events.send(Event::Built(built)).is_err() {
                return;
            }
            if closed {
                break;
            }
            // Wait for a notification; those that came meanwhile are one change. At most one
            // rebuild a second: any login role may NOTIFY the channel, and a flood of them made
            // every watcher decrypt its selection again for each (the review of issue 30).
            let built_at = Instant::now();
            let notified = loop {
                match db.notification(Duration::from_secs(3600)) {
                    Ok(Some(_)) => break true,
                    Ok(None) => continue,
                    Err(_) => break false,
                }
            };
            if !notified {
                break;
            }
            if let Some(rest) = MIN_REBUILD.checked_sub(built_at.elapsed()) {
                std::thread::sleep(rest);
            }
            while let Ok(Some(_)) = db.notification(Duration::ZERO) {}
        }
        eprintln!("pgvault: lost the connection that listens for changes; the command keeps running, reconnecting");
        lost = true;
    }
}

/// Builds the environment through `pgvault serve` every `every`.
fn poll(remote: &Remote, every: Duration, spec: &Spec, events: &Sender<Event>) {
    loop {
        std::thread::sleep(every);
        if events
            .send(Event::Built(spec.build(&mut Source::Remote(remote))))
            .is_err()
        {
            return;
        }
    }
}
