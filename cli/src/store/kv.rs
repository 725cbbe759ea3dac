//! The statements of HashiCorp Vault's KV version 2 API (`serve/routes/vault_kv.rs`, SPEC §12):
//! rows as KV reads and writes need them, times as Vault writes them (RFC 3339 UTC, to the
//! microsecond). Every statement gives its parameters' types, so that it is one round trip.

use super::secrets::tags_of;
use super::Client;
use std::collections::BTreeMap;
use tokio_postgres::types::Type;
use tokio_postgres::Error;
use zeroize::Zeroizing;

/// An RFC 3339 UTC time, as Vault writes them (to the microsecond).
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "pg_catalog.to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// A secret as a KV read sees it: its value (None: per-secret grants or a non-exportable
/// secret keep it from this role), id, tags, last change, and whether this role may read
/// vault.secrets (its versions).
pub struct Current {
    pub value: Option<Zeroizing<String>>,
    pub id: String,
    pub tags: Vec<String>,
    pub updated: String,
    pub may_versions: bool,
}

const READ: &str = concat!(
    "SELECT d.v, d.id::pg_catalog.text, d.tags, ",
    ts!("d.updated_at"),
    ", pg_catalog.has_table_privilege('vault.secrets', 'SELECT') \
       FROM (SELECT s.decrypted_secret AS v, s.id, s.tags, s.updated_at \
               FROM vault.decrypted_secrets s WHERE s.name OPERATOR(pg_catalog.=) $1 OFFSET 0) d"
);

/// The secret named `name`, with its value, in one statement.
pub async fn current(c: &impl Client, name: &str) -> Result<Option<Current>, Error> {
    Ok(c.query_typed_opt(READ, &[(&name, Type::TEXT)]).await?.map(|r| Current {
        value: r.get::<_, Option<String>>(0).map(Zeroizing::new),
        id: r.get(1),
        tags: tags_of(&r, 2),
        updated: r.get(3),
        may_versions: r.get(4),
    }))
}

/// The current version of the secret `id` (vault_admin: vault.secrets).
pub async fn version(c: &impl Client, id: &str) -> Result<i32, Error> {
    Ok(c.query_typed_one(
        "SELECT version FROM vault.secrets WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
        &[(&id, Type::TEXT)],
    )
    .await?
    .get(0))
}

/// A kept version of the secret `id`: its value (None: kept from this role) and when it was
/// written (when the version before it was kept; the secret's creation for version 1). None
/// when there is no such version.
#[allow(clippy::type_complexity)]
pub async fn kept_version(
    c: &impl Client,
    id: &str,
    n: i32,
) -> Result<Option<(Option<Zeroizing<String>>, String)>, Error> {
    let row = c.query_typed_opt(
        concat!(
            "SELECT v.decrypted_secret, ",
            ts!("coalesce(p.created_at, CASE WHEN v.version OPERATOR(pg_catalog.=) 1 THEN s.created_at END, v.created_at)"),
            " FROM vault.decrypted_secret_versions v JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) v.secret_id \
              LEFT JOIN vault.secret_versions p ON p.secret_id OPERATOR(pg_catalog.=) v.secret_id \
                   AND p.version OPERATOR(pg_catalog.=) (v.version OPERATOR(pg_catalog.-) 1) \
             WHERE v.secret_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid AND v.version OPERATOR(pg_catalog.=) $2"
        ),
        &[(&id, Type::TEXT), (&n, Type::INT4)],
    ).await?;
    Ok(row.map(|v| (v.get::<_, Option<String>>(0).map(Zeroizing::new), v.get(1))))
}

/// The secret named `name` locked for a write: its id, version and tags.
pub struct Locked {
    pub id: String,
    pub version: i32,
    pub tags: Vec<String>,
}

pub async fn lock_for_write(c: &impl Client, name: &str) -> Result<Option<Locked>, Error> {
    Ok(c.query_typed_opt(
        "SELECT id::pg_catalog.text, version, tags FROM vault.secrets \
          WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
        &[(&name, Type::TEXT)],
    )
    .await?
    .map(|r| Locked {
        id: r.get(0),
        version: r.get(1),
        tags: tags_of(&r, 2),
    }))
}

/// The value of the secret `id`; None when kept from this role.
pub async fn value_by_id(c: &impl Client, id: &str) -> Result<Option<Zeroizing<String>>, Error> {
    Ok(c.query_typed_one(
        "SELECT decrypted_secret FROM vault.decrypted_secrets \
          WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
        &[(&id, Type::TEXT)],
    )
    .await?
    .get::<_, Option<String>>(0)
    .map(Zeroizing::new))
}

/// A new version of the secret `id` with `text` (and `tags` when Some), if its version is
/// still `expected` (40001 otherwise).
pub async fn update(
    c: &impl Client,
    id: &str,
    text: &str,
    tags: Option<&[String]>,
    expected: i32,
) -> Result<(), Error> {
    c.execute(
        "SELECT vault.update_secret($1::pg_catalog.text::pg_catalog.uuid, $2, NULL, NULL, NULL, $3::pg_catalog.text[], $4)",
        &[&id, &text, &tags, &Some(expected)],
    ).await?;
    Ok(())
}

