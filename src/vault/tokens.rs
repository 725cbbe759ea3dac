//! API tokens for `pgvault serve`: create, revoke, and the check that turns a token into the
//! role it acts as. Only SHA-256 of a token is stored (vault.api_token_hashes, readable by
//! nobody but the extension owner); the token itself is returned once and never kept.
//! Creation and revocation write the table as the extension owner, so vault_admin needs no
//! privileges on it, and note an audit row under the caller's own ids.

use super::audit::{self, Obj};
use crate::error::{shown_name, VResult, VaultError};
use crate::ffi::pg;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode as Code;
use vault_core::crypto::token;
use vault_core::ffi::sodium::verify_32;

const MAX_NAME: usize = 128;

fn refused(code: Code, message: String, hint: &str) -> VaultError {
    VaultError::Refused {
        code,
        message,
        hint: hint.into(),
    }
}

fn check_name(name: Option<&str>) -> VResult<&str> {
    let name = name.ok_or_else(|| {
        refused(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "a token name cannot be NULL".into(),
            "Name the token after the service that uses it, e.g. 'ci-deploy'.",
        )
    })?;
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(VaultError::BadArgument {
            message: format!(
                "invalid token name \"{}\"",
                shown_name(&name.escape_debug().to_string())
            ),
            hint: Some(format!(
                "A token name has 1 to {MAX_NAME} characters and no control characters."
            )),
        });
    }
    Ok(name)
}

/// vault.create_api_token: a new token acting as `for_role`, returned once.
pub fn create(
    name: Option<&str>,
    for_role: Option<pg_sys::Oid>,
    expires_at: Option<TimestampWithTimeZone>,
) -> VResult<String> {
    let name = check_name(name)?;
    let role = for_role.ok_or_else(|| {
        refused(
            Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "the role of a token cannot be NULL".into(),
            "Pass the role whose privileges the token carries, e.g. 'ci_reader'::regrole.",
        )
    })?;
    let created_by = pg::role_names().0;
    let owner = audit::extension_owner()?;
    let (role_name, superuser, past, taken) = pg::as_user(owner, || {
        Spi::connect(|c| {
            let row = c
                .select(
                    "SELECT (SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $2), \
                            (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $2), \
                            $3 OPERATOR(pg_catalog.<=) pg_catalog.now(), \
                            EXISTS (SELECT FROM vault.api_token_hashes t \
                                     WHERE t.name OPERATOR(pg_catalog.=) $1 AND t.revoked_at IS NULL)",
                    Some(1),
                    &[name.into(), role.into(), expires_at.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<String>(1)?,
                row.get::<bool>(2)?,
                row.get::<bool>(3)?,
                row.get::<bool>(4)?,
            ))
        })
    })
    .map_err(VaultError::spi("read vault.api_token_hashes"))?;
    let Some(role_name) = role_name else {
        return Err(VaultError::BadArgument {
            message: format!("role with OID {} does not exist", role.to_u32()),
            hint: Some("A token acts as an existing role; PUBLIC cannot be used.".into()),
        });
    };
    if superuser == Some(true) {
        return Err(refused(
            Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("a token cannot act as the superuser \"{role_name}\""),
            "Create a role with only the vault rights the service needs (e.g. IN ROLE vault_reader) and a token for it.",
        ));
    }
    if past == Some(true) {
        return Err(VaultError::BadArgument {
            message: "the expiry of a token must be in the future".into(),
            hint: Some("Pass a later expires_at, or NULL for a token that does not expire.".into()),
        });
    }
    if taken == Some(true) {
        return Err(refused(
            Code::ERRCODE_DUPLICATE_OBJECT,
            format!("an API token named \"{}\" already exists", shown_name(name)),
            "Revoke it first with vault.revoke_api_token(), or choose another name.",
        ));
    }
    let secret = token::generate();
    let hash = token::hash(&secret).ok_or(VaultError::Internal("a new token is not well-formed"))?;
    pg::as_user(owner, || {
        Spi::run_with_args(
            "INSERT INTO vault.api_token_hashes (name, role, lookup, hash, created_by, expires_at) \
             VALUES ($1, $2::pg_catalog.oid::pg_catalog.regrole, $3, $4, $5, $6)",
            &[
                name.into(),
                role.into(),
                hash[..token::LOOKUP_LEN].to_vec().into(),
                hash.to_vec().into(),
                created_by.into(),
                expires_at.into(),
            ],
        )
    })
    .map_err(VaultError::spi("write vault.api_token_hashes"))?;
    audit::record(
        "create_token",
        None,
        None,
        Obj::new()
            .str("token", name)
            .str("role", &role_name)
            .opt("expires_at", expires_at.map(|t| t.to_string()).as_deref())
            .build(),
    );
    Ok(secret)
}

