//! `get`, `run` and `export` through `pgvault serve` with a service token instead of a
//! database connection: `PGVAULT_URL` (https only) and `PGVAULT_TOKEN`.
//!
//! The server's certificate is verified against the system's roots plus `PGVAULT_CACERT` (a
//! PEM file) when given. The token goes only into the `Authorization` header: never into a
//! message, a URL or a child process.

use crate::api::types::{ErrorBody, SecretMeta, Session};
use crate::error::{Failure, Kind, ROLES_HINT};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use zeroize::Zeroizing;

/// A `pgvault serve` to read secrets from, and the token to read them with.
pub struct Remote {
    agent: ureq::Agent,
    base: String,
    token: Zeroizing<String>,
}

/// One listed secret.
pub struct Listed {
    pub name: Option<String>,
    pub expired: bool,
}

/// What `GET /api/v1/secrets/{name}` answered.
pub enum Fetched {
    Value(Zeroizing<String>),
    /// Per-secret grants leave the token's role out.
    NotGranted,
    NotFound,
}

/// The server at `url` (`--server` / `PGVAULT_URL`), trusting the system's roots and
/// `cacert` (`--cacert` / `PGVAULT_CACERT`), with the token in `PGVAULT_TOKEN`; None without
/// a URL. The token is read from the environment only: on a command line, ps would show it.
pub fn open(url: Option<&str>, cacert: Option<&Path>) -> Result<Option<Remote>, Failure> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(url) = url else {
        return Ok(None);
    };
    let base = check_url(url)?;
    let token = Zeroizing::new(env("PGVAULT_TOKEN").ok_or_else(|| {
        Failure::usage("PGVAULT_URL is set but PGVAULT_TOKEN is not: the server needs a token (pgvault token create)")
    })?);
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Failure::usage(
            "PGVAULT_TOKEN contains white space or control characters",
        ));
    }
    let roots = roots(cacert)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    Ok(Some(Remote { agent, base, token }))
}

/// `https://host[:port][/prefix]` without a trailing slash; plain http is refused (the token
/// would travel in clear), and so are credentials, queries and fragments in the URL.
fn check_url(url: &str) -> Result<String, Failure> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(Failure::usage(format!(
            "PGVAULT_URL must start with https:// (the token is never sent over plain HTTP): {}",
            crate::text::escape(url)
        )));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "PGVAULT_URL must be https://HOST[:PORT][/PATH], without user, query or fragment: {}",
            crate::text::escape(url)
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The system's trusted roots, plus the certificates of `cafile`.
fn roots(cafile: Option<&Path>) -> Result<Vec<Certificate<'static>>, Failure> {
    let mut out: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(path) = cafile {
        let file = path.display();
        let pem = std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read PGVAULT_CACERT {file}: {e}")))?;
        let before = out.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => out.push(c),
                Ok(_) => {}
                Err(e) => return Err(Failure::usage(format!("PGVAULT_CACERT {file}: {e}"))),
            }
        }
        if out.len() == before {
            return Err(Failure::usage(format!(
                "PGVAULT_CACERT {file} holds no PEM certificate"
            )));
        }
    }
    Ok(out)
}

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A path segment (or query value) with everything but unreserved characters percent-encoded.
fn segment(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

/// A server's answer: its status and body, kept in memory that is wiped after use.
struct Answer {
    status: u16,
    text: Zeroizing<String>,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.text).ok()
    }
}

