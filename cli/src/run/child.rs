//! The child of `pgvault run` when pgvault stays its parent (masking, `--watch`): started with
//! its environment, its output pumped through the masker, signals forwarded, its exit status
//! turned into pgvault's.

use super::mask::Masker;
use crate::text::escape;
use crate::Failure;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;
use zeroize::Zeroizing;

/// The size asked for the output pipes, and of each read from them.
const PIPE_SIZE: usize = 256 * 1024;

/// The signals passed on to the child (SPEC §13).
pub const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// The running child's pid, 0 when there is none (between a restart's stop and start).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// From now on, the forwarded signals no longer stop pgvault: each goes to the child.
///
/// A signal the kernel sent (Ctrl-C, Ctrl-\ or a window size change at the terminal) went to
/// the terminal's whole foreground process group, the child included, and is not sent a second
/// time.
pub fn forward_signals() -> Result<(), Failure> {
    let mut signals = SignalsInfo::<WithOrigin>::new(FORWARDED)
        .map_err(|e| Failure::failed(format!("cannot handle signals: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                if matches!(origin.cause, Cause::Kernel) {
                    continue;
                }
                let _ = send(origin.signal);
            }
        })
        .map_err(|e| Failure::failed(format!("cannot start a thread: {e}")))?;
    Ok(())
}

/// Sends `sig` to the running child, if any.
pub fn send(sig: i32) -> io::Result<()> {
    let pid = CHILD.load(Ordering::SeqCst);
    let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pid),
        rustix::process::Signal::from_named_raw(sig),
    ) else {
        return Ok(());
    };
    rustix::process::kill_process(pid, sig).map_err(io::Error::from)
}

/// Sends `sig` to the running child and to every process below it (read from /proc), so a
/// restart under --watch also reaches what a shell, a wrapper script or `npm start` started:
/// signalled alone, the child's own children kept running on the old secrets, and held the
/// output pipes so the new child waited for them (the review of issue 30). A process that
/// left the tree (a daemon that double-forked) is not found.
pub fn send_tree(sig: i32) -> io::Result<()> {
    let root = CHILD.load(Ordering::SeqCst);
    if root <= 0 {
        return Ok(());
    }
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        if let Some(c) = children.get(&tree[i]) {
            tree.extend(c);
        }
        i += 1;
    }
    let Some(sig) = rustix::process::Signal::from_named_raw(sig) else {
        return Ok(());
    };
    let mut result = Ok(());
    for pid in tree {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            if let Err(e) = rustix::process::kill_process(pid, sig) {
                if pid.as_raw_nonzero().get() == root {
                    result = Err(io::Error::from(e));
                }
            }
        }
    }
    result
}

/// A process's parent, from /proc/PID/stat (the field after the parenthesised name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A started child and the threads pumping its output.
pub struct Running {
    child: Child,
    pumps: Vec<JoinHandle<()>>,
}

/// Starts `command` with `env` added to pgvault's environment (less PGVAULT_TOKEN). With
/// `mask`, its standard output and error are pipes read by pgvault, which writes them with
/// those values concealed; without, they are pgvault's own.
pub fn start(
    command: &[String],
    env: &[(String, Zeroizing<String>)],
    mask: Option<&[Zeroizing<String>]>,
) -> Result<Running, Failure> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env_remove("PGVAULT_TOKEN");
    for (var, value) in env {
        cmd.env(var, value.as_str());
    }
    if mask.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|err| {
        let code = if err.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        Failure::exit(code, format!("cannot run {}: {err}", escape(&command[0])))
    })?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let mut pumps = Vec::new();
    if let Some(values) = mask {
        let new = || Masker::new(values.iter().map(|v| v.as_bytes()));
        if let Some(out) = child.stdout.take() {
            let (m, to) = (new(), raw(io::stdout().as_fd())?);
            pumps.push(std::thread::spawn(move || pump(out, to, m)));
        }
        if let Some(err) = child.stderr.take() {
            let (m, to) = (new(), raw(io::stderr().as_fd())?);
            pumps.push(std::thread::spawn(move || pump(err, to, m)));
        }
    }
    Ok(Running { child, pumps })
}

impl Running {
    /// Waits for the child to end and for its output to be written.
    pub fn wait(mut self) -> ExitStatus {
        let status = loop {
            match self.child.wait() {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Only when the child was already reaped: as if it had failed.
                Err(_) => break ExitStatus::from_raw(1 << 8),
            }
        };
        let _ = CHILD.compare_exchange(self.child.id() as i32, 0, Ordering::SeqCst, Ordering::SeqCst);
        // A grandchild that keeps the pipes open keeps these threads reading until it ends.
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
        status
    }
}

/// pgvault's standard output or error without Rust's line buffering: each pumped read is
/// one write, at once.
fn raw(fd: BorrowedFd<'_>) -> Result<File, Failure> {
    fd.try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Failure::failed(format!("cannot duplicate an output: {e}")))
}

/// pgvault's exit code for the child's status: its own code, 128 + N after signal N.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        _ => 1,
    }
}

/// Copies `from` to `to` through the masker, each read written before the next: only the start of a possible value ever waits. When `to` is closed (pgvault run ...
/// | head), reading stops and the pipe closes: the child's next write fails (SIGPIPE), as it
/// would without pgvault.
fn pump<R: Read + AsFd>(mut from: R, mut to: File, mut masker: Masker) {
    // A larger pipe: fewer wake-ups of pgvault and the child per megabyte (best effort).
    let _ = rustix::pipe::fcntl_setpipe_size(from.as_fd(), PIPE_SIZE);
    let mut buf = vec![0u8; PIPE_SIZE];
    let mut out = Vec::with_capacity(buf.len() + 1024);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        // Most reads hold no value and do not end with the start of one: written as read.
        let written = if masker.passes(&buf[..n]) {
            to.write_all(&buf[..n])
        } else {
            masker.push(&buf[..n], &mut out);
            let w = to.write_all(&out);
            out.clear();
            w
        };
        if written.is_err() {
            return;
        }
    }
    masker.finish(&mut out);
    let _ = to.write_all(&out);
    let _ = to.flush();
}
