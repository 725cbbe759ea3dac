//! `get`, `run` and `export` through `pgvault serve` with a service token instead of a
//! database connection: `PGVAULT_URL` (https only) and `PGVAULT_TOKEN`.
//!
//! The server's certificate is verified against the system's roots plus `PGVAULT_CACERT` (a
//! PEM file) when given. The token goes only into the `Authorization` header: never into a
//! message, a URL or a child process.

use crate::Failure;
use serde_json::Value;
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

/// The remote server named by `url` (else `PGVAULT_URL`), or None when neither is set.
pub fn from_env(url: Option<&str>) -> Result<Option<Remote>, Failure> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(url) = url.map(str::to_string).or_else(|| env("PGVAULT_URL")) else {
        return Ok(None);
    };
    let base = check_url(&url)?;
    let token = Zeroizing::new(env("PGVAULT_TOKEN").ok_or_else(|| {
        Failure::usage("PGVAULT_URL is set but PGVAULT_TOKEN is not: the server needs a token (pgvault token create)")
    })?);
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Failure::usage(
            "PGVAULT_TOKEN contains white space or control characters",
        ));
    }
    let roots = roots(env("PGVAULT_CACERT").as_deref())?;
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
fn roots(cafile: Option<&str>) -> Result<Vec<Certificate<'static>>, Failure> {
    let mut out: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(file) = cafile {
        let pem = std::fs::read(file).map_err(|e| Failure::usage(format!("cannot read PGVAULT_CACERT {file}: {e}")))?;
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

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Remote {
    /// GET `path`: the status and the JSON body.
    fn get(&self, path: &str) -> Result<(u16, Value), Failure> {
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
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, body))
    }

    fn unreachable(&self, e: ureq::Error) -> Failure {
        let mut msg = format!("cannot reach {}: {e}", crate::text::escape(&self.base));
        if matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_)) || msg.contains("certificate") {
            msg.push_str("\nhint: the server's certificate must be signed by a trusted root: set PGVAULT_CACERT to your CA's PEM file");
        }
        Failure::connect(msg)
    }

    /// A refusal as pgvault's exit codes: 401 -> 5 (like a wrong password), 403 -> 4,
    /// 404 -> 3, 400 -> 7, others 1.
    fn refused(&self, status: u16, body: &Value) -> Failure {
        let msg = body["error"].as_str().unwrap_or("no message").to_string();
        let msg = format!(
            "{} answered {status}: {}",
            crate::text::escape(&self.base),
            crate::text::escape(&msg)
        );
        match status {
            401 => Failure::connect(format!(
                "{msg}\nhint: check PGVAULT_TOKEN (pgvault token list shows which are active)"
            )),
            403 => Failure::denied(format!("{msg}\n{}", crate::ROLES_HINT)),
            404 => Failure::not_found(msg),
            400 => Failure::input(msg),
            _ => Failure::new(1, msg),
        }
    }

    /// The token's role may read values (vault_reader), or the refusal `get` / `run` gives
    /// over SQL for a role that may not.
    pub fn may_read(&self) -> Result<(), Failure> {
        let (status, body) = self.get("/api/v1/session")?;
        if status != 200 {
            return Err(self.refused(status, &body));
        }
        if body["rights"]["read"].as_bool() == Some(true) {
            return Ok(());
        }
        Err(Failure::denied(format!(
            "permission denied: the token's role {} may not read values (vault_reader)\n{}",
            crate::text::escape(body["user"].as_str().unwrap_or("?")),
            crate::ROLES_HINT
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
        let (status, body) = self.get(&path)?;
        if status != 200 {
            return Err(self.refused(status, &body));
        }
        let items = body
            .as_array()
            .ok_or_else(|| Failure::new(1, "the server's list is not a JSON array"))?;
        Ok(items
            .iter()
            .map(|i| Listed {
                name: i["name"].as_str().map(str::to_string),
                expired: i["expired"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    /// The value of secret `name` (call [`Remote::may_read`] first).
    pub fn value(&self, name: &str) -> Result<Fetched, Failure> {
        let (status, body) = self.get(&format!("/api/v1/secrets/{}", segment(name)))?;
        match status {
            200 => match &body["value"] {
                Value::String(v) => Ok(Fetched::Value(Zeroizing::new(v.clone()))),
                _ => Err(Failure::new(1, "the server's answer has no value")),
            },
            404 => Ok(Fetched::NotFound),
            // After may_read, a 403 is the per-secret grants'.
            403 if body["sqlstate"] == "42501" => Ok(Fetched::NotGranted),
            _ => Err(self.refused(status, &body)),
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
