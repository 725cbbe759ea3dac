//! References to secrets in env files (`pgvault run --env-file`) and templates (`pgvault
//! inject`), SPEC §13: a whole value `pgvault://NAME`, or `{{ pgvault://NAME }}` anywhere in a
//! text (spaces inside the braces optional).
//!
//! A reference's NAME is the secret's name as stored: everything after `pgvault://` up to the
//! end of the value (whole form) or up to the closing `}}` (embedded form), blanks around it
//! trimmed. `{{` not followed by `pgvault://` is ordinary text.

use crate::text::escape;
use crate::Failure;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const SCHEME: &str = "pgvault://";

/// A text with references: literal pieces and secret names, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Secret(String),
}

impl Template {
    /// An env file's value: `pgvault://NAME` as the whole value, else embedded references.
    pub fn value(v: &str) -> Result<Template, String> {
        if let Some(name) = v.trim().strip_prefix(SCHEME) {
            let name = name.trim();
            if name.is_empty() {
                return Err("a reference without a secret name (pgvault://NAME)".into());
            }
            return Ok(Template {
                pieces: vec![Piece::Secret(name.to_string())],
            });
        }
        Template::text(v)
    }

    /// Any text with `{{ pgvault://NAME }}` references.
    pub fn text(t: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = t;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let inner = after.trim_start_matches([' ', '\t']);
            if !inner.starts_with(SCHEME) {
                lit.push_str(&rest[..open + 2]);
                rest = after;
                continue;
            }
            let line = 1 + t[..t.len() - rest.len() + open].matches('\n').count();
            let Some(close) = inner.find("}}") else {
                return Err(format!(
                    "line {line}: a reference {{{{ pgvault://... without its closing }}}}"
                ));
            };
            let name = inner[SCHEME.len()..close].trim_matches([' ', '\t']);
            if name.is_empty() || name.contains(['\n', '{']) {
                return Err(format!(
                    "line {line}: a reference needs a secret name: {{{{ pgvault://NAME }}}}"
                ));
            }
            lit.push_str(&rest[..open]);
            if !lit.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Secret(name.to_string()));
            rest = &inner[close + 2..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template { pieces })
    }

    /// Whether the text names any secret (its value then comes from a secret).
    pub fn has_references(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Secret(_)))
    }

    /// The secrets named, in order (repeats included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Secret(n) => Some(n.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The text with each reference replaced by its value from `values` (every name must be
    /// there: see [`resolve`]).
    pub fn render(&self, values: &BTreeMap<String, Zeroizing<String>>) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Secret(n) => out.push_str(&values[n]),
            }
        }
        out
    }
}

/// What looking a secret up found, as `get` sees it: None when there is no such secret,
/// Some(None) when this role may not read it (grants, or not exportable).
pub type Found = Option<Option<Zeroizing<String>>>;

/// The value of every name, through `lookup`; the first unknown or unreadable name fails as
/// `pgvault get` does (exit 3 or 4).
pub fn resolve<'a>(
    names: impl IntoIterator<Item = &'a str>,
    lookup: &mut dyn FnMut(&str) -> Result<Found, Failure>,
) -> Result<BTreeMap<String, Zeroizing<String>>, Failure> {
    let mut values = BTreeMap::new();
    for name in names {
        if values.contains_key(name) {
            continue;
        }
        match lookup(name)? {
            Some(Some(v)) => {
                values.insert(name.to_string(), v);
            }
            Some(None) => return Err(crate::selection::not_granted(name)),
            None => {
                return Err(Failure::not_found(format!(
                    "no secret named {} (referenced as pgvault://{})",
                    escape(name),
                    escape(name)
                )))
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &Template) -> Vec<&str> {
        t.names().collect()
    }

    #[test]
    fn whole_values_and_embedded_references_parse() {
        let t = Template::value("pgvault://stripe_key").unwrap();
        assert_eq!(names(&t), ["stripe_key"]);
        let t = Template::value("postgres://app:{{ pgvault://db pw }}@db/{{pgvault://db.name}}").unwrap();
        assert_eq!(names(&t), ["db pw", "db.name"]);
        assert!(t.has_references());
        let t = Template::value("plain {{ not a ref }} and {{").unwrap();
        assert!(!t.has_references());
        let mut v = BTreeMap::new();
        v.insert("db pw".to_string(), Zeroizing::new("s3cret".to_string()));
        v.insert("db.name".to_string(), Zeroizing::new("main".to_string()));
        let t = Template::value("postgres://app:{{ pgvault://db pw }}@db/{{pgvault://db.name}}").unwrap();
        assert_eq!(t.render(&v).as_str(), "postgres://app:s3cret@db/main");
        let t = Template::value("plain {{ not a ref }} and {{").unwrap();
        assert_eq!(t.render(&v).as_str(), "plain {{ not a ref }} and {{");
    }

    #[test]
    fn broken_references_are_errors_with_the_line() {
        assert!(Template::value("pgvault://").is_err());
        let e = Template::text("a\nb {{ pgvault://x\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(Template::text("{{ pgvault:// }}").is_err());
        assert!(Template::text("{{pgvault://a\n}}").is_err());
    }

    #[test]
    fn resolve_fails_as_get_does() {
        let mut lookup = |n: &str| -> Result<Found, Failure> {
            Ok(match n {
                "ok" => Some(Some(Zeroizing::new("value-1".into()))),
                "hidden" => Some(None),
                _ => None,
            })
        };
        let v = resolve(["ok", "ok"], &mut lookup).unwrap();
        assert_eq!(v["ok"].as_str(), "value-1");
        assert_eq!(resolve(["ok", "gone"], &mut lookup).unwrap_err().code, 3);
        assert_eq!(resolve(["hidden"], &mut lookup).unwrap_err().code, 4);
        // Names are never values: the message names the secret only.
        let e = resolve(["gone"], &mut lookup).unwrap_err();
        assert!(e.message().contains("pgvault://gone"));
    }
}
