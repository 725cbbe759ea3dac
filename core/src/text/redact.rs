//! Redaction of SQL text for the server log: every string literal becomes `'***'`.
//!
//! Used by the log hook (log_redact.rs) on any log record that mentions the vault. Handles
//! standard strings ('it''s'), escape strings (E'\''), dollar quotes ($$..$$, $tag$..$tag$),
//! and skips comments so a quote inside them starts nothing. Double quotes are deliberately not
//! special: log CONTEXT lines wrap whole statements in them (`SQL statement "SELECT ..."`), so
//! an identifier containing a single quote is over-masked rather than a literal missed. An
//! unterminated literal is redacted to the end: failing closed.
#![forbid(unsafe_code)]

const MASK: &[u8] = b"'***'";

/// Whether a log text refers to the vault: `vault` (schema, roles, extension) or `_secret`
/// (create_secret, update_secret, read_secret, decrypted_secret[s]), in any case. One pass.
pub fn mentions_vault(text: &[u8]) -> bool {
    let at = |i: usize, word: &[u8]| text.len() - i >= word.len() && text[i..i + word.len()].eq_ignore_ascii_case(word);
    (0..text.len()).any(|i| match text[i] {
        b'v' | b'V' => at(i, b"vault"),
        b'_' => at(i, b"_secret"),
        _ => false,
    })
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The text with every string literal replaced by `'***'`, or None when it has none.
pub fn redact_literals(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let prev_ident = i > 0 && is_ident_char(text[i - 1]);
        match c {
            b'-' if text.get(i + 1) == Some(&b'-') => {
                let end = text[i..].iter().position(|&b| b == b'\n').map_or(text.len(), |p| i + p);
                out.extend_from_slice(&text[i..end]);
                i = end;
            }
            b'/' if text.get(i + 1) == Some(&b'*') => {
                let end = find(text, i + 2, b"*/").map_or(text.len(), |p| p + 2);
                out.extend_from_slice(&text[i..end]);
                i = end;
            }
            b'\'' => {
                // E'...' (escape string): backslash escapes. The E was already copied.
                let escapes =
                    i > 0 && text[i - 1].eq_ignore_ascii_case(&b'e') && !(i > 1 && is_ident_char(text[i - 2]));
                i = quoted_end(text, i + 1, b'\'', escapes);
                out.extend_from_slice(MASK);
                changed = true;
            }
            b'$' if !prev_ident => match dollar_tag(text, i) {
                Some(tag_end) => {
                    let tag = &text[i..tag_end];
                    i = find(text, tag_end, tag).map_or(text.len(), |p| p + tag.len());
                    out.extend_from_slice(MASK);
                    changed = true;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            },
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// Redaction for DETAIL and CONTEXT text: literals masked, and the input values that COPY
/// errors quote (`COPY secrets, line 1, column secret: "..."`) withheld to the end.
pub fn redact_context(text: &[u8]) -> Option<Vec<u8>> {
    let redacted = redact_literals(text);
    let t = redacted.as_deref().unwrap_or(text);
    let mut line_start = 0;
    for line in t.split(|&c| c == b'\n') {
        if line.starts_with(b"COPY ") {
            if let Some(p) = find(line, 0, b": \"") {
                let mut out = t[..line_start + p].to_vec();
                out.extend_from_slice(b": (withheld by vault_ext)");
                return Some(out);
            }
        }
        line_start += line.len() + 1;
    }
    redacted
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Index just past the closing quote of a literal starting at `from` (after the opening one).
fn quoted_end(text: &[u8], mut i: usize, quote: u8, backslash: bool) -> usize {
    while i < text.len() {
        let c = text[i];
        if backslash && c == b'\\' {
            i += 2;
        } else if c == quote {
            if text.get(i + 1) == Some(&quote) {
                i += 2; // doubled quote inside the literal
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    text.len()
}

/// If a dollar-quote tag ($$ or $ident$) starts at `i`, the index just past it.
/// `$1` (a parameter) is not a tag.
fn dollar_tag(text: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if text.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while j < text.len() && is_ident_char(text[j]) {
        j += 1;
    }
    (text.get(j) == Some(&b'$')).then_some(j + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        String::from_utf8(redact_literals(s.as_bytes()).unwrap_or_else(|| s.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn literals_are_masked_and_the_rest_kept() {
        assert_eq!(
            r("SELECT vault.create_secret('sk-live-1', 'name', E'd\\'x')"),
            "SELECT vault.create_secret('***', '***', E'***')"
        );
        assert_eq!(
            r("INSERT INTO t VALUES ('it''s', 2)"),
            "INSERT INTO t VALUES ('***', 2)"
        );
        assert_eq!(
            r("SELECT $$a 'b' c$$, $x$ $$ $x$ || 'd'"),
            "SELECT '***', '***' || '***'"
        );
        assert_eq!(r("SELECT f($1, $2)"), "SELECT f($1, $2)");
        assert_eq!(
            r("parameters: $1 = 'secret', $2 = NULL"),
            "parameters: $1 = '***', $2 = NULL"
        );
        assert_eq!(
            r("SELECT x -- it's\n WHERE a = 'v' /* don't */"),
            "SELECT x -- it's\n WHERE a = '***' /* don't */"
        );
        // CONTEXT lines quote whole statements: literals inside are still masked.
        assert_eq!(
            r("SQL statement \"SELECT vault.create_secret('k', '')\"\nPL/pgSQL function f() line 2"),
            "SQL statement \"SELECT vault.create_secret('***', '***')\"\nPL/pgSQL function f() line 2"
        );
        // Known limit: an identifier holding an apostrophe shifts the pairing.
        assert_eq!(r("SELECT \"we'ird\" FROM t WHERE v = 'x'"), "SELECT \"we'***'x'***'");
        assert_eq!(r("SELECT U&'d\\0061t'"), "SELECT U&'***'");
        assert_eq!(r("SELECT 'unterminated secret"), "SELECT '***'");
        assert_eq!(r("SELECT $tag$ never closed"), "SELECT '***'");
        assert_eq!(r("SELECT type'x', xe'y'"), "SELECT type'***', xe'***'");
        assert_eq!(r("SELECT a$b$c"), "SELECT a$b$c");
        assert!(redact_literals(b"SELECT 1").is_none());
    }

    #[test]
    fn copy_context_values_are_withheld() {
        let c = b"COPY secrets, line 2, column secret: \"sk-live\nmore\"\nSQL statement \"x\"";
        assert_eq!(
            redact_context(c).unwrap(),
            b"COPY secrets, line 2, column secret: (withheld by vault_ext)"
        );
        assert_eq!(redact_context(b"PL/pgSQL function f() line 2 at PERFORM"), None);
        assert_eq!(
            redact_context(b"SQL statement \"SELECT 'v'\"").unwrap(),
            b"SQL statement \"SELECT '***'\""
        );
    }

    #[test]
    fn mentions_are_found_case_insensitively() {
        assert!(mentions_vault(b"select * from VAULT.decrypted_secrets"));
        assert!(mentions_vault(b"SELECT create_secret('x')"));
        assert!(!mentions_vault(b"SELECT 1"));
        assert!(!mentions_vault(b"vaul"));
        assert!(mentions_vault(b"SELECT read_SECRET('x')"));
        assert!(!mentions_vault(b"SELECT _secre"));
    }
}
