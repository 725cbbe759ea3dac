//! Prompts that do not echo, and that give the terminal back its echo when interrupted
//! (Ctrl-C, a hang-up or a kill) while they wait.

use crate::ffi::tty::RestoreOnSignal;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::io::AsRawFd;

/// Reads one line from the terminal without echo, after showing `prompt` there.
pub fn password(prompt: &str) -> io::Result<String> {
    let tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let guard = RestoreOnSignal::new(tty.as_raw_fd());
    let answer = rpassword::prompt_password(prompt);
    drop(guard);
    drop(tty);
    answer
}
