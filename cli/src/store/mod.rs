//! Every SQL statement pgvault sends, once, with its rows read into typed structs: the
//! commands and `pgvault serve` share these.
//!
//! Each function takes any client (a connection or a transaction) and returns the database's
//! own error, which the caller maps through [`crate::error::Kind`]. Statements name every
//! object they use (vault.*, and pg_catalog's operators where a user's search_path could
//! otherwise supply one).

pub mod audit;
pub mod kv;
pub mod secrets;
pub mod tokens;

pub use tokio_postgres::GenericClient as Client;

/// A timestamp as the API and `--json` show it: UTC, ISO 8601 (`2026-01-31T12:00:00Z`).
macro_rules! iso {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
}
/// A timestamp as the tables show it: the session's time zone, with its offset.
macro_rules! local {
    ($col:literal) => {
        concat!("to_char(", $col, ", 'YYYY-MM-DD HH24:MI:SSOF')")
    };
}
pub(crate) use {iso, local};

/// An expiry or a starting point as SQL takes it: an interval from now, or a timestamp.
/// Both None: never (no expiry, no lower bound).
#[derive(Clone, Copy, Debug, Default)]
pub struct Instant<'a> {
    pub interval: Option<&'a str>,
    pub at: Option<&'a str>,
}
