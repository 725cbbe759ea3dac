-- vault_ext 0.1.0 -> 0.2.0: root key rotation, a faster read path, secrets-manager features
-- (tags, expiry, masks, versions). Frozen once released: later changes go into a new
-- vault_ext--0.2.0--X.sql. Runs with search_path = vault, like the install script.
-- tests/upgrade_cluster.sh checks that the result has the same catalog as a fresh install.

-- New columns after supabase_vault's, and the versions table.
ALTER TABLE vault.secrets
  ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN version integer NOT NULL DEFAULT 1,
  ADD COLUMN exportable boolean NOT NULL DEFAULT true;
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

-- vault_viewer: metadata and masked values; every reader is a viewer.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'vault_viewer') THEN
    CREATE ROLE vault_viewer NOLOGIN;
  END IF;
  IF NOT pg_catalog.pg_has_role('vault_reader', 'vault_viewer', 'MEMBER') THEN
    GRANT vault_viewer TO vault_reader;
  END IF;
END
$$;

-- New functions in the library.
CREATE  FUNCTION "_previous_fingerprint"() RETURNS TEXT /* Option < & '_ str > */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'previous_fingerprint_wrapper';

CREATE  FUNCTION "_rewrap"(
	"id" uuid, /* Uuid */
	"secret" TEXT, /* & str */
	"nonce" bytea, /* Option < & [u8] > */
	"key_id" uuid /* Uuid */
) RETURNS TABLE (
	"secret" TEXT,  /* String */
	"nonce" bytea  /* Vec < u8 > */
)
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rewrap_wrapper';

CREATE  FUNCTION "_rekey"(
	"id" uuid, /* Uuid */
	"secret" TEXT, /* & str */
	"nonce" bytea, /* Option < & [u8] > */
	"from_key" uuid, /* Option < Uuid > */
	"to_key" uuid /* Uuid */
) RETURNS TABLE (
	"secret" TEXT,  /* String */
	"nonce" bytea,  /* Vec < u8 > */
	"key_id" uuid  /* Option < Uuid > */
)
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rekey_wrapper';

CREATE  FUNCTION "mask"(
	"value" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'mask_sql_wrapper';

CREATE  FUNCTION "_mask_secret"(
	"id" uuid, /* Option < Uuid > */
	"secret" TEXT, /* Option < & str > */
	"nonce" bytea, /* Option < & [u8] > */
	"key_id" uuid /* Option < Uuid > */
) RETURNS TEXT /* Option < String > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'mask_secret_wrapper';

CREATE FUNCTION "secrets_audit_create"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secrets_audit_create_wrapper';

CREATE  FUNCTION "_audit_rollback"(
	"secret_id" uuid, /* Uuid */
	"to_version" INT /* i32 */
) RETURNS void
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_rollback_wrapper';

CREATE  FUNCTION "_audit_rotate_key"(
	"old_key" uuid, /* Option < Uuid > */
	"new_key" uuid /* Uuid */
) RETURNS void
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_rotate_key_wrapper';

CREATE  FUNCTION "_audit_rotate_root_key"(
	"secrets" bigint /* i64 */
) RETURNS void
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_rotate_root_key_wrapper';

CREATE  FUNCTION "_rewrapped"(
	"id" uuid, /* Uuid */
	"nonce" bytea /* & [u8] */
) RETURNS bool /* bool */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rewrapped_wrapper';