impl Remote {
    /// GET `path`: the status and the body.
    fn get(&self, path: &str) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let auth = Zeroizing::new(format!("Bearer {}", self.token.as_str()));
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", auth.as_str())
            .header("Accept", "application/json")
            .call()
            .map_err(|e| self.unreachable(e))?;
        drop(auth);
        let status = resp.status().as_u16();
        let text = Zeroizing::new(
            resp.body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| self.unreachable(e))?,
        );
        Ok(Answer { status, text })
    }

    fn unreachable(&self, e: ureq::Error) -> Failure {
        let mut msg = format!("cannot reach {}: {e}", crate::text::escape(&self.base));
        if matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_)) || msg.contains("certificate") {
            msg.push_str("\nhint: the server's certificate must be signed by a trusted root: set PGVAULT_CACERT to your CA's PEM file");
        }
        Failure::connect(msg)
    }

    /// A refusal as pgvault's exit codes: by the SQLSTATE the server sent, through the one
    /// table in error.rs, else by the HTTP status (401: like a wrong password).
    fn refused(&self, answer: &Answer) -> Failure {
        let body: ErrorBody = answer.json().unwrap_or_default();
        let shown = if body.error.is_empty() {
            "no message"
        } else {
            body.error.as_str()
        };
        let msg = format!(
            "{} answered {}: {}",
            crate::text::escape(&self.base),
            answer.status,
            crate::text::escape(shown)
        );
        let kind = match body.sqlstate.as_deref() {
            Some(code) => Kind::of_sqlstate(code),
            None => Kind::of_http_status(answer.status),
        };
        match kind {
            Kind::Unauthenticated => Failure::of(
                kind,
                format!("{msg}\nhint: check PGVAULT_TOKEN (pgvault token list shows which are active)"),
            ),
            Kind::Denied => Failure::of(kind, format!("{msg}\n{ROLES_HINT}")),
            _ => Failure::of(kind, msg),
        }
        .with_sqlstate(body.sqlstate)
    }

    /// The token's role may read values (vault_reader), or the refusal `get` / `run` gives
    /// over SQL for a role that may not.
    pub fn may_read(&self) -> Result<(), Failure> {
        let answer = self.get("/api/v1/session")?;
        if answer.status != 200 {
            return Err(self.refused(&answer));
        }
        let session: Option<Session> = answer.json();
        if session.as_ref().and_then(|s| s.rights).is_some_and(|r| r.read) {
            return Ok(());
        }
        Err(Failure::denied(format!(
            "permission denied: the token's role {} may not read values (vault_reader)\n{ROLES_HINT}",
            crate::text::escape(session.as_ref().map_or("?", |s| s.user.as_str())),
        )))
    }

    /// The secrets having every tag in `tags`, in the server's order (by name).
    pub fn list(&self, tags: &[String]) -> Result<Vec<Listed>, Failure> {
        let query: Vec<String> = tags.iter().map(|t| format!("tag={}", segment(t))).collect();
        let path = if query.is_empty() {
            "/api/v1/secrets".to_string()
        } else {
            format!("/api/v1/secrets?{}", query.join("&"))
        };
        let answer = self.get(&path)?;
        if answer.status != 200 {
            return Err(self.refused(&answer));
        }
        let items: Vec<SecretMeta> = answer
            .json()
            .ok_or_else(|| Failure::failed("the server's list is not a JSON array of secrets"))?;
        Ok(items
            .into_iter()
            .map(|i| Listed {
                name: i.name,
                expired: i.expired,
            })
            .collect())
    }

    /// The value of secret `name` (call [`Remote::may_read`] first).
    pub fn value(&self, name: &str) -> Result<Fetched, Failure> {
        let answer = self.get(&format!("/api/v1/secrets/{}", segment(name)))?;
        match answer.status {
            200 => match answer.json::<crate::api::types::Secret>() {
                Some(s) => Ok(Fetched::Value(s.value)),
                None => Err(Failure::failed("the server's answer has no value")),
            },
            404 => Ok(Fetched::NotFound),
            // After may_read, a 403 is the per-secret grants'.
            403 if answer
                .json::<ErrorBody>()
                .is_some_and(|b| b.sqlstate.as_deref() == Some("42501")) =>
            {
                Ok(Fetched::NotGranted)
            }
            _ => Err(self.refused(&answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_without_credentials_are_taken() {
        assert_eq!(
            check_url("https://vault.internal:8443/").unwrap(),
            "https://vault.internal:8443"
        );
        assert_eq!(
            check_url("https://127.0.0.1:8443/pgvault").unwrap(),
            "https://127.0.0.1:8443/pgvault"
        );
        for bad in [
            "http://127.0.0.1:8443",
            "https://",
            "https://u:p@h",
            "https://h/?x=1",
            "ftp://h",
            "127.0.0.1:8443",
        ] {
            assert_eq!(check_url(bad).unwrap_err().code, 2, "{bad}");
        }
    }

    #[test]
    fn names_are_percent_encoded_in_paths() {
        assert_eq!(segment("db.url-prod_1~"), "db.url-prod_1~");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
