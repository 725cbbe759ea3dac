//! API tokens for `pgvault serve` (sql/tokens.sql has the public signatures: regrole and
//! name types, SECURITY DEFINER for the check).

use crate::error::OrRaise;
use crate::vault::tokens;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

/// vault.create_api_token(name, for_role, expires_at): the token, shown once.
#[pg_extern(volatile, name = "_create_api_token")]
fn create_api_token(
    name: Option<&str>,
    for_role: Option<pg_sys::Oid>,
    expires_at: Option<TimestampWithTimeZone>,
) -> String {
    tokens::create(name, for_role, expires_at).or_raise()
}

/// vault.revoke_api_token(name).
#[pg_extern(volatile, name = "revoke_api_token")]
fn revoke_api_token(name: Option<&str>) {
    tokens::revoke(name).or_raise()
}

/// vault.api_token_role(token): called only through its SECURITY DEFINER wrapper.
#[pg_extern(volatile, name = "_api_token_role")]
fn api_token_role(token: Option<&str>) -> Option<String> {
    tokens::role_of(token).or_raise()
}

/// vault.api_token_self(token): called only through its SECURITY DEFINER wrapper.
#[pg_extern(volatile, name = "_api_token_self")]
fn api_token_self(token: Option<&str>) -> Option<String> {
    tokens::self_of(token).or_raise()
}
