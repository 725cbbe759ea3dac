//! What the extension keeps in a backend between calls, and when it stops being valid.
//!
//! One invalidation mechanism (`epoch`): every cached entry carries a `Stamp` taken when it was
//! loaded and is used only while the stamp is valid. The relcache and transaction-end callbacks
//! only bump counters; they call no cache. A new cache stamps its entries and checks the stamp
//! on lookup: there is nothing to register and nothing to clear elsewhere.
//!
//! `plans` keeps SPI plans for the life of the backend (PostgreSQL replans them itself).
#![forbid(unsafe_code)]

pub mod epoch;
pub mod plans;

pub use epoch::Stamp;
