//! Giving the terminal back its echo when a no-echo prompt is interrupted (Ctrl-C, a hang-up
//! or a kill): the terminal's settings are saved before the prompt, and a signal handler puts
//! them back before the signal does what it would have done.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, Ordering};

/// The terminal's descriptor while a prompt waits, else -1.
static TTY_FD: AtomicI32 = AtomicI32::new(-1);

/// The terminal's settings before the prompt. Written only while TTY_FD is -1 (no handler
/// reads it then), read only by the handler while TTY_FD holds the descriptor.
struct Saved(UnsafeCell<Option<libc::termios>>);

// SAFETY: access is ordered by TTY_FD (SeqCst): the one writer stores before publishing the
// descriptor, readers (signal handlers) read only after seeing it published.
unsafe impl Sync for Saved {}

static SAVED: Saved = Saved(UnsafeCell::new(None));

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn restore_and_die(sig: libc::c_int) {
    let fd = TTY_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: SAVED is written before TTY_FD is set and not changed while it is; tcsetattr,
        // write, signal and raise are async-signal-safe.
        unsafe {
            if let Some(t) = (*SAVED.0.get()).as_ref() {
                libc::tcsetattr(fd, libc::TCSANOW, t);
            }
            libc::write(fd, b"\n".as_ptr().cast(), 1);
        }
    }
    // SAFETY: restoring the default action and raising the signal again are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// While alive, an interrupting signal restores the terminal `fd`'s settings of the moment
/// the guard was made; dropped, the signals get their default actions back.
pub struct RestoreOnSignal(());

impl RestoreOnSignal {
    /// Saves `fd`'s settings and installs the handlers; None when `fd` is not a terminal
    /// (nothing to restore). Only one guard exists at a time: pgvault prompts one at a time.
    pub fn new(fd: libc::c_int) -> Option<RestoreOnSignal> {
        if TTY_FD.load(Ordering::SeqCst) >= 0 {
            return None;
        }
        // SAFETY: a zeroed termios is a valid value for tcgetattr to fill; SAVED is written
        // while TTY_FD is -1, so no handler reads it at the same time.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            *SAVED.0.get() = Some(t);
            TTY_FD.store(fd, Ordering::SeqCst);
            for s in SIGNALS {
                libc::signal(s, restore_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t);
            }
        }
        Some(RestoreOnSignal(()))
    }
}

impl Drop for RestoreOnSignal {
    fn drop(&mut self) {
        TTY_FD.store(-1, Ordering::SeqCst);
        // SAFETY: setting the default action of a signal has no memory-safety preconditions.
        unsafe {
            for s in SIGNALS {
                libc::signal(s, libc::SIG_DFL);
            }
        }
    }
}
