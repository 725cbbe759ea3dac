-- vault_ext: roles and tables. Runs first; functions, views and grants follow (keys.sql … privileges.sql).

DO $$
BEGIN
  IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
    RAISE EXCEPTION 'vault_ext needs a UTF8 database (this one is %)', pg_catalog.getdatabaseencoding()
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Create the database with ENCODING ''UTF8''; secrets are stored as UTF-8 like supabase_vault''s.';
  END IF;
  -- Roles are cluster-wide: a second database reuses them.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'vault_reader') THEN
    CREATE ROLE vault_reader NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'vault_admin') THEN
    CREATE ROLE vault_admin NOLOGIN;
  END IF;
  IF NOT pg_catalog.pg_has_role('vault_admin', 'vault_reader', 'MEMBER') THEN
    GRANT vault_reader TO vault_admin;
  END IF;
  -- vault_viewer sees metadata and masked values only; every reader is a viewer.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'vault_viewer') THEN
    CREATE ROLE vault_viewer NOLOGIN;
  END IF;
  IF NOT pg_catalog.pg_has_role('vault_reader', 'vault_viewer', 'MEMBER') THEN
    GRANT vault_viewer TO vault_reader;
  END IF;
END
$$;

CREATE TABLE vault.keys (
  id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  name text UNIQUE,
  key_type text NOT NULL DEFAULT 'aead-det'
    CHECK (key_type IN ('aead-det', 'aead-ietf', 'aes256gcm')),
  key_id bigint NOT NULL CHECK (key_id >= 0),
  key_context bytea NOT NULL DEFAULT 'pgsodium' CHECK (pg_catalog.length(key_context) = 8),
  status text NOT NULL DEFAULT 'valid'
    CHECK (status IN ('default', 'valid', 'expired', 'invalid')),
  created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  expires_at timestamptz,
  comment text,
  -- vault.root_key_fingerprint() of the root key this key was created (or first used) under.
  root_key_fingerprint text,
  UNIQUE (key_id, key_context)
);
-- Exactly one default key.
CREATE UNIQUE INDEX keys_one_default ON vault.keys ((true)) WHERE status = 'default';
COMMENT ON TABLE vault.keys IS 'Data keys: metadata only. Key bytes are derived from the root key, never stored.';

CREATE TABLE vault.secrets (
  id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  name text,
  description text NOT NULL DEFAULT '',
  secret text NOT NULL,
  -- A vault.keys id (NULL: the compatibility key). Not a foreign key: its per-row check cost
  -- half of an insert; the encrypting trigger checks the key, and a trigger on vault.keys
  -- refuses to delete a key still in use.
  key_id uuid,
  nonce bytea,
  created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  -- vault_ext's own columns, after supabase_vault's.
  tags text[] NOT NULL DEFAULT '{}',
  expires_at timestamptz,
  -- Bumped on every change of the value; earlier values are in vault.secret_versions.
  version integer NOT NULL DEFAULT 1,
  -- false: the value is only ever used inside the server (vault.hmac, vault.sign, ...), never
  -- returned, also not to vault_admin; it cannot become true again (sql/use.sql).
  exportable boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX secrets_name_idx ON vault.secrets (name) WHERE name IS NOT NULL;
COMMENT ON TABLE vault.secrets IS 'Encrypted secrets. secret holds base64 ciphertext; insert plaintext with nonce NULL and a trigger encrypts it.';

-- Per-secret grants (vault.grant_secret). A secret with no rows here is readable by every
-- vault_reader; with rows, only by the granted roles (and their members) and vault_admin.
CREATE TABLE vault.secret_acl (
  secret_id uuid NOT NULL REFERENCES vault.secrets (id) ON DELETE CASCADE ON UPDATE CASCADE,
  grantee regrole NOT NULL,
  granted_by regrole NOT NULL DEFAULT CURRENT_USER::regrole,
  granted_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  -- 'read': read and use; 'use': only use (vault.hmac, vault.sign, ...).
  privilege text NOT NULL DEFAULT 'read' CHECK (privilege IN ('read', 'use')),
  PRIMARY KEY (secret_id, grantee)
);

-- Earlier values of each secret, as they were stored (ciphertext bound to the secret's id).
-- created_at / created_by: when and by whom the value was replaced.
CREATE TABLE vault.secret_versions (
  secret_id uuid NOT NULL REFERENCES vault.secrets (id) ON DELETE CASCADE ON UPDATE CASCADE,
  version integer NOT NULL,
  secret text NOT NULL,
  key_id uuid,
  nonce bytea,
  created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  created_by name NOT NULL DEFAULT CURRENT_USER,
  PRIMARY KEY (secret_id, version)
);
COMMENT ON TABLE vault.secret_versions IS 'Earlier values of secrets (ciphertext), at most vault.max_versions per secret.';

-- Audit trail: who changed what, never a value. Written only by vault_ext's own code as the
-- owner (sql/audit.sql); vault_admin may only read it; old rows go only through
-- vault.purge_audit_log().
CREATE TABLE vault.audit_log (
  -- A uuid, not a sequence: restoring a dump writes new audit rows (the restored secrets'
  -- creates) while the dumped ones are loaded, and a restarted sequence would collide. Order by at.
  id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  -- text, not name: name is 64 bytes on disk whatever the length; the log grows by a row per change.
  session_role text NOT NULL DEFAULT SESSION_USER,
  "current_role" text NOT NULL DEFAULT CURRENT_USER,
  action text NOT NULL,
  secret_id uuid,
  secret_name text,
  detail jsonb
);
COMMENT ON TABLE vault.audit_log IS 'Changes to secrets, grants and keys: who, when, what; never a value. Append-only.';
