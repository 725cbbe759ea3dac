//! The `.env` format `pgvault import` reads and `pgvault export --format env` writes, and the
//! environment variable names `pgvault run` gives secrets.
//!
//! Read: one `KEY=VALUE` per line, optionally preceded by `export `; blank lines and lines
//! starting with `#` are skipped. A value is
//! - bare: up to the end of the line or a ` #` comment, surrounding blanks trimmed;
//! - single-quoted: taken literally up to the closing `'` (may span lines);
//! - double-quoted: up to the closing `"` (may span lines), with the escapes `\n`, `\r`, `\t`,
//!   `\"`, `\\` and `\$`.
//!
//! Written: `KEY="VALUE"` with every character that needs it escaped, so reading back what was
//! written gives the same keys and values.

use std::fmt;

/// A problem in an env file: the line it starts on and what is wrong (never the value).
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Whether `key` may stand on the left of `=` in an env file.
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses an env file into (key, value) pairs in file order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let (line, next) = line_at(text, pos);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            pos = next;
            continue;
        }
        let line_no = 1 + text[..pos].matches('\n').count();
        let err = |problem: &str| ParseError {
            line: line_no,
            problem: problem.to_string(),
        };
        let body = trimmed.strip_prefix("export ").map(str::trim_start).unwrap_or(trimmed);
        let Some(eq) = body.find('=') else {
            return Err(err("expected KEY=VALUE"));
        };
        let key = body[..eq].trim_end();
        if !is_valid_key(key) {
            return Err(err(
                "the key must be letters, digits, '_', '.' or '-', not starting with a digit",
            ));
        }
        // A quoted value may run past this line, so it is read from the whole text.
        let mut at = offset_in(text, body) + eq + 1;
        at += text[at..].len() - text[at..].trim_start_matches([' ', '\t']).len();
        let value = match text[at..].chars().next() {
            Some(q @ ('"' | '\'')) => {
                let (value, len) = quoted(&text[at + 1..], q).ok_or_else(|| err("unterminated quoted value"))?;
                let (tail, after) = line_at(text, at + 1 + len + 1);
                let tail = tail.trim();
                if !tail.is_empty() && !tail.starts_with('#') {
                    return Err(err("unexpected text after the closing quote"));
                }
                pos = after;
                value
            }
            _ => {
                let (bare, after) = line_at(text, at);
                let bare = match bare.find(" #").or_else(|| bare.find("\t#")) {
                    Some(i) => &bare[..i],
                    None => bare,
                };
                pos = after;
                bare.trim().to_string()
            }
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The line starting at byte `pos` of `text` (without its `\n` or `\r\n`) and where the next
/// one starts.
fn line_at(text: &str, pos: usize) -> (&str, usize) {
    let rest = &text[pos..];
    match rest.find('\n') {
        Some(i) => (rest[..i].strip_suffix('\r').unwrap_or(&rest[..i]), pos + i + 1),
        None => (rest, text.len()),
    }
}

/// Where `part`, a slice of `text`, starts in it.
fn offset_in(text: &str, part: &str) -> usize {
    part.as_ptr() as usize - text.as_ptr() as usize
}

/// The value of a quoted string whose opening quote `q` was just before `s`, and the length in
/// bytes of its body up to (not including) the closing quote.
fn quoted(s: &str, q: char) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == q => return Some((value, i)),
            '\\' if q == '"' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    '"' | '\\' | '$' => value.push(e),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
            }
            c => value.push(c),
        }
    }
    None
}

/// One `KEY="VALUE"` line (with its newline) that `parse` reads back as (key, value).
pub fn format_line(key: &str, value: &str) -> String {
    let mut line = String::with_capacity(key.len() + value.len() + 4);
    line.push_str(key);
    line.push_str("=\"");
    for c in value.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '"' | '\\' | '$' => {
                line.push('\\');
                line.push(c);
            }
            c => line.push(c),
        }
    }
    line.push_str("\"\n");
    line
}

/// The environment variable `pgvault run` sets for a secret: the name upper-cased, every
/// character that is not an ASCII letter or digit replaced by `_`.
pub fn env_name(secret_name: &str) -> String {
    secret_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_bare_quoted_comments_and_export() {
        let text = "# a comment\n\nA=1\nexport B = two words  # trailing\nC='lit $x \\n'\nD=\"a\\nb \\\"q\\\" \\\\ \\$\"\r\nE=\nF=x#y\n";
        assert_eq!(
            parse(text).unwrap(),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "lit $x \\n"),
                ("D", "a\nb \"q\" \\ $"),
                ("E", ""),
                ("F", "x#y"),
            ])
        );
    }

    #[test]
    fn quoted_values_span_lines_and_line_numbers_follow() {
        let text = "A=\"one\ntwo\"\nB='x\ny'\nbad line\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err,
            ParseError {
                line: 5,
                problem: "expected KEY=VALUE".into()
            }
        );
        assert_eq!(
            parse("A=\"one\ntwo\"\nB='x\ny'\n").unwrap(),
            pairs(&[("A", "one\ntwo"), ("B", "x\ny")])
        );
    }

    #[test]
    fn rejects_bad_keys_unterminated_quotes_and_trailing_text() {
        assert_eq!(parse("1A=x").unwrap_err().line, 1);
        assert!(parse("A B=x").unwrap_err().problem.contains("key"));
        assert!(parse("\nA=\"open").unwrap_err().problem.contains("unterminated"));
        assert_eq!(parse("\nA=\"open").unwrap_err().line, 2);
        assert!(parse("A=\"x\" y")
            .unwrap_err()
            .problem
            .contains("after the closing quote"));
        assert_eq!(parse("A=\"x\"  # fine\n").unwrap(), pairs(&[("A", "x")]));
    }

    #[test]
    fn errors_never_contain_the_value() {
        let err = parse("A=\"s3cr3t-value").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
        let err = parse("A=\"s3cr3t-value\" tail").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn written_lines_read_back_unchanged() {
        let values = [
            "plain",
            "",
            "with space",
            "quote \" and \\ and $HOME",
            "new\nline\r\ttab",
            "unicode é ✓",
            "#hash",
            "'single'",
        ];
        let mut text = String::new();
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format_line(&format!("K_{i}"), v));
        }
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), values.len());
        for (i, (k, v)) in back.iter().enumerate() {
            assert_eq!(k, &format!("K_{i}"));
            assert_eq!(v, values[i]);
        }
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("stripe_key"), "STRIPE_KEY");
        assert_eq!(env_name("db.url-prod"), "DB_URL_PROD");
        assert_eq!(env_name("clé"), "CL_");
        assert_eq!(env_name("a b"), "A_B");
        assert!(is_valid_key("db.url-prod") && is_valid_key("_x") && !is_valid_key("9x") && !is_valid_key(""));
    }
}
