//! API tokens for `pgvault serve`: create, revoke, and the check that turns a token into the
//! role it acts as. Only SHA-256 of a token is stored (vault.api_token_hashes, readable by
//! nobody but the extension owner); the token itself is returned once and never kept.
//! Creation and revocation write the table as the extension owner, so vault_admin needs no
//! privileges on it, and note an audit row under the caller's own ids.

use super::audit::{self, Obj};
use crate::cache;
use crate::error::{shown_name, VResult, VaultError};
use crate::ffi::pg;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::PgSqlErrorCode as Code;
use pgrx::{PgBuiltInOids, PgOid};
use std::cell::RefCell;
use vault_core::crypto::token;
use vault_core::ffi::sodium::verify_32;

const MAX_NAME: usize = 128;

/// Whether role `r` is, or is a member (at any depth) of, a role that can escape the vault's
/// privileges: a superuser, CREATEROLE (can grant itself other roles), REPLICATION, BYPASSRLS,
/// or a predefined role with server file/program access or access to all data. A server acting
/// as such a role per request could become anything; tokens never act as one.
macro_rules! privileged {
    ($r:literal) => {
        concat!(
            "(SELECT p.rolname::pg_catalog.text FROM pg_catalog.pg_roles p \
              WHERE (p.rolsuper OR p.rolcreaterole OR p.rolreplication OR p.rolbypassrls \
                     OR p.rolname OPERATOR(pg_catalog.=) ANY ('{pg_execute_server_program,pg_read_server_files,\
pg_write_server_files,pg_read_all_data,pg_write_all_data}'::pg_catalog.name[])) \
                AND pg_catalog.pg_has_role(",
            $r,
            ", p.oid, 'MEMBER') ORDER BY p.oid OPERATOR(pg_catalog.=) ",
            $r,
            " DESC, p.rolname LIMIT 1)"
        )
    };
}

/// A token's candidate rows (by the first bytes of its hash): whether each is live, and whether
/// its last use should be noted (older than a minute, and the transaction may write).
const LOOKUP_SQL: &str = concat!(
    "SELECT t.id, t.hash, r.rolname::pg_catalog.text, \
            (t.expires_at IS NULL OR t.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()) \
            AND r.rolname OPERATOR(pg_catalog.=) t.role_name AND ",
    privileged!("r.oid"),
    " IS NULL, \
            (u.last_used_at IS NULL \
             OR u.last_used_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) '1 minute'::pg_catalog.interval)) \
            AND NOT pg_catalog.pg_is_in_recovery() \
            AND pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'off' \
            AND pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' \
       FROM vault.api_token_hashes t \
       LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) t.role::pg_catalog.oid \
       LEFT JOIN vault.api_token_uses u ON u.token_id OPERATOR(pg_catalog.=) t.id \
      WHERE t.lookup OPERATOR(pg_catalog.=) $1 AND t.revoked_at IS NULL"
);

