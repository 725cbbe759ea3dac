//! Text shown to people: control characters escaped, tables, intervals.

use std::fmt::Write as _;
use std::io::{self, Write};

/// `s` with every character that could drive or mislead a terminal shown as an escape: C0 and
/// C1 controls and DEL (`\n`, `\t`, `\r`, `\e`, else `\xNN`), bidirectional overrides
/// (`\u{202e}`), and the backslash itself (`\\`), so what is shown maps back to one string.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Left-aligned columns two spaces apart; cells are already escaped.
pub fn write_table<const N: usize>(out: &mut impl Write, table: &[[String; N]]) -> io::Result<()> {
    let widths: Vec<usize> = (0..N)
        .map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    out.flush()
}

/// A PostgreSQL interval for `30d`, `12h`, `2w`, `+30 days`, `90 minutes`, `1y`; None for
/// anything else (a timestamp, say).
pub fn interval(s: &str) -> Option<String> {
    let s = s.trim().strip_prefix('+').unwrap_or(s.trim()).trim();
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (n, unit) = s.split_at(digits);
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => "seconds",
        "m" | "min" | "mins" | "minute" | "minutes" => "minutes",
        "h" | "hr" | "hrs" | "hour" | "hours" => "hours",
        "d" | "day" | "days" => "days",
        "w" | "week" | "weeks" => "weeks",
        "mon" | "month" | "months" => "months",
        "y" | "yr" | "year" | "years" => "years",
        _ => return None,
    };
    Some(format!("{n} {unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(escape("plain name-1.x"), "plain name-1.x");
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\e[2Jb");
        assert_eq!(escape("x\ny\r\t\u{7f}\u{9b}"), "x\\ny\\r\\t\\x7f\\x9b");
        assert_eq!(escape("\\e"), "\\\\e");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("30d").as_deref(), Some("30 days"));
        assert_eq!(interval("+30 days").as_deref(), Some("30 days"));
        assert_eq!(interval("12h").as_deref(), Some("12 hours"));
        assert_eq!(interval("2W").as_deref(), Some("2 weeks"));
        assert_eq!(interval("2026-01-01"), None);
        assert_eq!(interval("30x"), None);
    }
}
