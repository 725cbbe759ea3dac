//! The JSON API of `pgvault serve` (SPEC §9): the types both sides of the wire use.

pub mod kv;
pub mod types;
