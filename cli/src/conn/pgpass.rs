//! The password file (`~/.pgpass`, `PGPASSFILE`), read as libpq reads it.

use super::{is_socket, Endpoint, Target};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use zeroize::Zeroizing;

/// The password for `ep` from a password file's text: the first line whose
/// host:port:database:user fields match (`*` matches anything; `\:` and `\\` escape).
pub fn pgpass_lookup(text: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<Zeroizing<String>> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut fields: Vec<String> = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        fields.last_mut().unwrap().push(n);
                    }
                }
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut().unwrap().push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        let fields = Zeroizing::new(fields);
        if wanted.iter().zip(fields.iter()).all(|(w, f)| f == "*" || f == w) {
            return Some(Zeroizing::new(fields[4].clone()));
        }
    }
    None
}

/// The password file's entry for `ep`, when the file exists, is a plain file and is not
/// readable by group or others (libpq ignores it otherwise, with a warning).
pub(super) fn password_from_file(target: &Target, ep: &Endpoint) -> Option<Zeroizing<String>> {
    let file = target.passfile()?;
    let meta = fs::metadata(&file).ok()?;
    if !meta.is_file() {
        eprintln!(
            "pgvault: warning: password file \"{}\" is not a plain file",
            file.display()
        );
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "pgvault: warning: password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        );
        return None;
    }
    let text = Zeroizing::new(fs::read_to_string(&file).ok()?);
    // libpq: a socket (or no host, only hostaddr) matches the host name "localhost".
    let host = if ep.host.is_empty() {
        ep.hostaddr.as_deref().unwrap_or("localhost")
    } else if is_socket(&ep.host) {
        "localhost"
    } else {
        ep.host.as_str()
    };
    pgpass_lookup(&text, host, ep.port, target.dbname(), target.user())
}
