//! `pgvault inject -i TEMPLATE [-o FILE]` (SPEC §13): any text file with `{{ pgvault://NAME }}`
//! references, resolved. FILE is written atomically (a new file in the same directory, mode
//! 0600, renamed over FILE), so a reader sees the old file or the whole new one, never part,
//! and the mode is 0600 also when FILE existed. On any error nothing is left.

use crate::run::references::{self, Found, Template};
use crate::Failure;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Reads the template `input` (`-`: standard input), resolves its references through
/// `lookup` and writes the result to `output` (None: standard output).
pub fn main(
    input: &str,
    output: Option<&str>,
    lookup: &mut dyn FnMut(&str) -> Result<Found, Failure>,
) -> Result<(), Failure> {
    let mut raw = Zeroizing::new(Vec::new());
    if input == "-" {
        io::stdin().read_to_end(&mut raw)?;
    } else {
        *raw = fs::read(input).map_err(|e| Failure::input(format!("cannot read {input}: {e}")))?;
    }
    let text = std::str::from_utf8(&raw).map_err(|_| Failure::input(format!("{input} is not UTF-8 text")))?;
    let template = Template::text(text).map_err(|e| Failure::input(format!("{input}: {e}")))?;
    let values = references::resolve(template.names(), lookup)?;
    let out = template.render(&values);
    match output {
        None => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
        Some(file) => write_atomically(Path::new(file), out.as_bytes())
            .map_err(|e| Failure::failed(format!("cannot write {file}: {e} (nothing was written)"))),
    }
}

/// Writes `bytes` to a new file (mode 0600) next to `path`, then renames it over `path`. The
/// new file is removed when anything fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut attempt = 0u32;
    let (tmp, mut f) = loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            ".{}.pgvault-{}-{nanos:x}{attempt}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pgvault-inject-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn lookup(n: &str) -> Result<Found, Failure> {
        Ok(match n {
            "db_pw" => Some(Some(Zeroizing::new("s3cret-pw".into()))),
            "hidden" => Some(None),
            _ => None,
        })
    }

    #[test]
    fn inject_writes_the_resolved_file_0600_over_an_existing_one() {
        let d = dir();
        let tpl = d.join("app.conf.tpl");
        let out = d.join("app.conf");
        fs::write(&tpl, "user = app\npassword = {{ pgvault://db_pw }}\nother = {{ x }}\n").unwrap();
        fs::write(&out, "old").unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
        main(tpl.to_str().unwrap(), Some(out.to_str().unwrap()), &mut lookup).unwrap();
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            "user = app\npassword = s3cret-pw\nother = {{ x }}\n"
        );
        assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2, "no temporary file left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn inject_leaves_nothing_on_error() {
        let d = dir();
        let tpl = d.join("t");
        let out = d.join("o");
        for (text, code) in [
            ("a {{ pgvault://gone }}", 3),
            ("a {{ pgvault://hidden }}", 4),
            ("a {{ pgvault://db_pw", 7),
        ] {
            fs::write(&tpl, text).unwrap();
            let e = main(tpl.to_str().unwrap(), Some(out.to_str().unwrap()), &mut lookup).unwrap_err();
            assert_eq!(e.code, code, "{text}");
            assert!(!out.exists());
            assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "only the template");
        }
        // A directory that does not exist: the error, and still nothing.
        let e = main(
            tpl.to_str().unwrap(),
            Some(d.join("no/such").to_str().unwrap()),
            &mut lookup,
        );
        assert!(e.is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
