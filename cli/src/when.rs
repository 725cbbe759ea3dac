//! Moments typed on the command line: a timestamp, an interval from now (30d, 12h, 2w,
//! "+30 days") or never.

use crate::error::Failure;
use crate::store::Instant;
use crate::text;

/// An expiry or a starting point: a timestamp, an interval from now, or never.
#[derive(Debug, PartialEq)]
pub enum When {
    Never,
    In(String),
    At(String),
}

impl When {
    pub fn parse(s: &str) -> Result<When, Failure> {
        let t = s.trim();
        if t.is_empty() || t == "never" {
            return Ok(When::Never);
        }
        match text::interval(t) {
            Some(i) => Ok(When::In(i)),
            None => Ok(When::At(t.to_string())),
        }
    }

    /// As the SQL statements take it.
    pub fn instant(&self) -> Instant<'_> {
        match self {
            When::Never => Instant::default(),
            When::In(i) => Instant {
                interval: Some(i),
                at: None,
            },
            When::At(a) => Instant {
                interval: None,
                at: Some(a),
            },
        }
    }

    /// As the user typed it (normalised), for messages.
    pub fn shown(&self) -> &str {
        match self {
            When::Never => "never",
            When::In(s) | When::At(s) => s,
        }
    }
}

/// The failure for a moment the database could not read: a usage error naming the option.
pub fn bad_when<'a>(what: &'a str, s: &'a str) -> impl Fn(tokio_postgres::Error) -> Failure + 'a {
    move |e| {
        match e.code().map(|c| c.code()) {
        Some("22007" | "22008" | "22P02" | "22015") => Failure::usage(format!(
            "{what}: \"{}\" is neither a timestamp (2026-12-31, 2026-12-31 23:59+00) nor an interval (30d, 12h, 2w, +30 days)",
            text::escape(s)
        )),
        _ => Failure::from(e),
    }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_parses_intervals_timestamps_and_never() {
        assert_eq!(When::parse("30d").unwrap(), When::In("30 days".into()));
        assert_eq!(When::parse("+30 days").unwrap(), When::In("30 days".into()));
        assert_eq!(When::parse("never").unwrap(), When::Never);
        assert_eq!(When::parse("2026-01-01").unwrap(), When::At("2026-01-01".into()));
    }
}