/// A new secret `name` with `text` and `tags` (23505 when one was made meanwhile): its id.
pub async fn create(c: &impl Client, name: &str, text: &str, tags: &[String]) -> Result<String, Error> {
    Ok(c.query_one(
        "SELECT vault.create_secret($1, $2, '', NULL, $3::pg_catalog.text[])::pg_catalog.text",
        &[&text, &name, &tags],
    )
    .await?
    .get(0))
}

/// The version of the secret `id` and when it was last changed.
pub async fn written(c: &impl Client, id: &str) -> Result<(i32, String), Error> {
    let r = c
        .query_typed_one(
            concat!(
                "SELECT version, ",
                ts!("updated_at"),
                " FROM vault.secrets WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
            ),
            &[(&id, Type::TEXT)],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// The secret named `name` and its versions deleted (none: nothing happens).
pub async fn delete(c: &impl Client, name: &str) -> Result<(), Error> {
    c.execute(
        "DELETE FROM vault.secrets WHERE name OPERATOR(pg_catalog.=) $1",
        &[&name],
    )
    .await?;
    Ok(())
}

/// A secret's metadata as KV shows it.
pub struct Metadata {
    pub current: i32,
    pub created: String,
    pub updated: String,
    pub max_versions: i32,
    /// Each kept version and when it was kept.
    pub kept: BTreeMap<i32, String>,
}

pub async fn metadata(c: &impl Client, name: &str) -> Result<Option<Metadata>, Error> {
    let Some(s) = c
        .query_typed_opt(
            concat!(
                "SELECT id::pg_catalog.text, version, ",
                ts!("created_at"),
                ", ",
                ts!("updated_at"),
                ", coalesce(pg_catalog.current_setting('vault.max_versions', true)::integer, 10) \
               FROM vault.secrets WHERE name OPERATOR(pg_catalog.=) $1"
            ),
            &[(&name, Type::TEXT)],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: String = s.get(0);
    let kept = c
        .query_typed(
            concat!(
                "SELECT version, ",
                ts!("created_at"),
                " FROM vault.secret_versions WHERE secret_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
            ),
            &[(&id, Type::TEXT)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Some(Metadata {
        current: s.get(1),
        created: s.get(2),
        updated: s.get(3),
        max_versions: s.get(4),
        kept,
    }))
}

/// The names of the secrets under `prefix` that this role may list.
pub async fn names_under(c: &impl Client, prefix: &str) -> Result<Vec<String>, Error> {
    Ok(c.query_typed(
        "SELECT name FROM vault.masked_secrets \
          WHERE name IS NOT NULL AND pg_catalog.starts_with(name, $1)",
        &[(&prefix, Type::TEXT)],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// What `vault.api_token_self` tells of a token (never the token itself), as its role: its
/// role, name, seconds left (0: no expiry) and times.
#[derive(Default)]
pub struct TokenSelf {
    pub role: String,
    pub name: String,
    pub ttl: i64,
    pub expire_time: Option<String>,
    pub issue_time: Option<String>,
    pub creation_time: i64,
    pub creation_ttl: i64,
}

const TOKEN_SELF: &str = concat!(
    "SELECT current_user::pg_catalog.text, j->>'name', coalesce((j->>'ttl')::pg_catalog.int8, 0), ",
    ts!("(j->>'expires_at')::pg_catalog.timestamptz"),
    ", ",
    ts!("(j->>'created_at')::pg_catalog.timestamptz"),
    ", coalesce(pg_catalog.date_part('epoch', (j->>'created_at')::pg_catalog.timestamptz)::pg_catalog.int8, 0), \
       coalesce(pg_catalog.date_part('epoch', (j->>'expires_at')::pg_catalog.timestamptz \
                OPERATOR(pg_catalog.-) (j->>'created_at')::pg_catalog.timestamptz)::pg_catalog.int8, 0) \
       FROM vault.api_token_self($1) j"
);

/// The token `token` as the current (its own) role sees it. A role without USAGE on schema
/// vault cannot call the function: its role alone then.
pub async fn token_self(c: &impl Client, token: &str) -> Result<TokenSelf, Error> {
    let usage: bool = c
        .query_one("SELECT pg_catalog.has_schema_privilege('vault', 'USAGE')", &[])
        .await?
        .get(0);
    if !usage {
        let role: String = c.query_one("SELECT current_user::pg_catalog.text", &[]).await?.get(0);
        return Ok(TokenSelf {
            role,
            ..TokenSelf::default()
        });
    }
    let r = c.query_one(TOKEN_SELF, &[&token]).await?;
    Ok(TokenSelf {
        role: r.get(0),
        name: r.get::<_, Option<String>>(1).unwrap_or_default(),
        ttl: r.get(2),
        expire_time: r.get(3),
        issue_time: r.get(4),
        creation_time: r.get(5),
        creation_ttl: r.get(6),
    })
}

/// Whether the database is a standby (in recovery).
pub async fn in_recovery(c: &impl Client) -> Result<bool, Error> {
    Ok(c.query_one("SELECT pg_catalog.pg_is_in_recovery()", &[]).await?.get(0))
}
