//! Text processing: literal masking for the server log and value masks for listings.
#![forbid(unsafe_code)]

pub mod mask;
pub mod redact;
