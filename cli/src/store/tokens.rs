//! Service tokens for `pgvault serve` (vault_admin): only their hashes are stored.

use super::{iso, local, Client, Instant};
use tokio_postgres::Error;
use zeroize::Zeroizing;

/// A new token acting as `role`, shown this once.
pub async fn create(c: &impl Client, name: &str, role: &str, expires: Instant<'_>) -> Result<Zeroizing<String>, Error> {
    let token: String = c
        .query_one(
            "SELECT vault.create_api_token($1, $2::text::regrole, \
                    CASE WHEN $3::text IS NOT NULL THEN now() + $3::text::interval ELSE $4::text::timestamptz END)",
            &[&name, &role, &expires.interval, &expires.at],
        )
        .await?
        .get(0);
    Ok(Zeroizing::new(token))
}

/// A token as vault.api_tokens shows it (never the token).
pub struct Token {
    pub name: String,
    pub role: String,
    pub created_by: String,
    /// UTC, ISO 8601.
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// active, expired or revoked.
    pub state: String,
    /// Local time, "" when not set.
    pub created_local: String,
    pub expires_local: String,
    pub last_used_local: String,
    pub revoked_local: String,
}

/// Every token, by name.
pub async fn list(c: &impl Client) -> Result<Vec<Token>, Error> {
    let rows = c
        .query(
            concat!(
                "SELECT name, role::text, created_by::text, ",
                iso!("created_at"),
                ", ",
                iso!("expires_at"),
                ", ",
                iso!("last_used_at"),
                ", ",
                iso!("revoked_at"),
                ", CASE WHEN revoked_at IS NOT NULL THEN 'revoked' \
                    WHEN expires_at <= now() THEN 'expired' ELSE 'active' END, coalesce(",
                local!("created_at"),
                ", ''), coalesce(",
                local!("expires_at"),
                ", ''), coalesce(",
                local!("last_used_at"),
                ", ''), coalesce(",
                local!("revoked_at"),
                ", '') FROM vault.api_tokens ORDER BY name, created_at"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Token {
            name: r.get(0),
            role: r.get(1),
            created_by: r.get(2),
            created_at: r.get(3),
            expires_at: r.get(4),
            last_used_at: r.get(5),
            revoked_at: r.get(6),
            state: r.get(7),
            created_local: r.get(8),
            expires_local: r.get(9),
            last_used_local: r.get(10),
            revoked_local: r.get(11),
        })
        .collect())
}

/// Revokes the active token `name`.
pub async fn revoke(c: &impl Client, name: &str) -> Result<(), Error> {
    c.execute("SELECT vault.revoke_api_token($1)", &[&name]).await?;
    Ok(())
}
