-- vault_ext: API tokens for `pgvault serve` (SPEC §9). A token is 'pgv_' and 256 random bits;
-- only its SHA-256 is stored, here, where nobody but the extension owner can read it.
CREATE TABLE vault.api_token_hashes (
  id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  name text NOT NULL,
  -- The role the token acts as (a server switches to it per request), by OID and by name: both
  -- must still match, so a dropped role's OID that a restore elsewhere (or a later role) gets
  -- again does not revive the token. Renaming the role ends its tokens.
  role regrole NOT NULL,
  role_name name NOT NULL,
  -- The first 8 bytes of hash, to find the row; the whole hash is then compared in constant time.
  lookup bytea NOT NULL,
  hash bytea NOT NULL CHECK (pg_catalog.length(hash) = 32),
  created_by name NOT NULL,
  created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  expires_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX api_token_hashes_lookup ON vault.api_token_hashes (lookup) WHERE revoked_at IS NULL;
-- One active token per name; revoked ones stay listed.
CREATE UNIQUE INDEX api_token_hashes_name ON vault.api_token_hashes (name) WHERE revoked_at IS NULL;
-- When each token was last used, at most once a minute; apart from the tokens so that a request
-- noting its use never locks the token's row (a revocation would wait for it).
CREATE TABLE vault.api_token_uses (
  token_id uuid PRIMARY KEY REFERENCES vault.api_token_hashes (id) ON DELETE CASCADE,
  last_used_at timestamptz
);
COMMENT ON TABLE vault.api_token_hashes IS 'SHA-256 of API tokens (never a token). Read only through vault.api_tokens and vault.api_token_role().';

COMMENT ON TABLE vault.api_token_uses IS 'When each API token was last used (at most once a minute).';

CREATE VIEW vault.api_tokens AS
  SELECT t.name, t.role, t.created_by, t.created_at, t.expires_at, u.last_used_at, t.revoked_at
    FROM vault.api_token_hashes t LEFT JOIN vault.api_token_uses u ON u.token_id = t.id;
COMMENT ON VIEW vault.api_tokens IS 'API tokens: name, role, who created them, expiry, last use, revocation; never the token or its hash.';

CREATE FUNCTION vault.create_api_token(name text, for_role regrole, expires_at timestamptz DEFAULT NULL)
RETURNS text LANGUAGE sql VOLATILE SET search_path = ''
AS $$ SELECT vault._create_api_token(name, for_role::pg_catalog.oid, expires_at) $$;
COMMENT ON FUNCTION vault.create_api_token(text, regrole, timestamptz) IS 'A new API token acting as for_role, returned once (only its SHA-256 is kept).';
COMMENT ON FUNCTION vault.revoke_api_token(text) IS 'Revoke the active API token of that name.';

-- The check a server runs per request: the role a token acts as, NULL for anything else.
CREATE FUNCTION vault.api_token_role(token text)
RETURNS name LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ''
AS $$ SELECT vault._api_token_role(token)::pg_catalog.name $$;
COMMENT ON FUNCTION vault.api_token_role(text) IS 'The role an API token acts as; NULL for an unknown, expired or revoked token.';

-- What a live token may know about itself (pgvault serve's Vault token lookup); NULL otherwise.
CREATE FUNCTION vault.api_token_self(token text)
RETURNS jsonb LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ''
AS $$ SELECT vault._api_token_self(token)::pg_catalog.jsonb $$;
COMMENT ON FUNCTION vault.api_token_self(text) IS 'A live API token''s name, role, created_at, expires_at and ttl (seconds left, 0 = none) as JSON; NULL for an unknown, expired or revoked token. Never the token.';
