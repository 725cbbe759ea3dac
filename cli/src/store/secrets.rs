//! Secrets: their metadata, values, changes, versions and per-secret grants.

use super::{iso, local, Client, Instant};
use std::collections::HashMap;
use tokio_postgres::Error;
use zeroize::Zeroizing;

/// A secret as vault_viewer sees it (vault.masked_secrets): no value.
#[derive(Clone, Debug)]
pub struct Meta {
    pub id: String,
    /// Secrets made by vault.create_secret may have no name.
    pub name: Option<String>,
    pub description: String,
    pub masked: String,
    pub tags: Vec<String>,
    /// UTC, ISO 8601.
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// In the session's time zone, for tables.
    pub expires_local: Option<String>,
    pub updated_local: String,
    pub expired: bool,
    /// Expires within 7 days (the console marks it).
    pub expiring_soon: bool,
}

/// A tags column: a NULL element (a restored dump can hold one) is left out, and a NULL array
/// is no tags. Every reader of tags, the CLI's and the server's, goes through this.
pub fn tags_of(r: &tokio_postgres::Row, i: usize) -> Vec<String> {
    r.get::<_, Option<Vec<Option<String>>>>(i)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// The secrets having every tag in `tags` (and the name `name`, when given), by name.
pub async fn list(c: &impl Client, tags: &[String], name: Option<&str>) -> Result<Vec<Meta>, Error> {
    let rows = c
        .query(
            concat!(
                "SELECT id::text, name, description, coalesce(masked_secret, ''), tags, ",
                iso!("expires_at"),
                ", ",
                iso!("created_at"),
                ", ",
                iso!("updated_at"),
                ", ",
                local!("expires_at"),
                ", ",
                local!("updated_at"),
                ", coalesce(expires_at <= now(), false), coalesce(expires_at <= now() + interval '7 days', false) \
               FROM vault.masked_secrets \
              WHERE tags OPERATOR(pg_catalog.@>) $1::text[] AND ($2::text IS NULL OR name = $2) \
              ORDER BY name NULLS LAST, id"
            ),
            &[&tags, &name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Meta {
            id: r.get(0),
            name: r.get(1),
            description: r.get::<_, Option<String>>(2).unwrap_or_default(),
            masked: r.get(3),
            tags: tags_of(r, 4),
            expires_at: r.get(5),
            created_at: r.get(6),
            updated_at: r.get(7),
            expires_local: r.get(8),
            updated_local: r.get(9),
            expired: r.get(10),
            expiring_soon: r.get(11),
        })
        .collect())
}

/// The current version of each secret (of the one named `name`, when given), by id: empty
/// for a role that may not read vault.secrets (only vault_admin may).
pub async fn versions(c: &impl Client, name: Option<&str>) -> Result<HashMap<String, i32>, Error> {
    let may: bool = c
        .query_one("SELECT has_table_privilege('vault.secrets', 'SELECT')", &[])
        .await?
        .get(0);
    let mut out = HashMap::new();
    if may {
        for r in c
            .query(
                "SELECT id::text, version FROM vault.secrets WHERE ($1::text IS NULL OR name = $1)",
                &[&name],
            )
            .await?
        {
            out.insert(r.get(0), r.get(1));
        }
    }
    Ok(out)
}

/// The value of the secret `name`: None when there is none, Some(None) when its per-secret
/// grants leave this role out.
pub async fn value(c: &impl Client, name: &str) -> Result<Option<Option<Zeroizing<String>>>, Error> {
    let row = c
        .query_opt(
            "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, Option<String>>(0).map(Zeroizing::new)))
}

/// Asks for `NOTIFY vault_ext_changed` (sent by the extension after each committed change of
/// secrets or their grants, sql/notify.sql) on this connection: `pgvault run --watch`.
pub async fn listen_for_changes(c: &tokio_postgres::Client) -> Result<(), Error> {
    c.batch_execute("LISTEN vault_ext_changed").await
}

/// A named secret as read: its value (None when per-secret grants leave this role out) and
/// whether it has expired.
pub struct Value {
    pub name: String,
    pub value: Option<Zeroizing<String>>,
    pub expired: bool,
}

/// The secrets that have a name, every tag in `tags` and, when `only` is not empty, one of
/// those names; by name.
pub async fn values(c: &impl Client, tags: &[String], only: &[String]) -> Result<Vec<Value>, Error> {
    let only_filter = (!only.is_empty()).then_some(only);
    let rows = c
        .query(
            "SELECT name, decrypted_secret, coalesce(expires_at <= now(), false) \
           FROM vault.decrypted_secrets \
          WHERE name IS NOT NULL AND tags @> $1::text[] AND ($2::text[] IS NULL OR name = ANY($2)) \
          ORDER BY name",
            &[&tags, &only_filter],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Value {
            name: r.get(0),
            value: r.get::<_, Option<String>>(1).map(Zeroizing::new),
            expired: r.get(2),
        })
        .collect())
}

/// The id of the secret named `name`.
pub async fn id(c: &impl Client, name: &str) -> Result<Option<String>, Error> {
    Ok(
        c.query_opt("SELECT id::text FROM vault.secrets WHERE name = $1", &[&name])
            .await?
            .map(|r| r.get(0)),
    )
}

/// Whether this role could create and update secrets (vault_admin).
pub async fn may_write(c: &impl Client) -> Result<bool, Error> {
    Ok(c.query_one(
        "SELECT has_function_privilege('vault.create_secret(text, text, text, uuid, text[], boolean)', 'EXECUTE') \
            AND has_function_privilege('vault.update_secret(uuid, text, text, text, uuid, text[], integer, boolean)', 'EXECUTE') \
            AND has_table_privilege('vault.secrets', 'SELECT')",
        &[],
    ).await?
    .get(0))
}

/// A secret as it is before a change: locked until the transaction ends.
pub struct Existing {
    pub id: String,
    pub version: i32,
    pub tags: Vec<String>,
    pub description: String,
}

/// The secret `name`, locked for an update in this transaction.
pub async fn lock(c: &impl Client, name: &str) -> Result<Option<Existing>, Error> {
    Ok(c.query_opt(
        "SELECT id::text, version, tags, description FROM vault.secrets WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?
    .map(|r| Existing {
        id: r.get(0),
        version: r.get(1),
        tags: tags_of(&r, 2),
        description: r.get::<_, Option<String>>(3).unwrap_or_default(),
    }))
}

/// The value of the secret with id `id` (compared in the client, never sent back as a
/// parameter, where a log of parameters would keep it).
pub async fn value_by_id(c: &impl Client, id: &str) -> Result<Option<Zeroizing<String>>, Error> {
    let v: Option<String> = c
        .query_one(
            "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE id = $1::text::uuid",
            &[&id],
        )
        .await?
        .get(0);
    Ok(v.map(Zeroizing::new))
}

/// A new secret.
pub async fn create(
    c: &impl Client,
    name: &str,
    value: &str,
    description: Option<&str>,
    tags: Option<&[String]>,
) -> Result<(), Error> {
    c.execute(
        "SELECT vault.create_secret($1, $2, coalesce($3, ''), NULL, $4::text[])",
        &[&value, &name, &description, &tags],
    )
    .await?;
    Ok(())
}

/// Changes the secret `id`: what is None stays as it is; with `expected_version`, nothing
/// changes unless that is the current version (40001).
pub async fn update(
    c: &impl Client,
    id: &str,
    value: Option<&str>,
    description: Option<&str>,
    tags: Option<&[String]>,
    expected_version: Option<i32>,
) -> Result<(), Error> {
    c.execute(
        "SELECT vault.update_secret($1::text::uuid, $2, NULL, $3, NULL, $4::text[], $5)",
        &[&id, &value, &description, &tags, &expected_version],
    )
    .await?;
    Ok(())
}

/// Sets the expiry of the secret `name`; true when that moment has passed already.
pub async fn set_expiry(c: &impl Client, name: &str, when: Instant<'_>) -> Result<bool, Error> {
    let row = c
        .query_one(
            "UPDATE vault.secrets SET expires_at = CASE WHEN $2::text IS NOT NULL THEN now() + $2::text::interval \
                                               ELSE $3::text::timestamptz END \
          WHERE name = $1 RETURNING coalesce(expires_at <= now(), false)",
            &[&name, &when.interval, &when.at],
        )
        .await?;
    Ok(row.get(0))
}

/// Deletes the secret `name`; false when there was none.
pub async fn delete(c: &impl Client, name: &str) -> Result<bool, Error> {
    Ok(c.execute("DELETE FROM vault.secrets WHERE name = $1", &[&name]).await? > 0)
}

/// One version of a secret, without its value.
pub struct Version {
    pub version: i32,
    /// "current" or "replaced".
    pub state: String,
    /// When it became current (current), when it was replaced (replaced); local time.
    pub since: String,
    /// Who replaced it ("" for the current one).
    pub by: String,
}

/// The versions of the secret `id`, newest first.
pub async fn history(c: &impl Client, id: &str) -> Result<Vec<Version>, Error> {
    // A kept version's created_at / created_by say when and by whom it was replaced.
    let rows = c
        .query(
            concat!(
                "SELECT version, 'current', ",
                local!("updated_at"),
                ", '' FROM vault.secrets WHERE id = $1::text::uuid \
             UNION ALL \
             SELECT version, 'replaced', ",
                local!("created_at"),
                ", created_by::text FROM vault.secret_versions WHERE secret_id = $1::text::uuid \
             ORDER BY 1 DESC"
            ),
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Version {
            version: r.get(0),
            state: r.get(1),
            since: r.get(2),
            by: r.get(3),
        })
        .collect())
}

/// Makes version `to` of the secret `id` its value again; the new version's number.
pub async fn rollback(c: &impl Client, id: &str, to: i32) -> Result<i32, Error> {
    Ok(
        c.query_one("SELECT vault.rollback_secret($1::text::uuid, $2)", &[&id, &to])
            .await?
            .get(0),
    )
}

/// Lets `role` read the secret `id`.
pub async fn grant(c: &impl Client, id: &str, role: &str) -> Result<(), Error> {
    c.execute(
        "SELECT vault.grant_secret($1::text::uuid, $2::text::regrole)",
        &[&id, &role],
    )
    .await?;
    Ok(())
}

/// Takes back `role`'s grant on the secret `id`; false when it had none.
pub async fn revoke(c: &impl Client, id: &str, role: &str) -> Result<bool, Error> {
    let had: i64 = c
        .query_one(
            "SELECT count(*) FROM vault.secret_acl WHERE secret_id = $1::text::uuid AND grantee = $2::text::regrole",
            &[&id, &role],
        )
        .await?
        .get(0);
    c.execute(
        "SELECT vault.revoke_secret($1::text::uuid, $2::text::regrole)",
        &[&id, &role],
    )
    .await?;
    Ok(had > 0)
}

/// One value vault.verify_secrets checked.
pub struct Checked {
    pub secret: String,
    pub status: String,
    pub detail: String,
}

/// Every secret and kept version, decrypted once: which do not.
pub async fn verify(c: &impl Client) -> Result<Vec<Checked>, Error> {
    let rows = c
        .query(
            "SELECT coalesce(name, id::text), status, coalesce(detail, '') FROM vault.verify_secrets() ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Checked {
            secret: r.get(0),
            status: r.get(1),
            detail: r.get(2),
        })
        .collect())
}