CREATE  FUNCTION "_create_api_token"(
	"name" TEXT, /* Option < & str > */
	"for_role" oid, /* Option < pg_sys :: Oid > */
	"expires_at" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS TEXT /* String */
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_api_token_wrapper';

CREATE  FUNCTION "revoke_api_token"(
	"name" TEXT /* Option < & str > */
) RETURNS void
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'revoke_api_token_wrapper';

CREATE  FUNCTION "_api_token_role"(
	"token" TEXT /* Option < & str > */
) RETURNS TEXT /* Option < String > */
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'api_token_role_wrapper';

CREATE  FUNCTION "_api_token_self"(
	"token" TEXT /* Option < & str > */
) RETURNS TEXT /* Option < String > */
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'api_token_self_wrapper';

CREATE  FUNCTION "purge_audit_log"(
	"older_than" interval /* Option < Interval > */
) RETURNS bigint /* i64 */
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'purge_audit_log_wrapper';

CREATE FUNCTION "keys_audit"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'keys_audit_wrapper';

CREATE FUNCTION "secret_acl_audit"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secret_acl_audit_wrapper';

CREATE FUNCTION "secrets_audit_delete"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secrets_audit_delete_wrapper';

CREATE FUNCTION "secrets_audit_reencrypt"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secrets_audit_reencrypt_wrapper';

CREATE FUNCTION "secrets_audit_truncate"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secrets_audit_truncate_wrapper';

CREATE FUNCTION "secrets_audit_update"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secrets_audit_update_wrapper';

CREATE  FUNCTION "_decrypt"(
	"id" uuid, /* Option < Uuid > */
	"secret" TEXT, /* Option < & str > */
	"nonce" bytea, /* Option < & [u8] > */
	"key_id" uuid /* Option < Uuid > */
) RETURNS TEXT /* Option < String > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'decrypt_row_wrapper';

-- The dump carries the compatibility key's row (merged on restore) and the versions.
CREATE OR REPLACE FUNCTION vault._keys_one_default() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF NEW.status OPERATOR(pg_catalog.=) 'default' THEN
    UPDATE vault.keys k SET status = 'expired'
     WHERE k.status OPERATOR(pg_catalog.=) 'default' AND k.id OPERATOR(pg_catalog.<>) NEW.id;
  END IF;
  IF NEW.id OPERATOR(pg_catalog.=) '00000000-0000-0000-0000-000000000000'::uuid THEN
    UPDATE vault.keys k
       SET status = NEW.status, expires_at = NEW.expires_at, root_key_fingerprint = NEW.root_key_fingerprint
     WHERE k.id OPERATOR(pg_catalog.=) NEW.id;
    IF FOUND THEN
      RETURN NULL;
    END IF;
  END IF;
  RETURN NEW;
END
$$;

-- key_id is no longer a foreign key (its per-row check cost half an insert); a trigger on
-- vault.keys refuses to delete a key still in use instead.
ALTER TABLE vault.secrets DROP CONSTRAINT secrets_key_id_fkey;
-- A key still used by secrets (or kept versions) cannot be deleted, renumbered or given another
-- key_type, key_id or key_context: they would no longer decrypt. (vault.secrets.key_id is not a foreign key, for insert speed.) The SHARE
-- lock waits for writers in flight, so their rows are seen.
CREATE FUNCTION vault._keys_in_use() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  gone uuid;
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    gone := NULL;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND NEW.id OPERATOR(pg_catalog.=) OLD.id
        AND NEW.key_id OPERATOR(pg_catalog.=) OLD.key_id AND NEW.key_type OPERATOR(pg_catalog.=) OLD.key_type
        AND NEW.key_context OPERATOR(pg_catalog.=) OLD.key_context THEN
    RETURN NEW;
  ELSE
    gone := OLD.id;
  END IF;
  LOCK TABLE vault.secrets, vault.secret_versions IN SHARE MODE;
  IF EXISTS (SELECT FROM vault.secrets s
              WHERE gone IS NULL
                 OR COALESCE(s.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) gone)
     OR EXISTS (SELECT FROM vault.secret_versions v
              WHERE gone IS NULL
                 OR COALESCE(v.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) gone) THEN
    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND NEW.id OPERATOR(pg_catalog.=) OLD.id THEN
      -- key_type, key_id and key_context decide the data key: its secrets would no longer decrypt.
      RAISE EXCEPTION 'cannot change key_type, key_id or key_context of vault key %: secrets use it', gone
        USING ERRCODE = 'object_in_use',
              HINT = 'Create a key with vault.create_key() and move the secrets with vault.reencrypt_secrets() first.';
    END IF;
    RAISE EXCEPTION 'vault key % is still used by secrets', COALESCE(gone::text, '(any)')
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Move them with vault.reencrypt_secrets() first; to stop using a key, set its status to expired or invalid.';
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER keys_in_use BEFORE DELETE OR UPDATE OF id, key_type, key_id, key_context ON vault.keys
  FOR EACH ROW EXECUTE FUNCTION vault._keys_in_use();
CREATE TRIGGER keys_in_use_truncate BEFORE TRUNCATE ON vault.keys
  FOR EACH STATEMENT EXECUTE FUNCTION vault._keys_in_use();

-- decrypted_secrets: a single-table view (the key is looked up inside _decrypt).
-- Decryption costs about as much as 100 simple operators: with that estimate the planner hands
-- big scans to parallel workers, without reaching the JIT threshold for ordinary table sizes.
ALTER FUNCTION vault._decrypt(uuid, text, bytea, uuid) COST 100;
CREATE OR REPLACE VIEW vault.decrypted_secrets AS
SELECT s.id, s.name, s.description, s.secret,
       vault._decrypt(s.id, s.secret, s.nonce, s.key_id) AS decrypted_secret,
       s.key_id, s.nonce, s.created_at, s.updated_at, s.tags, s.expires_at
  FROM vault.secrets s;

-- read_secret moves from PL/pgSQL to Rust (same privileges and errors; it reads the view as the
-- caller); CREATE OR REPLACE keeps its grants and drops its SET search_path.
CREATE OR REPLACE FUNCTION vault.read_secret(secret_name text) RETURNS text
STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'read_secret_wrapper';

-- create_secret becomes a SQL function; both take tags, update_secret a check-and-set version.
DROP FUNCTION vault.create_secret(text, text, text, uuid);
DROP FUNCTION vault.update_secret(uuid, text, text, text, uuid);
CREATE FUNCTION vault.create_secret(
  new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '',
  new_key_id uuid DEFAULT NULL, new_tags text[] DEFAULT NULL, new_exportable boolean DEFAULT true
) RETURNS uuid
-- One INSERT: the BEFORE trigger encrypts (nonce NULL = plaintext) before the row is stored.
-- A SQL function without SET search_path, unlike the others: the body names only vault.secrets
-- (qualified), its parameters and COALESCE (syntax, not a function lookup), so no object on
-- the caller's search_path can be reached, and it runs about 25% faster per call.
LANGUAGE sql VOLATILE
AS $$
  INSERT INTO vault.secrets (secret, name, description, key_id, tags, exportable)
  VALUES (new_secret, new_name, COALESCE(new_description, ''), new_key_id, COALESCE(new_tags, '{}'),
          COALESCE(new_exportable, true))
  RETURNING id
$$;
CREATE FUNCTION vault.update_secret(
  secret_id uuid, new_secret text DEFAULT NULL, new_name text DEFAULT NULL,
  new_description text DEFAULT NULL, new_key_id uuid DEFAULT NULL, new_tags text[] DEFAULT NULL,
  expected_version integer DEFAULT NULL, new_exportable boolean DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  current_version integer;
BEGIN
  UPDATE vault.secrets s SET
    -- nonce NULL marks secret as plaintext: the trigger encrypts it with a fresh nonce.
    secret = CASE WHEN new_secret IS NULL THEN s.secret ELSE new_secret END,
    nonce = CASE WHEN new_secret IS NULL THEN s.nonce ELSE NULL END,
    name = COALESCE(new_name, s.name),
    description = COALESCE(new_description, s.description),
    key_id = CASE WHEN new_key_id IS NULL THEN s.key_id
                  WHEN new_key_id OPERATOR(pg_catalog.=) '00000000-0000-0000-0000-000000000000'::uuid THEN NULL
                  ELSE new_key_id END,
    tags = COALESCE(new_tags, s.tags),
    -- Only ever to false: a trigger refuses true again (sql/use.sql).
    exportable = COALESCE(new_exportable, s.exportable),
    updated_at = pg_catalog.now()
  WHERE s.id OPERATOR(pg_catalog.=) secret_id
    -- Check-and-set: re-checked against the committed row when another session updated it.
    AND (expected_version IS NULL OR s.version OPERATOR(pg_catalog.=) expected_version);
  IF NOT FOUND THEN
    SELECT s.version INTO current_version FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) secret_id;
    IF FOUND THEN
      RAISE EXCEPTION 'secret % is at version %, not %', secret_id, current_version, expected_version
        USING ERRCODE = 'serialization_failure', HINT = 'Another change came first: read the secret again and retry.';
    END IF;
    RAISE EXCEPTION 'secret % does not exist', secret_id
      USING ERRCODE = 'no_data_found', HINT = 'See vault.decrypted_secrets for existing ids.';
  END IF;
END
$$;

CREATE FUNCTION "secrets_archive"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secrets_archive_wrapper';

CREATE FUNCTION "secret_versions_guard"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'secret_versions_guard_wrapper';

-- Versions are written by vault_ext only (src/vault/versions.rs), as the audit trail is: before
-- the encrypting trigger (trigger names sort), secrets_archive keeps the stored value a new
-- value replaces, as the extension owner, with the writer and the time read from the backend,
-- bumps the version and prunes to vault.max_versions. vault_admin may read versions and update
-- only their ciphertext, nonce and key (key rotation), with ciphertext that decrypts for the
-- secret under that key; it cannot insert or delete them (privileges.sql).
CREATE TRIGGER secrets_archive BEFORE UPDATE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_archive();
CREATE TRIGGER secret_versions_guard BEFORE INSERT OR UPDATE ON vault.secret_versions
  FOR EACH ROW EXECUTE FUNCTION vault.secret_versions_guard();

CREATE VIEW vault.decrypted_secret_versions AS
SELECT v.secret_id, s.name, v.version,
       vault._decrypt(v.secret_id, v.secret, v.nonce, v.key_id) AS decrypted_secret,
       v.key_id, v.created_at, v.created_by
  FROM vault.secret_versions v
  JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) v.secret_id;
COMMENT ON VIEW vault.decrypted_secret_versions IS 'Earlier values of secrets, decrypted; readable by vault_admin.';

CREATE FUNCTION vault.rollback_secret(secret_id uuid, to_version integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  value text;
  new_version integer;
BEGIN
  SELECT vault._decrypt(v.secret_id, v.secret, v.nonce, v.key_id) INTO value
    FROM vault.secret_versions v
   WHERE v.secret_id OPERATOR(pg_catalog.=) rollback_secret.secret_id
     AND v.version OPERATOR(pg_catalog.=) rollback_secret.to_version;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'version % of secret % does not exist', to_version, secret_id
      USING ERRCODE = 'no_data_found', HINT = 'See vault.decrypted_secret_versions (at most vault.max_versions are kept).';
  END IF;
  IF value IS NULL THEN
    RAISE EXCEPTION 'permission denied for secret %', secret_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Written as a new value: the rollback is itself a new version (the current one is kept).
  UPDATE vault.secrets s SET secret = value, nonce = NULL, updated_at = pg_catalog.now()
   WHERE s.id OPERATOR(pg_catalog.=) rollback_secret.secret_id
  RETURNING s.version INTO new_version;
  -- The audit row names the caller and takes the version from the change just made.
  PERFORM vault._audit_rollback(rollback_secret.secret_id, rollback_secret.to_version);
  RETURN new_version;
END
$$;

-- Listings without values: metadata and masks, for vault_viewer.
ALTER FUNCTION vault._mask_secret(uuid, text, bytea, uuid) COST 100;
CREATE VIEW vault.masked_secrets AS
SELECT s.id, s.name, s.description,
       vault._mask_secret(s.id, s.secret, s.nonce, s.key_id) AS masked_secret,
       s.tags, s.key_id, s.created_at, s.updated_at, s.expires_at
  FROM vault.secrets s;
COMMENT ON VIEW vault.masked_secrets IS 'Secrets with masked values (first and last 4 characters of values of 16+); readable by vault_viewer.';

CREATE FUNCTION vault.expiring_secrets(within interval DEFAULT '30 days')
RETURNS TABLE (id uuid, name text, expires_at timestamptz)
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT m.id, m.name, m.expires_at FROM vault.masked_secrets m
   WHERE m.expires_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.+) within)
   ORDER BY m.expires_at, m.name
$$;
COMMENT ON FUNCTION vault.expiring_secrets(interval) IS 'Secrets whose expires_at falls within the interval from now (or has passed).';

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

-- Every row is written by vault_ext's Rust code (src/vault/audit.rs), never by the caller:
-- row triggers note each change with the role ids and time read from the backend, and the
-- notes of a transaction are inserted just before it commits, as the extension owner. Nobody
-- else may INSERT, UPDATE or DELETE audit rows (not even vault_admin), so a row cannot name
-- another role or another time. Trigger functions cannot be called from SQL.
CREATE TRIGGER secrets_audit_create AFTER INSERT ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_create();
-- Per row: what changed (the value shows as a new version, never as text; an id change with
-- the old id); re-encryptions without a change of value make one `reencrypt` row per statement.
CREATE TRIGGER secrets_audit_update AFTER UPDATE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_update();
CREATE TRIGGER secrets_audit_update_end AFTER UPDATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault.secrets_audit_reencrypt();
CREATE TRIGGER secrets_audit_delete AFTER DELETE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_delete();
-- TRUNCATE vault.secrets also empties vault.secret_acl and vault.secret_versions (the library
-- adds them to the statement): one `truncate` row with the three counts.
CREATE TRIGGER secrets_audit_truncate BEFORE TRUNCATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault.secrets_audit_truncate();

CREATE TRIGGER secret_acl_audit AFTER INSERT OR DELETE ON vault.secret_acl
  FOR EACH ROW EXECUTE FUNCTION vault.secret_acl_audit();

-- A secret with grants is stored bound as restricted (src/vault/write.rs): its ciphertext then
-- decrypts only where a grant allows the caller, not in another database nor after the secret
-- is deleted or renamed. When grants change, a no-op UPDATE of the secrets concerned lets the
-- encrypting trigger rebind them. These triggers sort after grants_changed, so that trigger has
-- already made this transaction's cached grants stale.
CREATE FUNCTION vault._rebind_secrets() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    UPDATE vault.secrets s SET id = s.id;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    UPDATE vault.secrets s SET id = s.id WHERE s.id IN (SELECT n.secret_id FROM new_rows n);
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    UPDATE vault.secrets s SET id = s.id WHERE s.id IN (SELECT o.secret_id FROM old_rows o);
  ELSE
    UPDATE vault.secrets s SET id = s.id
     WHERE s.id IN (SELECT n.secret_id FROM new_rows n UNION SELECT o.secret_id FROM old_rows o);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER secret_acl_rebind_insert AFTER INSERT ON vault.secret_acl
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();
CREATE TRIGGER secret_acl_rebind_delete AFTER DELETE ON vault.secret_acl
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();
CREATE TRIGGER secret_acl_rebind_update AFTER UPDATE ON vault.secret_acl
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();
CREATE TRIGGER secret_acl_rebind_truncate AFTER TRUNCATE ON vault.secret_acl
  FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();

-- The grantor and the time of a grant are the inserting role and now, whatever the INSERT says
-- (vault_admin may INSERT into vault.secret_acl directly). A superuser's rows keep theirs: that
-- is how pg_dump's rows restore.
CREATE FUNCTION vault._stamp_grant() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER), false) THEN
    NEW.granted_by := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)::pg_catalog.regrole;
    NEW.granted_at := CURRENT_TIMESTAMP;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER secret_acl_stamp BEFORE INSERT ON vault.secret_acl
  FOR EACH ROW EXECUTE FUNCTION vault._stamp_grant();

-- Keys: create_key, update_key (changed columns, old and new: metadata only), delete_key, truncate.
CREATE TRIGGER keys_audit AFTER INSERT OR UPDATE OR DELETE ON vault.keys
  FOR EACH ROW EXECUTE FUNCTION vault.keys_audit();
CREATE TRIGGER keys_audit_truncate AFTER TRUNCATE ON vault.keys
  FOR EACH STATEMENT EXECUTE FUNCTION vault.keys_audit();

-- The only way to remove audit rows: older than the given age and than
-- vault.audit_min_retention (which only a superuser can lower), itself audited.
COMMENT ON FUNCTION vault.purge_audit_log(interval) IS 'Delete audit rows older than the interval, never younger than vault.audit_min_retention (the retention function); logs itself.';

-- Rotation, root key rotation and verification cover versions; key_status shows root keys.
CREATE OR REPLACE FUNCTION vault.reencrypt_secrets(to_key uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  target uuid;
  moved bigint;
BEGIN
  IF NOT EXISTS (SELECT FROM vault.keys k WHERE k.id OPERATOR(pg_catalog.=) reencrypt_secrets.to_key) THEN
    RAISE EXCEPTION 'vault key % does not exist', reencrypt_secrets.to_key USING ERRCODE = 'no_data_found';
  END IF;
  -- The compatibility key is stored as key_id NULL.
  target := NULLIF(reencrypt_secrets.to_key, '00000000-0000-0000-0000-000000000000'::uuid);
  -- Changing key_id alone makes the trigger decrypt under the old key and encrypt under the new
  -- one with a fresh nonce, row by row, in this transaction: all or nothing.
  UPDATE vault.secrets s SET key_id = reencrypt_secrets.to_key
   WHERE s.key_id IS DISTINCT FROM target;
  GET DIAGNOSTICS moved = ROW_COUNT;
  -- Kept versions move too (re-encrypted by _rekey; the archive trigger is not involved).
  UPDATE vault.secret_versions v SET (secret, nonce, key_id) =
         (SELECT r.secret, r.nonce, r.key_id FROM vault._rekey(v.secret_id, v.secret, v.nonce, v.key_id, reencrypt_secrets.to_key) r)
   WHERE v.key_id IS DISTINCT FROM target;
  RETURN moved;
END
$$;
-- rotate_key gains reencrypt => false; large tables move with reencrypt_in_batches.
DROP FUNCTION vault.rotate_key(text);
CREATE FUNCTION vault.rotate_key(new_key_type text DEFAULT NULL, reencrypt boolean DEFAULT true) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  old_id uuid;
  old_type text;
  new_id uuid;
BEGIN
  LOCK TABLE vault.keys IN SHARE ROW EXCLUSIVE MODE;
  SELECT k.id, k.key_type INTO old_id, old_type FROM vault.keys k WHERE k.status OPERATOR(pg_catalog.=) 'default';
  new_id := vault.create_key(NULL, COALESCE(rotate_key.new_key_type, old_type, 'aead-det'), NULL,
                             'created by vault.rotate_key');
  UPDATE vault.keys k SET status = 'expired' WHERE k.id OPERATOR(pg_catalog.=) old_id;
  UPDATE vault.keys k SET status = 'default' WHERE k.id OPERATOR(pg_catalog.=) new_id;
  -- reencrypt => false: new secrets go to the new key at once; the old ones (they still decrypt:
  -- expired keys do) move later with CALL vault.reencrypt_in_batches().
  IF rotate_key.reencrypt THEN
    PERFORM vault.reencrypt_secrets(new_id);
  END IF;
  PERFORM vault._audit_rotate_key(old_id, new_id);
  RETURN new_id;
END
$$;

-- Large tables: the same move as reencrypt_secrets, batch_size rows per transaction, so a writer
-- waits for one batch at most and an interrupted run keeps what it committed (call it again to
-- finish). A procedure with COMMIT cannot have SET search_path: it sets search_path = '' for
-- each of its transactions itself before any other statement, and names everything qualified.
CREATE PROCEDURE vault.reencrypt_in_batches(to_key uuid DEFAULT NULL, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
  target uuid;    -- the key's id
  stored uuid;    -- what key_id holds for it (NULL for the compatibility key)
  ids uuid[];
  last_id uuid := '00000000-0000-0000-0000-000000000000';
  last_version integer := -1;
  batch record;
  moved bigint := 0;
  moved_versions bigint := 0;
  n bigint;
BEGIN
  PERFORM pg_catalog.set_config('search_path', '', true);
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_key IS NULL THEN
    SELECT k.id INTO target FROM vault.keys k WHERE k.status = 'default';
  ELSE
    SELECT k.id INTO target FROM vault.keys k WHERE k.id = to_key;
  END IF;
  IF target IS NULL THEN
    RAISE EXCEPTION 'vault key % does not exist', COALESCE(to_key::text, '(default)') USING ERRCODE = 'no_data_found',
      HINT = 'See vault.keys; with to_key NULL the key whose status is default is used.';
  END IF;
  stored := NULLIF(target, '00000000-0000-0000-0000-000000000000'::uuid);
  -- Secrets, in id order (the primary key), so each batch starts where the last one ended.
  LOOP
    SELECT pg_catalog.array_agg(b.id ORDER BY b.id) INTO ids
      FROM (SELECT s.id FROM vault.secrets s
             WHERE s.id > last_id AND s.key_id IS DISTINCT FROM stored
             ORDER BY s.id LIMIT batch_size FOR UPDATE) b;
    EXIT WHEN ids IS NULL;
    -- Changing key_id alone makes the encrypting trigger re-encrypt each row.
    UPDATE vault.secrets s SET key_id = target WHERE s.id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    moved := moved + n;
    last_id := ids[pg_catalog.array_length(ids, 1)];
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', '', true);
  END LOOP;
  -- Kept versions, in (secret_id, version) order.
  last_id := '00000000-0000-0000-0000-000000000000';
  LOOP
    SELECT pg_catalog.count(*) AS n, (pg_catalog.array_agg(b.secret_id ORDER BY b.secret_id DESC, b.version DESC))[1] AS sid,
           (pg_catalog.array_agg(b.version ORDER BY b.secret_id DESC, b.version DESC))[1] AS ver
      INTO batch
      FROM (SELECT v.secret_id, v.version FROM vault.secret_versions v
             WHERE (v.secret_id, v.version) > (last_id, last_version) AND v.key_id IS DISTINCT FROM stored
             ORDER BY v.secret_id, v.version LIMIT batch_size FOR UPDATE) b;
    EXIT WHEN batch.n = 0;
    UPDATE vault.secret_versions v SET (secret, nonce, key_id) =
           (SELECT r.secret, r.nonce, r.key_id FROM vault._rekey(v.secret_id, v.secret, v.nonce, v.key_id, target) r)
     WHERE (v.secret_id, v.version) > (last_id, last_version)
       AND (v.secret_id, v.version) <= (batch.sid, batch.ver)
       AND v.key_id IS DISTINCT FROM stored;
    GET DIAGNOSTICS n = ROW_COUNT;
    moved_versions := moved_versions + n;
    last_id := batch.sid;
    last_version := batch.ver;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', '', true);
  END LOOP;
  RAISE NOTICE 'moved % secrets and % kept versions', moved, moved_versions;
END
$$;
COMMENT ON PROCEDURE vault.reencrypt_in_batches(uuid, integer) IS 'Move every secret and kept version not yet on to_key (NULL: the default key) to it, batch_size rows per transaction; resumable.';
CREATE OR REPLACE VIEW vault.key_status AS
SELECT k.id, k.name, k.key_type, k.key_id, k.status, k.created_at, k.expires_at,
       (SELECT pg_catalog.count(*) FROM vault.secrets s
         WHERE COALESCE(s.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) k.id) AS secrets,
       k.root_key_fingerprint,
       CASE WHEN k.root_key_fingerprint IS NULL
              OR k.root_key_fingerprint OPERATOR(pg_catalog.=) vault._loaded_fingerprint() THEN 'current'
            WHEN k.root_key_fingerprint OPERATOR(pg_catalog.=) vault._previous_fingerprint() THEN 'previous'
            ELSE 'not loaded' END AS root_key
  FROM vault.keys k;
COMMENT ON VIEW vault.key_status IS 'Keys with the number of secrets written under each and the root key they derive from (current, previous, not loaded).';
CREATE FUNCTION vault.rotate_root_key() RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  cur text := vault.root_key_fingerprint();
  prev text := vault._previous_fingerprint();
  kr record;
  n bigint;
  moved bigint := 0;
BEGIN
  IF prev IS NULL THEN
    RAISE EXCEPTION 'no previous root key is loaded'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set vault.previous_root_key_file (or vault.previous_getkey_script) to the old root key, restart the server, then run vault.rotate_root_key().';
  END IF;
  -- Writers and key changes wait until this transaction ends; readers do not. All or nothing:
  -- a crash or cancel leaves every secret under the previous root key, still readable.
  LOCK TABLE vault.keys IN SHARE ROW EXCLUSIVE MODE;
  LOCK TABLE vault.secrets IN SHARE ROW EXCLUSIVE MODE;
  LOCK TABLE vault.secret_versions IN SHARE ROW EXCLUSIVE MODE;
  FOR kr IN
    SELECT k.id, k.status FROM vault.keys k
     WHERE k.root_key_fingerprint OPERATOR(pg_catalog.=) prev ORDER BY k.created_at, k.id
  LOOP
    IF kr.status OPERATOR(pg_catalog.=) 'invalid' THEN
      RAISE WARNING 'vault key % is invalid: its secrets stay under the previous root key', kr.id
        USING HINT = 'They cannot be decrypted once the previous root key is removed; set the key valid and run vault.rotate_root_key() again to keep them.';
      CONTINUE;
    END IF;
    -- _rewrap decrypts under the previous root key and encrypts for the same key under the
    -- current one; the trigger stores the ciphertext as given (both secret and nonce change).
    UPDATE vault.secrets s SET (secret, nonce) =
           (SELECT r.secret, r.nonce FROM vault._rewrap(s.id, s.secret, s.nonce, kr.id) r)
     WHERE COALESCE(s.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) kr.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    moved := moved OPERATOR(pg_catalog.+) n;
    UPDATE vault.secret_versions v SET (secret, nonce) =
           (SELECT r.secret, r.nonce FROM vault._rewrap(v.secret_id, v.secret, v.nonce, kr.id) r)
     WHERE COALESCE(v.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) kr.id;
    UPDATE vault.keys k2 SET root_key_fingerprint = cur WHERE k2.id OPERATOR(pg_catalog.=) kr.id;
  END LOOP;
  FOR kr IN
    SELECT k.root_key_fingerprint AS fp, pg_catalog.count(*) AS keys FROM vault.keys k
     WHERE k.root_key_fingerprint OPERATOR(pg_catalog.<>) cur AND k.root_key_fingerprint OPERATOR(pg_catalog.<>) prev
     GROUP BY 1
  LOOP
    RAISE WARNING '% vault key(s) belong to root key %, which is neither the current nor the previous one', kr.keys, kr.fp
      USING HINT = 'Their secrets do not decrypt here; see vault.key_status and vault.verify_secrets().';
  END LOOP;
  PERFORM vault._audit_rotate_root_key(moved);
  RETURN moved;
END
$$;
COMMENT ON FUNCTION vault.rotate_root_key() IS 'Re-encrypt every secret written under the previous root key for the current one; returns how many.';
CREATE OR REPLACE FUNCTION vault.verify_secrets()
RETURNS TABLE (id uuid, name text, key_id uuid, status text, detail text)
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  r record;
  loaded text := vault.root_key_fingerprint();
  previous text := vault._previous_fingerprint();
BEGIN
  FOR r IN
    -- Current values, then kept versions (ver NOT NULL).
    SELECT c.sid, c.sname, c.skey, c.secret, c.nonce, c.ver, k.id AS kid, k.key_type,
           k.key_id AS knum, k.key_context, k.status AS kstatus, k.root_key_fingerprint AS kfp
      FROM (SELECT s.id AS sid, s.name AS sname, s.key_id AS skey, s.secret, s.nonce, NULL::integer AS ver,
                   s.created_at AS at
              FROM vault.secrets s
            UNION ALL
            SELECT v.secret_id, s.name, v.key_id, v.secret, v.nonce, v.version, s.created_at
              FROM vault.secret_versions v JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) v.secret_id) c
      LEFT JOIN vault.keys k
        ON k.id OPERATOR(pg_catalog.=) COALESCE(c.skey, '00000000-0000-0000-0000-000000000000'::uuid)
     ORDER BY c.at, c.sid, c.ver NULLS FIRST
  LOOP
    id := r.sid; name := r.sname; key_id := r.skey; detail := NULL;
    BEGIN
      PERFORM vault._decrypt(r.sid, r.secret, r.nonce, r.kid, r.key_type, r.knum, r.key_context, r.kstatus, r.kfp);
      status := 'ok';
      IF r.kfp OPERATOR(pg_catalog.=) previous THEN
        detail := 'under the previous root key: run vault.rotate_root_key()';
      END IF;
    EXCEPTION
      WHEN data_corrupted THEN
        IF r.kfp IS NOT NULL AND r.kfp OPERATOR(pg_catalog.<>) loaded AND r.kfp IS DISTINCT FROM previous THEN
          status := 'root_key_mismatch';
          detail := pg_catalog.format('key created under root key %s, server has %s', r.kfp, loaded);
        ELSE
          status := 'tampered';
          detail := 'the ciphertext does not authenticate';
        END IF;
      WHEN invalid_parameter_value THEN
        IF r.kstatus OPERATOR(pg_catalog.=) 'invalid' THEN
          status := 'key_invalid';
        ELSE
          status := 'tampered';
        END IF;
        detail := SQLERRM;
    END;
    IF r.ver IS NOT NULL THEN
      detail := 'version ' OPERATOR(pg_catalog.||) r.ver OPERATOR(pg_catalog.||) COALESCE(': ' OPERATOR(pg_catalog.||) detail, '');
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;

-- API tokens for pgvault serve (same as sql/tokens.sql).
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

SELECT pg_catalog.pg_extension_config_dump('vault.keys', '');
SELECT pg_catalog.pg_extension_config_dump('vault.api_token_hashes', '');
SELECT pg_catalog.pg_extension_config_dump('vault.api_token_uses', '');
SELECT pg_catalog.pg_extension_config_dump('vault.secret_versions', '');
SELECT pg_catalog.pg_extension_config_dump('vault.audit_log', '');

-- Privileges: nothing for PUBLIC on the new objects.
REVOKE ALL ON vault.secret_versions, vault.decrypted_secret_versions, vault.masked_secrets, vault.audit_log FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._previous_fingerprint(), vault._rewrap(uuid, text, bytea, uuid),
                       vault._rekey(uuid, text, bytea, uuid, uuid), vault.mask(text),
                       vault._mask_secret(uuid, text, bytea, uuid), vault._decrypt(uuid, text, bytea, uuid),
                       vault.create_secret(text, text, text, uuid, text[], boolean),
                       vault.update_secret(uuid, text, text, text, uuid, text[], integer, boolean),
                       vault.secrets_archive(), vault.secret_versions_guard(), vault._stamp_grant(),
                       vault._keys_in_use(), vault.rollback_secret(uuid, integer),
                       vault.expiring_secrets(interval), vault.rotate_root_key(),
                       vault.purge_audit_log(interval), vault.secrets_audit_create(),
                       vault.secrets_audit_update(), vault.secrets_audit_reencrypt(),
                       vault.secrets_audit_delete(), vault.secrets_audit_truncate(),
                       vault.secret_acl_audit(), vault.keys_audit(),
                       vault._audit_rollback(uuid, integer), vault._audit_rotate_key(uuid, uuid),
                       vault._audit_rotate_root_key(bigint), vault._rewrapped(uuid, bytea), vault._rebind_secrets()
  FROM PUBLIC;
GRANT USAGE ON SCHEMA vault TO vault_viewer;
GRANT SELECT ON vault.masked_secrets, vault.keys, vault.secret_acl TO vault_viewer;
GRANT EXECUTE ON FUNCTION vault._mask_secret(uuid, text, bytea, uuid), vault.mask(text),
                          vault.expiring_secrets(interval)
  TO vault_viewer;
GRANT SELECT ON vault.keys TO vault_reader;
GRANT EXECUTE ON FUNCTION vault._decrypt(uuid, text, bytea, uuid) TO vault_reader;
REVOKE EXECUTE ON FUNCTION vault._decrypt(uuid, text, bytea, uuid, text, bigint, bytea, text, text) FROM vault_reader;
GRANT SELECT, UPDATE ON vault.secret_versions TO vault_admin;
GRANT SELECT ON vault.decrypted_secret_versions TO vault_admin;
GRANT SELECT ON vault.audit_log TO vault_admin;
GRANT EXECUTE ON FUNCTION vault.create_secret(text, text, text, uuid, text[], boolean),
                          vault.update_secret(uuid, text, text, text, uuid, text[], integer, boolean),
                          vault.rollback_secret(uuid, integer), vault._rekey(uuid, text, bytea, uuid, uuid),
                          vault.purge_audit_log(interval),
                          vault._previous_fingerprint(), vault.rotate_root_key(),
                          vault._rewrap(uuid, text, bytea, uuid),
                          vault._decrypt(uuid, text, bytea, uuid, text, bigint, bytea, text, text),
                          vault._audit_rollback(uuid, integer), vault._audit_rotate_key(uuid, uuid),
                          vault._audit_rotate_root_key(bigint), vault._rewrapped(uuid, bytea)
  TO vault_admin;

-- Secrets that already have grants are rebound as restricted (needs the root key they were
-- written under; others stay as they are and still decrypt for granted roles).
UPDATE vault.secrets s SET id = s.id WHERE s.id IN (SELECT a.secret_id FROM vault.secret_acl a);

-- rotate_key was recreated with a new signature (grants do not carry over): vault_admin again.
REVOKE ALL ON FUNCTION vault.rotate_key(text, boolean) FROM PUBLIC;
REVOKE ALL ON PROCEDURE vault.reencrypt_in_batches(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.rotate_key(text, boolean) TO vault_admin;
GRANT EXECUTE ON PROCEDURE vault.reencrypt_in_batches(uuid, integer) TO vault_admin;

-- API tokens: vault_admin creates, lists and revokes them; any role may check one.
REVOKE ALL ON FUNCTION vault._create_api_token(text, oid, timestamptz), vault.revoke_api_token(text),
                       vault._api_token_role(text), vault._api_token_self(text),
                       vault.create_api_token(text, regrole, timestamptz)
  FROM PUBLIC;
REVOKE ALL ON vault.api_token_hashes, vault.api_token_uses, vault.api_tokens FROM PUBLIC;
GRANT SELECT ON vault.api_tokens TO vault_admin;
GRANT EXECUTE ON FUNCTION vault.create_api_token(text, regrole, timestamptz),
                          vault._create_api_token(text, oid, timestamptz), vault.revoke_api_token(text)
  TO vault_admin;
GRANT EXECUTE ON FUNCTION vault.api_token_role(text), vault.api_token_self(text) TO PUBLIC;

-- Migration from supabase_vault (issue 26).
CREATE  FUNCTION "_supabase_row_kind"(
	"id" uuid, /* Uuid */
	"secret" TEXT, /* & str */
	"nonce" bytea /* Option < & [u8] > */
) RETURNS TEXT /* & str */
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'supabase_row_kind_wrapper';

