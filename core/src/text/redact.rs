//! Redaction of SQL text for the server log: every string literal becomes `'***'`.
//!
//! Used by the log hook (src/ffi/log_hook.rs) on any log record that touches the vault. Handles
//! standard strings ('it''s'), escape strings (E'\''), dollar quotes ($$..$$, $tag$..$tag$),
//! nested comments (`/* /* */ */`), and skips comments so a quote inside them starts nothing.
//!
//! Where PostgreSQL's reading depends on something the text does not say, every possible reading
//! is taken and whatever any of them calls a literal is masked (failing closed):
//! - a backslash in a plain string escapes the next character under
//!   `standard_conforming_strings = off` and not under `on` (and a statement can change the
//!   setting between being parsed and being logged);
//! - double quotes delimit identifiers in a statement, but CONTEXT lines wrap whole statements
//!   in them (`SQL statement "SELECT ..."`), so they are read both as quotes and as plain text.
//!
//! An unterminated literal is redacted to the end.
#![forbid(unsafe_code)]

const MASK: &[u8] = b"'***'";

/// The names of vault_ext's objects (schema vault: tables, views, functions). A statement naming
/// one of them, qualified or not, is treated as touching the vault whatever `search_path` says.
/// The backend adds the names it finds in the catalog (tests/log_cluster.sh checks this list
/// against a fresh install); this list serves until it has looked.
pub const VAULT_NAMES: &[&str] = &[
    "vault",
    "secrets",
    "decrypted_secrets",
    "masked_secrets",
    "secret_versions",
    "decrypted_secret_versions",
    "secret_acl",
    "secret_grants",
    "keys",
    "key_status",
    "audit_log",
    "create_secret",
    "update_secret",
    "read_secret",
    "rollback_secret",
    "grant_secret",
    "revoke_secret",
    "expiring_secrets",
    "verify_secrets",
    "reencrypt_secrets",
    "create_key",
    "rotate_key",
    "rotate_root_key",
    "purge_audit_log",
    "mask",
    "loaded_fingerprint",
    "_decrypt",
    "_mask_secret",
    "_rewrap",
    "_rekey",
    "_check_key_type",
    "_previous_fingerprint",
    "_loaded_fingerprint",
    "_archive_version",
    "secrets_archive",
    "secret_versions_guard",
    "_stamp_grant",
    "migrate_from",
    "_supabase_row_kind",
    "_audit_grants",
    "_audit_secrets",
    "_keys_in_use",
    "_keys_one_default",
    "root_key_fingerprint",
    "keys_changed",
    "grants_changed",
    "secrets_encrypt",
    "secrets_audit_create",
    "secrets_audit_update",
    "secrets_audit_reencrypt",
    "secrets_audit_delete",
    "secrets_audit_truncate",
    "secret_acl_audit",
    "keys_audit",
    "_audit_rollback",
    "_audit_rotate_key",
    "_audit_rotate_root_key",
    "_rewrapped",
    "_rebind_secrets",
    "reencrypt_in_batches",
    "api_tokens",
    "api_token_hashes",
    "api_token_uses",
    "create_api_token",
    "_create_api_token",
    "revoke_api_token",
    "api_token_role",
    "_api_token_role",
    "api_token_self",
    // issue 30: the NOTIFY trigger function
    "_notify_changed",
    "_api_token_self",
    // Using a secret without reading it (sql/use.sql, src/api/usage.rs).
    "hmac",
    "hmac_verify",
    "verify_webhook",
    "sign_jwt",
    "verify_jwt",
    "create_signing_key",
    "public_key",
    "sign",
    "verify_signature",
    "create_encryption_key",
    "rotate_encryption_key",
    "encrypt",
    "decrypt",
    "decrypt_text",
    "rewrap",
    "secret_kinds",
    "unexportable_secrets",
    "unexportable_changed",
    "_keep_unexportable",
];