/// vault.revoke_api_token: the active token of that name stops working at once.
pub fn revoke(name: Option<&str>) -> VResult<()> {
    let name = check_name(name)?;
    let owner = audit::extension_owner()?;
    let role = pg::as_user(owner, || {
        Spi::get_one_with_args::<String>(
            "UPDATE vault.api_token_hashes t SET revoked_at = pg_catalog.now() \
              WHERE t.name OPERATOR(pg_catalog.=) $1 AND t.revoked_at IS NULL \
             RETURNING t.role::pg_catalog.text",
            &[name.into()],
        )
    });
    let role = match role {
        Ok(Some(role)) => role,
        Ok(None) | Err(pgrx::spi::Error::InvalidPosition) => {
            return Err(refused(
                Code::ERRCODE_NO_DATA_FOUND,
                format!("no active API token named \"{}\"", shown_name(name)),
                "vault.api_tokens lists the tokens and which are revoked.",
            ))
        }
        Err(e) => return Err(VaultError::spi("write vault.api_token_hashes")(e)),
    };
    audit::record(
        "revoke_token",
        None,
        None,
        Obj::new().str("token", name).str("role", &role).build(),
    );
    Ok(())
}

/// vault.api_token_role: the role a token acts as, or None for anything that is not a live
/// token (malformed, unknown, revoked, expired, its role dropped or now a superuser). Runs as
/// the extension owner (the SQL wrapper is SECURITY DEFINER). Notes the use at most once a
/// minute per token, and never on a standby or in a read-only transaction.
pub fn role_of(presented: Option<&str>) -> VResult<Option<String>> {
    let Some(hash) = presented.and_then(token::hash) else {
        return Ok(None);
    };
    let candidates = Spi::connect(|c| {
        c.select(
            "SELECT t.id, t.hash, r.rolname::pg_catalog.text, \
                    (t.expires_at IS NULL OR t.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()) \
                      AND r.oid IS NOT NULL AND NOT r.rolsuper, \
                    (t.last_used_at IS NULL \
                      OR t.last_used_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 minute'::pg_catalog.interval)) \
                      AND NOT pg_catalog.pg_is_in_recovery() \
                      AND pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'off' \
               FROM vault.api_token_hashes t \
               LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) t.role::pg_catalog.oid \
              WHERE t.lookup OPERATOR(pg_catalog.=) $1 AND t.revoked_at IS NULL",
            None,
            &[hash[..token::LOOKUP_LEN].to_vec().into()],
        )?
        .map(|row| {
            Ok::<_, pgrx::spi::Error>((
                row.get::<pgrx::Uuid>(1)?,
                row.get::<Vec<u8>>(2)?,
                row.get::<String>(3)?,
                row.get::<bool>(4)?,
                row.get::<bool>(5)?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()
    })
    .map_err(VaultError::spi("read vault.api_token_hashes"))?;
    // Every candidate is compared, each in constant time, so the time taken does not depend
    // on which stored hash (if any) matches.
    let mut found = None;
    for (id, stored, role, live, stale) in candidates {
        let same = stored
            .as_deref()
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .is_some_and(|s| verify_32(&s, &hash));
        if same {
            found = Some((id, role, live, stale));
        }
    }
    let Some((Some(id), Some(role), Some(true), stale)) = found else {
        return Ok(None);
    };
    if stale == Some(true) {
        Spi::run_with_args(
            "UPDATE vault.api_token_hashes t SET last_used_at = pg_catalog.now() \
              WHERE t.id OPERATOR(pg_catalog.=) $1 \
                AND (t.last_used_at IS NULL \
                     OR t.last_used_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 minute'::pg_catalog.interval))",
            &[id.into()],
        )
        .map_err(VaultError::spi("write vault.api_token_hashes"))?;
    }
    Ok(Some(role))
}