-- Copies every row of a table holding supabase_vault's vault.secrets (restored under another
-- name, e.g. supabase_vault_import.secrets) into vault.secrets, keeping ids, names,
-- descriptions and times. Each row is classified by vault._supabase_row_kind (src/vault/write.rs):
-- ciphertext under the loaded root key is stored byte for byte (it was written with the same
-- key derivation and cipher); plaintext (supabase_vault stores a plain INSERT as it comes) is
-- encrypted now with a fresh nonce; rows that look like ciphertext but do not decrypt
-- ("ambiguous") are plaintext when ambiguous_as_plaintext is true, skipped when it is false, and
-- when it is NULL (the default) plaintext if any row of the source decrypted (the root key is
-- right: supabase_vault has one), an error otherwise (probably the wrong root key). Rows whose id
-- is already in vault.secrets are left alone, so it is safe to run twice. One transaction: an
-- error (e.g. a name already taken by another secret) imports nothing.
CREATE FUNCTION vault.migrate_from(source regclass, ambiguous_as_plaintext boolean DEFAULT NULL)
RETURNS TABLE (kept_ciphertext bigint, encrypted_plaintext bigint, already_present bigint, skipped bigint)
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  r record;
  decrypting bigint := 0;
  ambiguous uuid[] := '{}';
  as_plaintext boolean;