thread_local! {
    static LOOKUP_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

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
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:@/".contains(c);
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(allowed) {
        return Err(VaultError::BadArgument {
            message: format!(
                "invalid token name \"{}\"",
                shown_name(&name.escape_debug().to_string())
            ),
            hint: Some(format!(
                "A token name has 1 to {MAX_NAME} ASCII letters, digits and - _ . : @ / (no spaces, no look-alike Unicode)."
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
    let (role_name, escapes, member, past, taken) = pg::as_user(owner, || {
        Spi::connect(|c| {
            let row = c
                .select(
                    concat!(
                        "SELECT r.rolname::pg_catalog.text, ",
                        privileged!("r.oid"),
                        ", pg_catalog.pg_has_role($4::pg_catalog.name, r.oid, 'MEMBER'), \
                           $3 OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(), \
                           EXISTS (SELECT FROM vault.api_token_hashes t \
                                    WHERE t.name OPERATOR(pg_catalog.=) $1 AND t.revoked_at IS NULL) \
                      FROM (SELECT $2::pg_catalog.oid) a (oid) \
                      LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.oid"
                    ),
                    Some(1),
                    &[name.into(), role.into(), expires_at.into(), created_by.as_str().into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<String>(1)?,
                row.get::<String>(2)?,
                row.get::<bool>(3)?,
                row.get::<bool>(4)?,
                row.get::<bool>(5)?,
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
    if let Some(reached) = escapes {
        return Err(refused(
            Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
            if reached == role_name {
                format!("a token cannot act as \"{role_name}\": it is a superuser or has CREATEROLE, REPLICATION or BYPASSRLS")
            } else {
                format!("a token cannot act as \"{role_name}\": it can become \"{reached}\"")
            },
            "Tokens never act as a superuser, a role with CREATEROLE, REPLICATION or BYPASSRLS, or a member of \
             pg_execute_server_program, pg_read/write_server_files or pg_read/write_all_data. Create a role with only \
             the vault rights the service needs (e.g. IN ROLE vault_reader) and a token for it.",
        ));
    }
    if member != Some(true) {
        return Err(refused(
            Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to create a token for role \"{role_name}\""),
            &format!(
                "A token carries no more than its creator could use: only members of \"{role_name}\" may create tokens for it \
                 (GRANT \"{role_name}\" TO \"{created_by}\")."
            ),
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
            "WITH t AS (INSERT INTO vault.api_token_hashes (name, role, role_name, lookup, hash, created_by, expires_at) \
                        VALUES ($1, $2::pg_catalog.oid::pg_catalog.regrole, $7, $3, $4, $5, $6) RETURNING id) \
             INSERT INTO vault.api_token_uses (token_id) SELECT t.id FROM t",
            &[
                name.into(),
                role.into(),
                hash[..token::LOOKUP_LEN].to_vec().into(),
                hash.to_vec().into(),
                created_by.into(),
                expires_at.into(),
                role_name.as_str().into(),
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
/// token (malformed, unknown, revoked, expired, its role dropped, renamed or now able to
/// escape, see `privileged!`). Runs as
/// the extension owner (the SQL wrapper is SECURITY DEFINER). Notes the use at most once a
/// minute per token, and never on a standby or in a read-only transaction.
pub fn role_of(presented: Option<&str>) -> VResult<Option<String>> {
    Ok(live(presented)?.map(|(_, role)| role))
}

/// vault.api_token_self: what a live token may know about itself, as JSON (name, role,
/// created_at, expires_at, ttl in whole seconds left or 0 for none), for `pgvault serve`'s
/// Vault token lookup; None for anything `role_of` refuses. Never the token or its hash.
pub fn self_of(presented: Option<&str>) -> VResult<Option<String>> {
    let Some((id, role)) = live(presented)? else {
        return Ok(None);
    };
    Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.json_build_object('name', t.name, 'role', $2::pg_catalog.text, \
                'created_at', t.created_at, 'expires_at', t.expires_at, \
                'ttl', CASE WHEN t.expires_at IS NULL THEN 0 \
                            ELSE pg_catalog.ceil(pg_catalog.date_part('epoch', \
                                   t.expires_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()))::pg_catalog.int8 END)::pg_catalog.text \
           FROM vault.api_token_hashes t WHERE t.id OPERATOR(pg_catalog.=) $1",
        &[id.into(), role.into()],
    )
    .map_err(VaultError::spi("read vault.api_token_hashes"))
}

/// The id and role of a live token (see `role_of`).
fn live(presented: Option<&str>) -> VResult<Option<(pgrx::Uuid, String)>> {
    let Some(hash) = presented.and_then(token::hash) else {
        return Ok(None);
    };
    // A snapshot taken now: a revocation committed during a long (or REPEATABLE READ)
    // transaction applies to its next check.
    let lookup = || {
        Spi::connect(|c| {
            cache::plans::select(
                &LOOKUP_PLAN,
                c,
                LOOKUP_SQL,
                &[PgOid::BuiltIn(PgBuiltInOids::BYTEAOID)],
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
    };
    let candidates = pg::with_latest_snapshot(lookup)
        .unwrap_or_else(lookup)
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
        // Another request noting the same use holds the row: skip, never wait.
        Spi::run_with_args(
            "UPDATE vault.api_token_uses u SET last_used_at = pg_catalog.clock_timestamp() \
              WHERE u.token_id IN (SELECT v.token_id FROM vault.api_token_uses v \
                                    WHERE v.token_id OPERATOR(pg_catalog.=) $1 \
                                      AND (v.last_used_at IS NULL \
                                           OR v.last_used_at OPERATOR(pg_catalog.<) \
                                              (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) '1 minute'::pg_catalog.interval)) \
                                      FOR UPDATE SKIP LOCKED)",
            &[id.into()],
        )
        .map_err(VaultError::spi("write vault.api_token_hashes"))?;
    }
    Ok(Some((id, role)))
}
