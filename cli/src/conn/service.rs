//! The connection service file (`pg_service.conf`, `PGSERVICE`, `PGSERVICEFILE`).

use super::KEYWORDS;
use crate::Failure;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The settings of service `name`: the user's file (PGSERVICEFILE, else ~/.pg_service.conf)
/// first, then the system's (PGSYSCONFDIR/pg_service.conf).
pub(super) fn lookup_service(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Vec<(String, String)>, Failure> {
    let user_file = env("PGSERVICEFILE")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let sysconf = env("PGSYSCONFDIR").unwrap_or_else(|| "/etc/postgresql-common".into());
    let files = [user_file, Some(Path::new(&sysconf).join("pg_service.conf"))];
    for file in files.iter().flatten() {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Failure::usage(format!(
                    "cannot read service file \"{}\": {e}",
                    file.display()
                )))
            }
        };
        if let Some(found) = parse_service(&text, name, file)? {
            return Ok(found);
        }
    }
    Err(Failure::usage(format!(
        "definition of service \"{name}\" not found (looked in {})",
        files
            .iter()
            .flatten()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )))
}

/// The `key=value` lines of section `[name]` of a service file, or None without that section.
pub(super) fn parse_service(text: &str, name: &str, file: &Path) -> Result<Option<Vec<(String, String)>>, Failure> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            in_section = section.strip_suffix(']') == Some(name);
            if in_section {
                found = Some(Vec::new());
            }
            continue;
        }
        if !in_section {
            continue;
        }
        let bad = |why: &str| {
            Failure::usage(format!(
                "syntax error in service file \"{}\", line {}: {why}",
                file.display(),
                n + 1
            ))
        };
        let (k, v) = line.split_once('=').ok_or_else(|| bad("expected key=value"))?;
        let k = k.trim();
        if k == "service" {
            return Err(bad("nested service specifications not supported"));
        }
        if !KEYWORDS.contains(&k) {
            return Err(bad(&format!("invalid connection option \"{k}\"")));
        }
        if let Some(f) = found.as_mut() {
            f.push((k.to_string(), v.trim().to_string()));
        }
    }
    Ok(found)
}
