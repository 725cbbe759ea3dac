//! Which secrets `get`, `export` and `run` use: the rows read (over SQL, or through `pgvault
//! serve`) narrowed to those this role may read, with the warnings and errors for the rest.

use crate::error::Failure;
use crate::remote::{self, Remote};
use crate::store::secrets::Value;
use crate::text;
use zeroize::Zeroizing;

pub type Secrets = Vec<(String, Zeroizing<String>)>;

/// The value of a secret whose per-secret grants (vault.grant_secret) leave this role out, or
/// of a non-exportable secret (never returned, also not to vault_admin), reads as NULL.
pub fn not_granted(name: &str) -> Failure {
    Failure::denied(format!(
        "secret {} is not readable by this role: vault.grant_secret narrowed it to other roles \
         (see vault.secret_grants), or it is not exportable (only used inside the server, by \
         vault.hmac, vault.sign_jwt, ...)",
        text::escape(name)
    ))
}

/// [`crate::store::secrets::values`] through `pgvault serve`: the list (the same filter and order), then
/// each value.
pub fn fetch_remote(r: &Remote, tags: &[String], only: &[String]) -> Result<Vec<Value>, Failure> {
    r.may_read()?;
    let mut rows = Vec::new();
    for item in r.list(tags)? {
        let Some(name) = item.name else { continue };
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let value = match r.value(&name)? {
            remote::Fetched::Value(v) => Some(v),
            remote::Fetched::NotGranted => None,
            // Deleted since the list was made.
            remote::Fetched::NotFound => continue,
        };
        rows.push(Value {
            name,
            value,
            expired: item.expired,
        });
    }
    Ok(rows)
}

/// Name and value of the rows this role may read; the others are left out with a warning,
/// and an error when named in `only` (each of which must exist).
pub fn select(rows: Vec<Value>, tags: &[String], only: &[String]) -> Result<Secrets, Failure> {
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let name = r.name.clone();
        let Some(value) = r.value.clone() else {
            // A secret with per-secret grants that leave this role out: named ones are an
            // error, the others are left out with a word on standard error.
            if only.contains(&name) {
                return Err(not_granted(&name));
            }
            eprintln!(
                "pgvault: warning: skipping secret {}: its grants leave this role out, or it is not exportable",
                text::escape(&name)
            );
            continue;
        };
        if r.expired {
            eprintln!(
                "pgvault: warning: secret {} has expired (its value is used all the same)",
                text::escape(&name)
            );
        }
        out.push((name, value));
    }
    if let Some(missing) = only.iter().find(|n| !rows.iter().any(|r| &r.name == *n)) {
        let why = if tags.is_empty() { "" } else { " with those tags" };
        return Err(Failure::not_found(format!(
            "no secret named {}{why}",
            text::escape(missing)
        )));
    }
    Ok(out)
}