BEGIN
  kept_ciphertext := 0;
  encrypted_plaintext := 0;
  already_present := 0;
  skipped := 0;
  FOR r IN EXECUTE pg_catalog.format(
    'SELECT s.id, s.name, s.description, s.secret, s.nonce, s.created_at, s.updated_at,
            vault._supabase_row_kind(s.id, s.secret, s.nonce) AS kind,
            EXISTS (SELECT FROM vault.secrets v WHERE v.id OPERATOR(pg_catalog.=) s.id) AS present
       FROM %s s ORDER BY s.created_at, s.id', source)
  LOOP
    IF r.kind OPERATOR(pg_catalog.<>) 'ambiguous' AND r.kind OPERATOR(pg_catalog.<>) 'plaintext' THEN
      decrypting := decrypting OPERATOR(pg_catalog.+) 1;
    END IF;
    IF r.present THEN
      already_present := already_present OPERATOR(pg_catalog.+) 1;
    ELSIF r.kind OPERATOR(pg_catalog.=) 'ciphertext' THEN
      -- With its nonce: the encrypting trigger checks it decrypts for this id and stores it as is.
      INSERT INTO vault.secrets (id, name, description, secret, key_id, nonce, created_at, updated_at)
      VALUES (r.id, r.name, r.description, r.secret, NULL, r.nonce, r.created_at, r.updated_at);
      kept_ciphertext := kept_ciphertext OPERATOR(pg_catalog.+) 1;
    ELSIF r.kind OPERATOR(pg_catalog.=) 'ciphertext_without_nonce' THEN
      INSERT INTO vault.secrets (id, name, description, secret, nonce, created_at, updated_at)
      VALUES (r.id, r.name, r.description, vault._decrypt(r.id, r.secret, NULL, NULL), NULL, r.created_at, r.updated_at);
      encrypted_plaintext := encrypted_plaintext OPERATOR(pg_catalog.+) 1;
    ELSIF r.kind OPERATOR(pg_catalog.=) 'plaintext' THEN
      -- Without a nonce: the encrypting trigger encrypts it under the default key.
      INSERT INTO vault.secrets (id, name, description, secret, nonce, created_at, updated_at)
      VALUES (r.id, r.name, r.description, r.secret, NULL, r.created_at, r.updated_at);
      encrypted_plaintext := encrypted_plaintext OPERATOR(pg_catalog.+) 1;
    ELSE
      ambiguous := ambiguous OPERATOR(pg_catalog.||) r.id;
    END IF;
  END LOOP;
  IF pg_catalog.cardinality(ambiguous) OPERATOR(pg_catalog.>) 0 THEN
    as_plaintext := COALESCE(ambiguous_as_plaintext, decrypting OPERATOR(pg_catalog.>) 0);
    IF ambiguous_as_plaintext IS NULL AND NOT as_plaintext THEN
      RAISE EXCEPTION '% row(s) of % look like ciphertext but do not decrypt under the loaded root key, and no row does',
        pg_catalog.cardinality(ambiguous), source
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = pg_catalog.format('The loaded root key has fingerprint %s; the first such row is %s.',
                                         vault.root_key_fingerprint(), ambiguous[1]),
              HINT = 'Load the root key supabase_vault used (README: Migrating from supabase_vault). If these values are plaintext that looks like base64, call vault.migrate_from(source, ambiguous_as_plaintext => true).';
    END IF;
    IF as_plaintext THEN
      FOR r IN EXECUTE pg_catalog.format(
        'SELECT s.id, s.name, s.description, s.secret, s.created_at, s.updated_at FROM %s s
          WHERE s.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY s.created_at, s.id', source) USING ambiguous
      LOOP
        INSERT INTO vault.secrets (id, name, description, secret, nonce, created_at, updated_at)
        VALUES (r.id, r.name, r.description, r.secret, NULL, r.created_at, r.updated_at);
        encrypted_plaintext := encrypted_plaintext OPERATOR(pg_catalog.+) 1;
      END LOOP;
    ELSE
      skipped := pg_catalog.cardinality(ambiguous);
      RAISE NOTICE '% row(s) that look like ciphertext but do not decrypt were not imported; the first is %',
        skipped, ambiguous[1];
    END IF;
  END IF;
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION vault.migrate_from(regclass, boolean) IS 'Copy supabase_vault secrets (a restored copy of its vault.secrets) into vault.secrets: ciphertext kept, plaintext encrypted; safe to run twice.';
REVOKE ALL ON FUNCTION vault.migrate_from(regclass, boolean), vault._supabase_row_kind(uuid, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.migrate_from(regclass, boolean), vault._supabase_row_kind(uuid, text, bytea)
  TO vault_admin;

-- Using a secret without reading it (SPEC §11, sql/use.sql, src/api/usage.rs): role vault_user,
-- 'use' grants, non-exportable secrets (the exportable column is added above), signing keys
-- and encryption keys.
ALTER TABLE vault.secret_acl
  ADD COLUMN privilege text NOT NULL DEFAULT 'read' CHECK (privilege IN ('read', 'use'));
CREATE OR REPLACE VIEW vault.secret_grants AS
SELECT a.secret_id, s.name AS secret_name, a.grantee, a.granted_by, a.granted_at, a.privilege
  FROM vault.secret_acl a JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
DROP FUNCTION vault.grant_secret(uuid, regrole);
CREATE FUNCTION vault.grant_secret(secret_id uuid, grantee regrole, privilege text DEFAULT 'read') RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
BEGIN
  IF grant_secret.privilege IS NULL OR grant_secret.privilege OPERATOR(pg_catalog.<>) ALL ('{read,use}'::text[]) THEN
    RAISE EXCEPTION 'privilege must be ''read'' or ''use'', not %', COALESCE(pg_catalog.quote_literal(grant_secret.privilege), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '''use'' lets the grantee compute with the secret (vault.hmac, vault.sign_jwt, ...); ''read'' also lets it read the value.';
  END IF;
  IF NOT EXISTS (SELECT FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) grant_secret.secret_id) THEN
    RAISE EXCEPTION 'secret % does not exist', grant_secret.secret_id USING ERRCODE = 'no_data_found';
  END IF;
  IF grant_secret.grantee IS NULL THEN
    RAISE EXCEPTION 'grantee must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- '-'::regrole is OID 0, no role at all (the first review of issue 26 stored such a grant).
  IF grant_secret.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN
    RAISE EXCEPTION 'grantee must be a role, not "-"' USING ERRCODE = 'undefined_object';
  END IF;
  -- Another privilege for the same grantee replaces it: revoked, then granted (both audited).
  DELETE FROM vault.secret_acl a
   WHERE a.secret_id OPERATOR(pg_catalog.=) grant_secret.secret_id
     AND a.grantee OPERATOR(pg_catalog.=) grant_secret.grantee
     AND a.privilege OPERATOR(pg_catalog.<>) grant_secret.privilege;
  INSERT INTO vault.secret_acl (secret_id, grantee, privilege)
  VALUES (grant_secret.secret_id, grant_secret.grantee, grant_secret.privilege)
  ON CONFLICT DO NOTHING;
END
$$;

-- vault_ext::api::usage::create_encryption_key
CREATE  FUNCTION "create_encryption_key"(
	"name" TEXT /* & str */
) RETURNS uuid /* Uuid */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_encryption_key_wrapper';

-- vault_ext::api::usage::create_signing_key
CREATE  FUNCTION "create_signing_key"(
	"name" TEXT, /* & str */
	"description" TEXT DEFAULT '' /* & str */
) RETURNS uuid /* Uuid */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_signing_key_wrapper';

-- vault_ext::api::usage::decrypt
CREATE  FUNCTION "decrypt"(
	"key_name" TEXT, /* & str */
	"ciphertext" TEXT, /* & str */
	"context" TEXT DEFAULT '' /* & str */
) RETURNS bytea /* Vec < u8 > */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'decrypt_bytea_wrapper';

-- vault_ext::api::usage::decrypt_text
CREATE  FUNCTION "decrypt_text"(
	"key_name" TEXT, /* & str */
	"ciphertext" TEXT, /* & str */
	"context" TEXT DEFAULT '' /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'decrypt_text_wrapper';

-- vault_ext::api::usage::encrypt
CREATE  FUNCTION "encrypt"(
	"key_name" TEXT, /* & str */
	"plaintext" bytea, /* & [u8] */
	"context" TEXT DEFAULT '' /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'encrypt_bytea_wrapper';

-- vault_ext::api::usage::encrypt
CREATE  FUNCTION "encrypt"(
	"key_name" TEXT, /* & str */
	"plaintext" TEXT, /* & str */
	"context" TEXT DEFAULT '' /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'encrypt_text_wrapper';

-- vault_ext::api::usage::hmac
CREATE  FUNCTION "hmac"(
	"secret_name" TEXT, /* & str */
	"message" bytea, /* & [u8] */
	"algorithm" TEXT DEFAULT 'sha256' /* & str */
) RETURNS bytea /* Vec < u8 > */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hmac_bytea_wrapper';

-- vault_ext::api::usage::hmac
CREATE  FUNCTION "hmac"(
	"secret_name" TEXT, /* & str */
	"message" TEXT, /* & str */
	"algorithm" TEXT DEFAULT 'sha256' /* & str */
) RETURNS bytea /* Vec < u8 > */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hmac_text_wrapper';

-- vault_ext::api::usage::hmac_verify
CREATE  FUNCTION "hmac_verify"(
	"secret_name" TEXT, /* & str */
	"message" bytea, /* & [u8] */
	"mac" bytea, /* & [u8] */
	"algorithm" TEXT DEFAULT 'sha256' /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hmac_verify_bytea_wrapper';

-- vault_ext::api::usage::hmac_verify
CREATE  FUNCTION "hmac_verify"(
	"secret_name" TEXT, /* & str */
	"message" TEXT, /* & str */
	"mac" bytea, /* & [u8] */
	"algorithm" TEXT DEFAULT 'sha256' /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hmac_verify_text_wrapper';

-- vault_ext::api::usage::public_key
CREATE  FUNCTION "public_key"(
	"name" TEXT /* & str */
) RETURNS bytea /* Vec < u8 > */
STRICT STABLE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'signing_public_key_wrapper';

-- vault_ext::api::usage::rewrap
CREATE  FUNCTION "rewrap"(
	"key_name" TEXT, /* & str */
	"ciphertext" TEXT, /* & str */
	"context" TEXT DEFAULT '' /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rewrap_ciphertext_wrapper';

-- vault_ext::api::usage::rotate_encryption_key
CREATE  FUNCTION "rotate_encryption_key"(
	"name" TEXT /* & str */
) RETURNS INT /* i32 */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rotate_encryption_key_wrapper';

-- vault_ext::api::usage::sign
CREATE  FUNCTION "sign"(
	"name" TEXT, /* & str */
	"message" bytea /* & [u8] */
) RETURNS bytea /* Vec < u8 > */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sign_message_wrapper';

-- vault_ext::api::usage::sign_jwt
CREATE  FUNCTION "sign_jwt"(
	"secret_name" TEXT, /* & str */
	"claims" jsonb, /* JsonB */
	"algorithm" TEXT DEFAULT 'HS256' /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sign_jwt_wrapper';

-- vault_ext::api::usage::verify_jwt
CREATE  FUNCTION "verify_jwt"(
	"secret_name" TEXT, /* & str */
	"token" TEXT /* & str */
) RETURNS jsonb /* Option < JsonB > */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_jwt_wrapper';

-- vault_ext::api::usage::verify_signature
CREATE  FUNCTION "verify_signature"(
	"public_key" bytea, /* & [u8] */
	"message" bytea, /* & [u8] */
	"signature" bytea /* & [u8] */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_signature_wrapper';

-- vault_ext::api::usage::verify_webhook
CREATE  FUNCTION "verify_webhook"(
	"provider" TEXT, /* & str */
	"secret_name" TEXT, /* & str */
	"payload" TEXT, /* & str */
	"headers" jsonb, /* JsonB */
	"tolerance" interval DEFAULT '5 minutes' /* Interval */
) RETURNS bool /* bool */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_webhook_wrapper';

-- vault_ext::api::usage::unexportable_changed
CREATE FUNCTION "unexportable_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'unexportable_changed_wrapper';


-- vault_user may use (vault.hmac, vault.sign_jwt, ...) every secret without per-secret grants
-- and read none; reading implies using, so every reader is a user.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'vault_user') THEN
    CREATE ROLE vault_user NOLOGIN;
  END IF;
  IF NOT pg_catalog.pg_has_role('vault_reader', 'vault_user', 'MEMBER') THEN
    GRANT vault_user TO vault_reader;
  END IF;
END
$$;

-- Keys made by vault_ext (vault.create_signing_key, vault.create_encryption_key): what they are
-- and, for signing keys, the public key. Written only by vault_ext's code as the bootstrap
-- superuser; the value (private key, key versions) is the secret's, non-exportable.
CREATE TABLE vault.secret_kinds (
  secret_id uuid PRIMARY KEY REFERENCES vault.secrets (id) ON DELETE CASCADE ON UPDATE CASCADE,
  kind text NOT NULL CHECK (kind IN ('signing_key', 'encryption_key')),
  public_key bytea CHECK ((kind = 'signing_key') = (public_key IS NOT NULL)),
  CHECK (public_key IS NULL OR pg_catalog.length(public_key) = 32)
);
COMMENT ON TABLE vault.secret_kinds IS 'Signing and encryption keys made by vault_ext: their kind and public key.';

-- Every id that was ever non-exportable (no foreign key: deleting the secret keeps it), so the
-- read path refuses it and no row comes back under that id as exportable. No unique key: a
-- restore loads these rows and the trigger below may add the same ids.
CREATE TABLE vault.unexportable_secrets (
  secret_id uuid NOT NULL
);
CREATE INDEX unexportable_secrets_secret_id_idx ON vault.unexportable_secrets (secret_id);
COMMENT ON TABLE vault.unexportable_secrets IS 'Ids of non-exportable secrets (kept after deletion); written by a trigger only.';
CREATE TRIGGER unexportable_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.unexportable_secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault.unexportable_changed();

-- Every write to vault.secrets makes what the use path keeps (src/vault/usage.rs: decrypted
-- keys, per role) stale, here at once and in every other backend when it commits.
CREATE TRIGGER secrets_use_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault.unexportable_changed();

-- exportable goes to false once and back by no path: update_secret, UPDATE, a restored or
-- re-inserted row under the id (22023). Runs as the owner to record the id.
CREATE FUNCTION vault._keep_unexportable() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NOT NEW.exportable THEN
    IF NOT EXISTS (SELECT FROM vault.unexportable_secrets u WHERE u.secret_id OPERATOR(pg_catalog.=) NEW.id) THEN
      INSERT INTO vault.unexportable_secrets (secret_id) VALUES (NEW.id);
    END IF;
  ELSIF (TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND NOT OLD.exportable)
     OR EXISTS (SELECT FROM vault.unexportable_secrets u WHERE u.secret_id OPERATOR(pg_catalog.=) NEW.id) THEN
    RAISE EXCEPTION 'secret % is not exportable, and cannot become exportable again', NEW.id
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A non-exportable secret is only ever used inside the server; create a new secret for a value that may be read.';
  END IF;
  RETURN NEW;
END
$$;
-- Plain inserts (nonce NULL: a new value) of exportable rows skip it, so create_secret costs
-- nothing more; a row arriving as ciphertext (restore) is checked against the recorded ids.
-- The names sort before secrets_encrypt, so the WHEN clauses see the row as it was written
-- (nonce still NULL for plaintext). A new plaintext under a recorded id is accepted, but the
-- read path still returns no value for that id: an id once non-exportable stays so.
CREATE TRIGGER secrets_check_exportable BEFORE INSERT ON vault.secrets
  FOR EACH ROW WHEN (NOT NEW.exportable OR NEW.nonce IS NOT NULL)
  EXECUTE FUNCTION vault._keep_unexportable();
CREATE TRIGGER secrets_check_exportable_update BEFORE UPDATE ON vault.secrets
  FOR EACH ROW WHEN (NOT NEW.exportable OR NOT OLD.exportable OR NEW.id IS DISTINCT FROM OLD.id)
  EXECUTE FUNCTION vault._keep_unexportable();

COMMENT ON FUNCTION vault.hmac(text, bytea, text) IS 'HMAC-SHA-256/512 of a message with a secret the caller may use but not read.';
COMMENT ON FUNCTION vault.verify_webhook(text, text, text, jsonb, interval) IS 'Whether a Stripe, GitHub, Slack or Standard Webhooks delivery is signed with the named secret and fresh.';
COMMENT ON FUNCTION vault.sign_jwt(text, jsonb, text) IS 'A compact JWT (HS256, HS512 with a secret; EdDSA with a signing key).';
COMMENT ON FUNCTION vault.verify_jwt(text, text) IS 'The claims of a JWT valid for the named secret or signing key (exp/nbf hold), else NULL.';
COMMENT ON FUNCTION vault.encrypt(text, bytea, text) IS 'vault:v<N>: ciphertext of a value under an encryption key, with the context as associated data.';

-- Privileges (privileges.sql, which runs last, takes everything from PUBLIC).
GRANT USAGE ON SCHEMA vault TO vault_user;
-- Metadata the read path consults as the calling role: key metadata, grants, non-exportable ids.
GRANT SELECT ON vault.keys, vault.secret_acl, vault.unexportable_secrets TO vault_user;
GRANT SELECT ON vault.unexportable_secrets, vault.secret_kinds TO vault_viewer;
GRANT EXECUTE ON FUNCTION vault.hmac(text, bytea, text), vault.hmac(text, text, text),
                          vault.hmac_verify(text, bytea, bytea, text), vault.hmac_verify(text, text, bytea, text),
                          vault.verify_webhook(text, text, text, jsonb, interval),
                          vault.sign_jwt(text, jsonb, text), vault.verify_jwt(text, text),
                          vault.public_key(text), vault.sign(text, bytea),
                          vault.verify_signature(bytea, bytea, bytea),
                          vault.encrypt(text, bytea, text), vault.encrypt(text, text, text),
                          vault.decrypt(text, text, text), vault.decrypt_text(text, text, text),
                          vault.rewrap(text, text, text)
  TO vault_user;
GRANT EXECUTE ON FUNCTION vault.public_key(text) TO vault_viewer;
GRANT EXECUTE ON FUNCTION vault.create_signing_key(text, text), vault.create_encryption_key(text),
                          vault.rotate_encryption_key(text)
  TO vault_admin;
SELECT pg_catalog.pg_extension_config_dump('vault.secret_kinds', '');
SELECT pg_catalog.pg_extension_config_dump('vault.unexportable_secrets', '');
REVOKE ALL ON FUNCTION vault.grant_secret(uuid, regrole, text), vault._keep_unexportable(), vault.unexportable_changed(),
                       vault.hmac(text, bytea, text), vault.hmac(text, text, text),
                       vault.hmac_verify(text, bytea, bytea, text), vault.hmac_verify(text, text, bytea, text),
                       vault.verify_webhook(text, text, text, jsonb, interval),
                       vault.sign_jwt(text, jsonb, text), vault.verify_jwt(text, text),
                       vault.public_key(text), vault.sign(text, bytea), vault.verify_signature(bytea, bytea, bytea),
                       vault.encrypt(text, bytea, text), vault.encrypt(text, text, text),
                       vault.decrypt(text, text, text), vault.decrypt_text(text, text, text),
                       vault.rewrap(text, text, text), vault.create_signing_key(text, text),
                       vault.create_encryption_key(text), vault.rotate_encryption_key(text)
  FROM PUBLIC;
REVOKE ALL ON vault.secret_kinds, vault.unexportable_secrets, vault.secret_grants FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.grant_secret(uuid, regrole, text) TO vault_admin;

-- NOTIFY vault_ext_changed after changes of secrets and grants (sql/notify.sql, issue 30).
CREATE FUNCTION vault._notify_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('vault_ext_changed', '');
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION vault._notify_changed() IS 'Trigger: NOTIFY vault_ext_changed (empty payload) when secrets or their grants change.';
CREATE TRIGGER secrets_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault._notify_changed();
CREATE TRIGGER secret_acl_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secret_acl
  FOR EACH STATEMENT EXECUTE FUNCTION vault._notify_changed();
REVOKE ALL ON FUNCTION vault._notify_changed() FROM PUBLIC;
