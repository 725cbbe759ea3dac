//! The audit log (vault_admin).

use super::{local, Client, Instant};
use tokio_postgres::Error;

/// One audit row, for the command line's table.
pub struct Entry {
    pub at: String,
    pub role: String,
    pub action: String,
    pub secret: String,
    pub detail: String,
}

/// The latest `limit` rows (about the secret named `secret`, since `since`), oldest first.
pub async fn recent(
    c: &impl Client,
    secret: Option<&str>,
    since: Instant<'_>,
    limit: i64,
) -> Result<Vec<Entry>, Error> {
    let rows = c
        .query(
            concat!(
                "SELECT * FROM ( \
               SELECT id, ",
                local!("at"),
                ", session_role::text, action, \
                      coalesce(secret_name, coalesce(secret_id::text, '')), coalesce(detail::text, '') \
                 FROM vault.audit_log \
                WHERE ($1::text IS NULL OR secret_name = $1) \
                  AND ($2::text IS NULL OR at >= now() - $2::text::interval) \
                  AND ($3::text IS NULL OR at >= $3::text::timestamptz) \
                ORDER BY id DESC LIMIT $4) t \
             ORDER BY 1"
            ),
            &[&secret, &since.interval, &since.at, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            at: r.get(1),
            role: r.get(2),
            action: r.get(3),
            secret: r.get(4),
            detail: r.get(5),
        })
        .collect())
}
