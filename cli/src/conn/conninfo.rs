//! Connection strings: `postgresql://` URLs and libpq `key=value` pairs.

use super::KEYWORDS;
use crate::Failure;
use std::collections::BTreeMap;

/// A connection string: a `postgresql://` / `postgres://` URL, `key=value` pairs, or (as psql
/// takes it) a bare database name.
pub fn parse_conninfo(s: &str) -> Result<BTreeMap<String, String>, Failure> {
    let params = if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        parse_url(s)?
    } else if s.contains('=') {
        parse_pairs(s)?
    } else {
        BTreeMap::from([("dbname".to_string(), s.to_string())])
    };
    for k in params.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(Failure::usage(format!("invalid connection option \"{k}\"")));
        }
    }
    Ok(params)
}

pub(super) fn bad_string(why: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("cannot parse the connection string: {why}"))
}

/// `key = value` pairs separated by white space; a value may be single-quoted, with `\'` and
/// `\\` inside.
pub(super) fn parse_pairs(s: &str) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad_string(format!("missing \"=\" after \"{key}\"")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad_string("unterminated quoted string")),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(bad_string("unterminated quoted string")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.insert(key, value);
    }
}

pub(super) fn percent_decode(s: &str) -> Result<String, Failure> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_string("invalid percent-encoded token"))?;
            if hex == 0 {
                return Err(bad_string("forbidden value %00 in percent-encoded value"));
            }
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_string("percent-encoded value is not UTF-8"))
}

/// `postgresql://[user[:password]@][host][:port][,...][/dbname][?key=value&...]`
pub(super) fn parse_url(s: &str) -> Result<BTreeMap<String, String>, Failure> {
    let rest = s.split_once("://").map(|x| x.1).unwrap_or_default();
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let mut out = BTreeMap::new();
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.insert("user".into(), percent_decode(user)?);
            }
            if let Some(p) = password {
                out.insert("password".into(), percent_decode(p)?);
            }
            hostspec
        }
        None => authority,
    };
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for part in hostspec.split(',') {
        let (host, port) = if let Some(v6) = part.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad_string("missing \"]\" in an IPv6 host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match part.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (part, None),
            }
        };
        hosts.push(percent_decode(host)?);
        ports.push(port.map(percent_decode).transpose()?.unwrap_or_default());
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        out.insert("host".into(), hosts.join(","));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        out.insert("port".into(), ports.join(","));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.insert("dbname".into(), percent_decode(db)?);
    }
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad_string(format!("missing \"=\" in URI query parameter \"{pair}\"")))?;
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        // libpq's JDBC-compatible spelling.
        if k == "ssl" && v == "true" {
            out.insert("sslmode".into(), "require".into());
        } else {
            out.insert(k, v);
        }
    }
    Ok(out)
}
