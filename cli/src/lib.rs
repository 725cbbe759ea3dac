//! pgvault: the secrets of a vault_ext database from the command line, a web console and an
//! HTTP API.
//!
//! Values travel only as query parameters and results, the child's environment (`run`),
//! standard output (`get`, `export`, `inject`; `run` passes the child's output through a mask) and the bodies of the API's value routes; never through
//! argv, messages, logs or files pgvault writes.
//!
//! Layers, each using only those after it: `commands` (one file per command) and `serve` (the
//! HTTPS server) → `run` (masking, signals, --watch) and `inject` (references in a file) → `selection` (which secrets a command uses) → `remote` (the HTTPS client), `api` (the JSON types both sides share) →
//! `store` (every SQL statement) → `conn` (connecting as libpq does) → `error` (one table from
//! SQLSTATE to exit code and HTTP status), `text`, `when`, `dotenv`, `envplan`, `prompt` →
//! `ffi` (the only unsafe code).

pub mod api;
pub mod commands;
pub mod conn;
pub mod dotenv;
pub mod envplan;
pub mod error;
#[allow(unsafe_code)]
mod ffi;
pub mod inject;
pub mod limits;
pub mod prompt;
pub mod remote;
pub mod run;
pub mod selection;
pub mod serve;
pub mod store;
pub mod text;
pub mod when;

pub use commands::Cli;
pub use error::{error_text, Failure, Kind, ROLES_HINT};