/// Whether a log text refers to the vault by its own words: `vault` (schema, roles, extension) or
/// `_secret` (create_secret, update_secret, read_secret, decrypted_secret[s]), in any case; or
/// uses a Unicode-escaped identifier (`U&"\0076ault"`), which may spell anything. One pass.
pub fn mentions_vault(text: &[u8]) -> bool {
    let at = |i: usize, word: &[u8]| text.len() - i >= word.len() && text[i..i + word.len()].eq_ignore_ascii_case(word);
    (0..text.len()).any(|i| match text[i] {
        b'v' | b'V' => at(i, b"vault"),
        b'_' => at(i, b"_secret"),
        b'&' => i > 0 && text[i - 1].eq_ignore_ascii_case(&b'u') && text.get(i + 1) == Some(&b'"'),
        _ => false,
    })
}

/// PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1), cut at a character.
const NAME_MAX: usize = 63;

/// Calls `f` with every word of the text (runs of identifier characters, and the contents of
/// double quotes), ASCII-lowercased and cut to 63 bytes as PostgreSQL cuts identifiers, until
/// `f` returns true. Words inside literals and comments are included: a false match only masks
/// more.
pub fn any_word(text: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> bool {
    let mut buf = [0u8; NAME_MAX];
    let mut check = |word: &[u8]| {
        let mut n = word.len().min(NAME_MAX);
        while n < word.len() && n > 0 && (word[n] & 0xC0) == 0x80 {
            n -= 1; // do not cut a UTF-8 character
        }
        for (b, c) in buf.iter_mut().zip(&word[..n]) {
            *b = c.to_ascii_lowercase();
        }
        f(&buf[..n])
    };
    let mut i = 0;
    while i < text.len() {
        if is_ident_char(text[i]) {
            let end = text[i..]
                .iter()
                .position(|&c| !is_ident_cont(c))
                .map_or(text.len(), |p| i + p);
            if check(&text[i..end]) {
                return true;
            }
            i = end;
        } else if text[i] == b'"' {
            let end = text[i + 1..]
                .iter()
                .position(|&c| c == b'"')
                .map_or(text.len(), |p| i + 1 + p);
            if end > i + 1 && check(&text[i + 1..end]) {
                return true;
            }
            i += 1; // the words inside are checked too
        } else {
            i += 1;
        }
    }
    false
}

/// Words followed by `(` that are not function calls.
const NOT_CALLS: &[&[u8]] = &[
    b"all",
    b"and",
    b"any",
    b"array",
    b"as",
    b"between",
    b"by",
    b"case",
    b"cast",
    b"check",
    b"coalesce",
    b"conflict",
    b"constraint",
    b"cube",
    b"default",
    b"distinct",
    b"do",
    b"else",
    b"except",
    b"exists",
    b"filter",
    b"foreign",
    b"from",
    b"greatest",
    b"group",
    b"grouping",
    b"having",
    b"ilike",
    b"in",
    b"include",
    b"intersect",
    b"into",
    b"is",
    b"join",
    b"key",
    b"lateral",
    b"least",
    b"like",
    b"limit",
    b"not",
    b"nullif",
    b"offset",
    b"on",
    b"or",
    b"order",
    b"over",
    b"partition",
    b"primary",
    b"references",
    b"returning",
    b"rollup",
    b"row",
    b"select",
    b"set",
    b"sets",
    b"some",
    b"table",
    b"then",
    b"union",
    b"unique",
    b"using",
    b"values",
    b"when",
    b"where",
    b"window",
    b"with",
    b"within",
];

/// Whether the text may call a function: a `CALL`, or a word or quoted identifier followed by
/// `(` that is not a keyword (nor the table of `INTO t (...)`). Used while the backend does not
/// know which functions use the vault: such a statement is then treated as touching it.
pub fn may_call_function(text: &[u8]) -> bool {
    let mut previous_into = false;
    let mut i = 0;
    while i < text.len() {
        let (word, end) = if is_ident_char(text[i]) {
            let end = text[i..]
                .iter()
                .position(|&c| !is_ident_cont(c))
                .map_or(text.len(), |p| i + p);
            (Some(&text[i..end]), end)
        } else if text[i] == b'"' {
            let end = text[i + 1..]
                .iter()
                .position(|&c| c == b'"')
                .map_or(text.len(), |p| i + 2 + p);
            (None, end)
        } else {
            i += 1;
            continue;
        };
        if word.is_some_and(|w| w.eq_ignore_ascii_case(b"call")) {
            return true;
        }
        let next = text[end.min(text.len())..].iter().find(|c| !c.is_ascii_whitespace());
        let keyword = word.is_some_and(|w| NOT_CALLS.iter().any(|k| w.eq_ignore_ascii_case(k)));
        let number = word.is_some_and(|w| w[0].is_ascii_digit());
        if next == Some(&b'(') && !keyword && !number && !previous_into {
            return true;
        }
        previous_into = word.is_some_and(|w| w.eq_ignore_ascii_case(b"into"));
        i = end;
    }
    false
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// A character that continues an identifier (or a number): `$` too (`a$b`).
fn is_ident_cont(c: u8) -> bool {
    is_ident_char(c) || c == b'$'
}

/// How to read what the text does not say (see the module's documentation).
#[derive(Clone, Copy)]
struct Reading {
    /// `\` escapes the next character in plain '...' strings (standard_conforming_strings off).
    backslash_in_plain: bool,
    /// `"..."` is an identifier (inside which a quote starts nothing).
    quoted_identifiers: bool,
    /// Which numeric constants are masked too.
    numbers: Numbers,
}

/// Which numeric constants (`4111111111111111`, `1.5e3`, `0x1F`, `1_000`) are masked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// None.
    Kept,
    /// All of them (SQL text: statements, parameters, auto_explain's query text), but the
    /// time after `duration: ` that log_min_duration_statement prints before a statement.
    Masked,
    /// All but the frame numbers CONTEXT lines print after `line ` and `statement `
    /// (`PL/pgSQL function f() line 3`, `SQL function "f" statement 1`).
    MaskedButFrames,
}

/// Index just past a numeric constant starting at `i` (a digit, or `.` and a digit): digits,
/// letters (`0x1F`, `1e5`), `_`, `.`, and a sign after the exponent's `e`.
fn number_end(text: &[u8], i: usize) -> usize {
    let hex = text[i] == b'0'
        && text
            .get(i + 1)
            .is_some_and(|c| matches!(c, b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
    let mut j = i;
    while j < text.len() {
        let c = text[j];
        let sign = matches!(c, b'+' | b'-') && !hex && j > i && text[j - 1].eq_ignore_ascii_case(&b'e');
        if is_ident_cont(c) || c == b'.' || sign {
            j += 1;
        } else {
            break;
        }
    }
    j
}

/// The byte ranges of the string literals of `text` under one reading, in order, each marked
/// true when it is a number (masked as `***`, not `'***'`).
fn literal_spans(text: &[u8], reading: Reading) -> Vec<(usize, usize, bool)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let prev_ident = i > 0 && is_ident_cont(text[i - 1]);
        match c {
            b'-' if text.get(i + 1) == Some(&b'-') => {
                i = text[i..].iter().position(|&b| b == b'\n').map_or(text.len(), |p| i + p);
            }
            b'/' if text.get(i + 1) == Some(&b'*') => i = comment_end(text, i),
            b'"' if reading.quoted_identifiers => i = quoted_end(text, i + 1, b'"', false),
            b'\'' => {
                // E'...' (escape string): backslash escapes; the E is kept.
                let escape_string =
                    i > 0 && text[i - 1].eq_ignore_ascii_case(&b'e') && !(i > 1 && is_ident_cont(text[i - 2]));
                let end = quoted_end(text, i + 1, b'\'', escape_string || reading.backslash_in_plain);
                spans.push((i, end, false));
                i = end;
            }
            b'$' if !prev_ident => match dollar_tag(text, i) {
                Some(tag_end) => {
                    let tag = &text[i..tag_end];
                    let end = find(text, tag_end, tag).map_or(text.len(), |p| p + tag.len());
                    spans.push((i, end, false));
                    i = end;
                }
                None => i += 1,
            },
            b'0'..=b'9' | b'.'
                if reading.numbers != Numbers::Kept
                    && !prev_ident
                    && (c != b'.' || text.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let end = number_end(text, i);
                let before = &text[..i];
                let frame = match reading.numbers {
                    Numbers::MaskedButFrames => before.ends_with(b"line ") || before.ends_with(b"statement "),
                    _ => before.ends_with(b"duration: "),
                };
                if !frame {
                    spans.push((i, end, true));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    spans
}

/// Index just past a `/* */` comment starting at `i`; they nest, as in PostgreSQL.
fn comment_end(text: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < text.len() {
        if text[i] == b'/' && text.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if text[i] == b'*' && text.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    text.len()
}

/// The text with every string literal replaced by `'***'`, or None when it has none.
pub fn redact_literals(text: &[u8]) -> Option<Vec<u8>> {
    redact(text, Numbers::Kept)
}

/// SQL text (a statement, a `statement:` or `duration:` line, auto_explain's query text and plan,
/// an internal query) with every string literal replaced by `'***'` and every numeric constant
/// by `***` (`$1` and the time after `duration: ` stay), or None when it has neither.
pub fn redact_sql(text: &[u8]) -> Option<Vec<u8>> {
    redact(text, Numbers::Masked)
}

fn redact(text: &[u8], numbers: Numbers) -> Option<Vec<u8>> {
    let backslash = text.contains(&b'\\');
    let quotes = text.contains(&b'"');
    let mut spans = Vec::new();
    for backslash_in_plain in [false, true] {
        for quoted_identifiers in [false, true] {
            if (backslash_in_plain && !backslash) || (quoted_identifiers && !quotes) {
                continue;
            }
            spans.extend(literal_spans(
                text,
                Reading {
                    backslash_in_plain,
                    quoted_identifiers,
                    numbers,
                },
            ));
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    let mut k = 0;
    while k < spans.len() {
        let (start, mut end, mut number) = spans[k];
        k += 1;
        while k < spans.len() && spans[k].0 <= end {
            end = end.max(spans[k].1);
            number &= spans[k].2;
            k += 1;
        }
        out.extend_from_slice(&text[copied..start]);
        out.extend_from_slice(if number { &MASK[1..4] } else { MASK });
        copied = end;
    }
    out.extend_from_slice(&text[copied..]);
    Some(out)
}

/// Redaction for DETAIL and CONTEXT text: literals and numbers masked (but the line and statement
/// numbers of CONTEXT frames), and the input values that COPY
/// errors quote (`COPY secrets, line 1, column secret: "..."`) and that JSON input errors show
/// without quotes (`JSON data, line 1: sk-live...`) withheld to the end.
pub fn redact_context(text: &[u8]) -> Option<Vec<u8>> {
    let redacted = redact(text, Numbers::MaskedButFrames);
    let t = redacted.as_deref().unwrap_or(text);
    let mut line_start = 0;
    for line in t.split(|&c| c == b'\n') {
        let quoted_input = if line.starts_with(b"COPY ") {
            find(line, 0, b": \"")
        } else if line.starts_with(b"JSON data, line ") {
            find(line, 0, b": ")
        } else {
            None
        };
        if let Some(p) = quoted_input {
            let mut out = t[..line_start + p].to_vec();
            out.extend_from_slice(b": (withheld by vault_ext)");
            return Some(out);
        }
        line_start += line.len() + 1;
    }
    redacted
}

/// Redaction for the message and hint of an error that touches the vault. PostgreSQL quotes the
/// input it could not read (`invalid input syntax for type integer: "..."`, sometimes in single
/// quotes) without escaping a quote inside it, and a message is not SQL (`--` starts no comment),
/// so everything from the first quote of either kind to the last one becomes `"***"`; a lone
/// quote (an unterminated value) is masked to the end. None when the text has no quote.
pub fn redact_message(text: &[u8]) -> Option<Vec<u8>> {
    let is_quote = |c: &u8| *c == b'"' || *c == b'\'';
    let first = text.iter().position(is_quote)?;
    let mut out = text[..first].to_vec();
    out.extend_from_slice(b"\"***\"");
    if let Some(last) = text.iter().rposition(is_quote).filter(|&l| l > first) {
        out.extend_from_slice(&text[last + 1..]);
    }
    Some(out)
}

/// Whether a server-only log message quotes SQL text whose numbers are masked too: the lines
/// log_statement, log_min_duration_statement and auto_explain write (`statement: ...`,
/// `execute <unnamed>: ...`, `duration: 0.1 ms  statement: ...`, `duration: ... plan: ...`).
/// Other messages (a process's PID, an exit code, a row count) keep their numbers.
pub fn is_statement_line(message: &[u8]) -> bool {
    [&b"statement: "[..], b"duration: ", b"execute ", b"bind ", b"parse "]
        .iter()
        .any(|p| message.starts_with(p))
}

/// The titles of the records debug_print_parse, debug_print_rewritten and debug_print_plan write.
pub fn is_node_dump_title(message: &[u8]) -> bool {
    matches!(message, b"parse tree:" | b"rewritten parse tree:" | b"plan:")
}

/// A node tree as the debug_print_* settings print it, with the bytes of every constant
/// (`:constvalue 9 [ 115 107 ... ]` becomes `:constvalue 9 [ *** ]`) and every string
/// (`:val "sk-live"`, a DO block's body, ...) masked; None when it has neither. Strings are
/// printed with backslash escapes for blanks and brackets, but a double quote inside is not
/// escaped, so a string ends only at a quote followed by a blank or a bracket; lines are wrapped
/// anywhere, even inside a string or a list of bytes.
pub fn redact_node_dump(text: &[u8]) -> Option<Vec<u8>> {
    const CONSTVALUE: &[u8] = b":constvalue ";
    let mut out = Vec::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(CONSTVALUE) {
            let from = i + CONSTVALUE.len();
            let open = text[from..]
                .iter()
                .position(|c| !(c.is_ascii_digit() || c.is_ascii_whitespace()));
            if let Some(open) = open.map(|p| from + p).filter(|&p| text[p] == b'[') {
                let close = text[open..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(text.len(), |p| open + p + 1);
                out.extend_from_slice(&text[i..open]);
                out.extend_from_slice(b"[ *** ]");
                changed = true;
                i = close;
                continue;
            }
            out.extend_from_slice(CONSTVALUE);
            i = from;
        } else if text[i] == b'\\' {
            let end = (i + 2).min(text.len());
            out.extend_from_slice(&text[i..end]);
            i = end;
        } else if text[i] == b'"' {
            let mut j = i + 1;
            let mut end = text.len();
            while j < text.len() {
                if text[j] == b'\\' {
                    j += 2;
                } else if text[j] == b'"' && text.get(j + 1).is_none_or(|c| matches!(c, b' ' | b')' | b'}')) {
                    end = j + 1;
                    break;
                } else {
                    j += 1;
                }
            }
            out.extend_from_slice(b"\"***\"");
            changed = true;
            i = end;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    changed.then_some(out)
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
        // An identifier holding an apostrophe: read as an identifier and as plain text, the
        // union masked (the literal after it is never shown).
        assert_eq!(r("SELECT \"we'ird\" FROM t WHERE v = 'x'"), "SELECT \"we'***'");
        assert_eq!(r("SELECT 1 AS \"it's\", f('sk-1') -- x"), "SELECT 1 AS \"it'***'");
        assert_eq!(r("SELECT U&'d\\0061t'"), "SELECT U&'***'");
        assert_eq!(r("SELECT 'unterminated secret"), "SELECT '***'");
        assert_eq!(r("SELECT $tag$ never closed"), "SELECT '***'");
        assert_eq!(r("SELECT type'x', xe'y'"), "SELECT type'***', xe'***'");
        assert_eq!(r("SELECT a$b$c"), "SELECT a$b$c");
        assert!(redact_literals(b"SELECT 1").is_none());
    }

    fn q(s: &str) -> String {
        String::from_utf8(redact_sql(s.as_bytes()).unwrap_or_else(|| s.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn numeric_constants_are_masked_in_sql() {
        assert_eq!(
            q("SELECT vault.create_secret(4111111111111111::text, 'card')"),
            "SELECT vault.create_secret(***::text, '***')"
        );
        assert_eq!(
            q("SELECT vault.create_secret(to_char(987654321012, 'FM999999999999'), 'n')"),
            "SELECT vault.create_secret(to_char(***, '***'), '***')"
        );
        assert_eq!(
            q("SELECT 1.5e+3, .25, -7, 0x1F, 1_000, 12e-2::float8"),
            "SELECT ***, ***, -***, ***, ***, ***::float8"
        );
        // Parameters, identifiers with digits, qualified names stay.
        assert_eq!(
            q("SELECT f($1, $2) FROM t1 JOIN s2.t3 ON a1 = b2"),
            "SELECT f($1, $2) FROM t1 JOIN s2.t3 ON a1 = b2"
        );
        // Not inside comments; a number inside a literal is part of the literal.
        assert_eq!(q("SELECT /* 42 */ '4111 1111' -- 7"), "SELECT /* 42 */ '***' -- 7");
        assert_eq!(q("parameters: $1 = '4111'"), "parameters: $1 = '***'");
        // Quoted identifiers are read both ways: a number inside one is masked too.
        assert_eq!(q("SELECT \"c 12\" FROM t"), "SELECT \"c ***\" FROM t");
        assert_eq!(
            q("duration: 0.123 ms  statement: SELECT vault.create_secret(4111::text)"),
            "duration: 0.123 ms  statement: SELECT vault.create_secret(***::text)"
        );
        // The string-only redaction keeps numbers.
        assert_eq!(r("SELECT 4111, 'x'"), "SELECT 4111, '***'");
    }

    #[test]
    fn statement_lines_are_recognised() {
        assert!(is_statement_line(b"statement: SELECT 1"));
        assert!(is_statement_line(b"execute <unnamed>: SELECT $1"));
        assert!(is_statement_line(b"duration: 0.011 ms  plan:\nQuery Text: SELECT 4111"));
        assert!(!is_statement_line(
            b"server process (PID 42) was terminated by signal 9: Killed"
        ));
    }

    #[test]
    fn context_lines_keep_their_frame_numbers() {
        let c = b"SQL statement \"SELECT vault.create_secret(4111::text, 'n')\"\nPL/pgSQL function f() line 3 at PERFORM\nSQL function \"g\" statement 1";
        assert_eq!(
            String::from_utf8(redact_context(c).unwrap()).unwrap(),
            "SQL statement \"SELECT vault.create_secret(***::text, '***')\"\nPL/pgSQL function f() line 3 at PERFORM\nSQL function \"g\" statement 1"
        );
        assert_eq!(redact_context(b"PL/pgSQL function f() line 2 at PERFORM"), None);
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

    fn m(s: &str) -> String {
        String::from_utf8(redact_message(s.as_bytes()).unwrap_or_else(|| s.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn quoted_input_in_error_messages_is_masked() {
        assert_eq!(
            m("invalid input syntax for type integer: \"sk-live-1\""),
            "invalid input syntax for type integer: \"***\""
        );
        assert_eq!(
            m("value \"4111111111111111\" is out of range for type integer"),
            "value \"***\" is out of range for type integer"
        );
        // A value holding double quotes does not end the mask early.
        assert_eq!(
            m("invalid input syntax for type date: \"a\" b \"c\""),
            "invalid input syntax for type date: \"***\""
        );
        // Quotes of the other kind inside it do not either; `--` starts no comment.
        assert_eq!(m("bad: \"it's\" -- 'x'"), "bad: \"***\"");
        assert_eq!(m("bad: 'x\"y' z"), "bad: \"***\" z");
        assert_eq!(m("unterminated: \"sk-live"), "unterminated: \"***\"");
        assert_eq!(m("Token \"sk\" is invalid."), "Token \"***\" is invalid.");
        assert_eq!(m("literal 'sk-1' here"), "literal \"***\" here");
        assert!(redact_message(b"division by zero").is_none());
    }

    #[test]
    fn json_input_in_context_is_withheld() {
        assert_eq!(
            redact_context(b"JSON data, line 1: sk-live-secret...").unwrap(),
            b"JSON data, line 1: (withheld by vault_ext)"
        );
        assert_eq!(
            redact_context(b"SQL statement \"SELECT x\"\nJSON data, line 2: x").unwrap(),
            b"SQL statement \"SELECT x\"\nJSON data, line 2: (withheld by vault_ext)"
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

    #[test]
    fn backslash_in_a_plain_string_is_read_both_ways() {
        // standard_conforming_strings = off: 'x\', sk-1' is one literal. Read only as 'on' the
        // lexer would show sk-1; both readings are masked.
        let t = r("SELECT f('x\\', sk-1', 'n9')");
        assert!(!t.contains("sk-1"), "{t}");
        assert_eq!(t, "SELECT f('***'");
        // Read only as 'off', 'a\' would swallow the comma and show the next literal.
        let t = r("SELECT 'a\\', 'sk-2' -- '");
        assert!(!t.contains("sk-2"), "{t}");
        // No backslash, no second reading.
        assert_eq!(r("SELECT 'a', 'b'"), "SELECT '***', '***'");
    }

    #[test]
    fn comments_nest() {
        let t = r("SELECT f(/* /* */ ' */ 'sk-nested', 'n10')");
        assert!(!t.contains("sk-nested"), "{t}");
        assert_eq!(t, "SELECT f(/* /* */ ' */ '***', '***')");
        assert_eq!(r("/* a /* b */ c */ SELECT 'v'"), "/* a /* b */ c */ SELECT '***'");
        assert_eq!(
            r("SELECT 1 /* /* never closed */ 'x'"),
            "SELECT 1 /* /* never closed */ 'x'"
        );
    }

    #[test]
    fn dollar_inside_identifiers_starts_no_quote() {
        // a$$ is an identifier: the $$ does not open a dollar quote hiding the literal's end.
        let t = r("SELECT a$$ , 'sk$$ret'");
        assert_eq!(t, "SELECT a$$ , '***'");
    }

    #[test]
    fn unicode_escaped_identifiers_count_as_mentions() {
        assert!(mentions_vault(
            br#"INSERT INTO U&"\0076ault".U&"\0073ecrets" VALUES ('x')"#
        ));
        assert!(mentions_vault(br#"select u&"\0073" from t"#));
        assert!(!mentions_vault(b"SELECT U&'\\0061' AS a"));
        assert!(!mentions_vault(b"SELECT a&\"b\""));
    }

    fn has_word(text: &str, word: &str) -> bool {
        any_word(text.as_bytes(), |w| w == word.as_bytes())
    }

    #[test]
    fn words_are_identifiers_lowercased_and_cut_like_postgres() {
        assert!(has_word("INSERT INTO Secrets (name) VALUES ('x')", "secrets"));
        assert!(has_word("SELECT public.store_it('a')", "store_it"));
        assert!(has_word("SELECT \"Store It\"('a')", "store it"));
        assert!(!has_word("SELECT my_secrets_table", "secrets"));
        assert!(!has_word("SELECT 1", "secrets"));
        let long = format!("SELECT {}xyz()", "a".repeat(63));
        assert!(has_word(&long, &"a".repeat(63)));
        // A two-byte character straddling the cut is dropped, not split.
        let long = format!("SELECT {}é", "a".repeat(62));
        assert!(has_word(&long, &"a".repeat(62)));
    }

    #[test]
    fn calls_are_recognised_without_knowing_the_functions() {
        assert!(may_call_function(b"SELECT public.store_it('n', 'v')"));
        assert!(may_call_function(b"call put('n', 'v')"));
        assert!(may_call_function(b"SELECT * FROM f ('x')"));
        assert!(may_call_function(b"SELECT \"F\"('x')"));
        assert!(!may_call_function(b"INSERT INTO t (a, b) VALUES ('x', 1)"));
        assert!(!may_call_function(
            b"SELECT 'x' WHERE a IN (1, 2) AND EXISTS (SELECT 1)"
        ));
        assert!(!may_call_function(b"SELECT 'CONTROL' AS control"));
    }

    #[test]
    fn node_dumps_lose_constants_and_strings() {
        let dump = b"{CONST \n   :consttype 25 \n   :constvalue 18 [ 72 0 0 0 119 101 34 105 114 100 32 115 101 99 32 \n   114 101 116 ]\n   }";
        assert_eq!(
            String::from_utf8(redact_node_dump(dump).unwrap()).unwrap(),
            "{CONST \n   :consttype 25 \n   :constvalue 18 [ *** ]\n   }"
        );
        let dump = b"{A_CONST \n :val \"we\"ird\\ sec\\ ret\" \n :location 15\n }";
        assert_eq!(
            String::from_utf8(redact_node_dump(dump).unwrap()).unwrap(),
            "{A_CONST \n :val \"***\" \n :location 15\n }"
        );
        // A line wrapped inside a string does not end it.
        let dump = b":arg \"abc\"d\n\t   ef\\ gh\" :location 3";
        assert_eq!(
            String::from_utf8(redact_node_dump(dump).unwrap()).unwrap(),
            ":arg \"***\" :location 3"
        );
        assert_eq!(redact_node_dump(b":constvalue <> :location 3"), None);
        assert!(is_node_dump_title(b"parse tree:") && !is_node_dump_title(b"statement: x"));
    }
}
