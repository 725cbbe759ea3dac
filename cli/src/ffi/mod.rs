//! The only unsafe code of pgvault: calls into the C library that std does not wrap, each
//! behind a safe function. Every other module forbids unsafe code (the workspace's lints).

pub mod tty;
