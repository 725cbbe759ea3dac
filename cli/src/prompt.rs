//! Prompts that do not echo, and that give the terminal back its echo when interrupted
//! (Ctrl-C, a hang-up or a kill) while they wait.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// The terminal's descriptor while a prompt waits, else -1.
static TTY_FD: AtomicI32 = AtomicI32::new(-1);
/// The terminal's settings before the prompt (written before TTY_FD is set, read by the handler).
static mut SAVED: Option<libc::termios> = None;

const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn restore_and_die(sig: libc::c_int) {
    let fd = TTY_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: SAVED is written before TTY_FD is set and not changed while it is; tcsetattr,
        // write, signal and raise are async-signal-safe.
        unsafe {
            if let Some(t) = (*std::ptr::addr_of!(SAVED)).as_ref() {
                libc::tcsetattr(fd, libc::TCSANOW, t);
            }
            libc::write(fd, b"\n".as_ptr().cast(), 1);
        }
    }
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Reads one line from the terminal without echo, after showing `prompt` there.
pub fn password(prompt: &str) -> io::Result<String> {
    let tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    // SAFETY: a zeroed termios is a valid value for tcgetattr to fill; the handlers only read
    // SAVED while TTY_FD holds this descriptor, which outlives them (reset below).
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            *std::ptr::addr_of_mut!(SAVED) = Some(t);
            TTY_FD.store(fd, Ordering::SeqCst);
            for s in SIGNALS {
                libc::signal(s, restore_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t);
            }
        }
    }
    let answer = rpassword::prompt_password(prompt);
    TTY_FD.store(-1, Ordering::SeqCst);
    unsafe {
        for s in SIGNALS {
            libc::signal(s, libc::SIG_DFL);
        }
    }
    drop(tty);
    answer
}
