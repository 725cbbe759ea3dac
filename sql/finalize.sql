-- vault_ext: the default key, triggers, views, SQL functions and privileges. Runs last.

-- The compatibility key: what vault.secrets.key_id IS NULL means (supabase_vault's only key).
INSERT INTO vault.keys (id, name, key_type, key_id, key_context, status, comment, root_key_fingerprint)
VALUES ('00000000-0000-0000-0000-000000000000', 'default', 'aead-det', 0, 'pgsodium', 'default',
        'supabase_vault-compatible key (key_id 0, context pgsodium)', vault._loaded_fingerprint());

CREATE TRIGGER secrets_encrypt BEFORE INSERT OR UPDATE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_encrypt();
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.keys
  FOR EACH STATEMENT EXECUTE FUNCTION vault.keys_changed();

-- Inserting a default key demotes the previous default to expired (it still decrypts). This is
-- what restores need: CREATE EXTENSION recreates the compatibility key as default, then the
-- dump brings the default key of a rotated database. The dump also carries the compatibility
-- key's own row: it is merged into the one CREATE EXTENSION made (status and the fingerprint of
-- the root key its secrets are under), so a restore under another root key reports a mismatch.
CREATE FUNCTION vault._keys_one_default() RETURNS trigger
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
CREATE TRIGGER keys_one_default BEFORE INSERT ON vault.keys
  FOR EACH ROW EXECUTE FUNCTION vault._keys_one_default();

-- A key still used by secrets (or kept versions) cannot be deleted or renumbered: they would
-- no longer decrypt. (vault.secrets.key_id is not a foreign key, for insert speed.) The SHARE
-- lock waits for writers in flight, so their rows are seen.
CREATE FUNCTION vault._keys_in_use() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  gone uuid;
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    gone := NULL;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND NEW.id OPERATOR(pg_catalog.=) OLD.id THEN
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
CREATE TRIGGER keys_in_use BEFORE DELETE OR UPDATE OF id ON vault.keys
  FOR EACH ROW EXECUTE FUNCTION vault._keys_in_use();
CREATE TRIGGER keys_in_use_truncate BEFORE TRUNCATE ON vault.keys
  FOR EACH STATEMENT EXECUTE FUNCTION vault._keys_in_use();


-- Decryption costs about as much as 100 simple operators: with that estimate the planner hands
-- big scans to parallel workers, without reaching the JIT threshold for ordinary table sizes.
ALTER FUNCTION vault._decrypt(uuid, text, bytea, uuid) COST 100;
CREATE VIEW vault.decrypted_secrets AS
SELECT s.id, s.name, s.description, s.secret,
       vault._decrypt(s.id, s.secret, s.nonce, s.key_id) AS decrypted_secret,
       s.key_id, s.nonce, s.created_at, s.updated_at, s.tags, s.expires_at
  FROM vault.secrets s;
COMMENT ON VIEW vault.decrypted_secrets IS 'vault.secrets with decrypted_secret; readable by vault_reader.';

CREATE FUNCTION vault.create_secret(
  new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '',
  new_key_id uuid DEFAULT NULL, new_tags text[] DEFAULT NULL
) RETURNS uuid
-- One INSERT: the BEFORE trigger encrypts (nonce NULL = plaintext) before the row is stored.
-- A SQL function without SET search_path, unlike the others: the body names only vault.secrets
-- (qualified), its parameters and COALESCE (syntax, not a function lookup), so no object on
-- the caller's search_path can be reached, and it runs about 25% faster per call.
LANGUAGE sql VOLATILE
AS $$
  INSERT INTO vault.secrets (secret, name, description, key_id, tags)
  VALUES (new_secret, new_name, COALESCE(new_description, ''), new_key_id, COALESCE(new_tags, '{}'))
  RETURNING id
$$;

CREATE FUNCTION vault.update_secret(
  secret_id uuid, new_secret text DEFAULT NULL, new_name text DEFAULT NULL,
  new_description text DEFAULT NULL, new_key_id uuid DEFAULT NULL, new_tags text[] DEFAULT NULL,
  expected_version integer DEFAULT NULL
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

-- Versions: before the encrypting trigger (trigger names sort), keep the stored value when a
-- new plaintext replaces it, and bump the version. Runs as the calling writer.
CREATE FUNCTION vault._archive_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  keep integer := COALESCE(pg_catalog.current_setting('vault.max_versions', true)::integer, 10);
BEGIN
  -- A new value: nonce NULL (plaintext), or secret changed with the nonce left alone.
  -- Re-encryption (key or id change, root key rotation) keeps the version.
  IF NEW.nonce IS NULL
     OR (NEW.secret IS DISTINCT FROM OLD.secret AND NEW.nonce IS NOT DISTINCT FROM OLD.nonce) THEN
    IF keep OPERATOR(pg_catalog.>) 0 THEN
      INSERT INTO vault.secret_versions (secret_id, version, secret, key_id, nonce)
      VALUES (OLD.id, OLD.version, OLD.secret, OLD.key_id, OLD.nonce);
    END IF;
    NEW.version := OLD.version OPERATOR(pg_catalog.+) 1;
    DELETE FROM vault.secret_versions v
     WHERE v.secret_id OPERATOR(pg_catalog.=) OLD.id
       AND v.version OPERATOR(pg_catalog.<=) (OLD.version OPERATOR(pg_catalog.-) keep);
  ELSE
    NEW.version := OLD.version;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER secrets_archive BEFORE UPDATE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault._archive_version();

-- Audit: statement-level triggers with transition tables, one INSERT per statement (creates
-- are noted by a Rust row trigger and written at commit, see src/audit.rs). They run as the
-- writer, so current_role is who made the change (writers need INSERT on vault.audit_log,
-- which vault_admin has).
CREATE FUNCTION vault._audit_secrets() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  -- Creates are audited by the Rust row trigger secrets_audit_create (src/audit.rs): the hot path.
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
    SELECT 'delete', o.id, o.name, pg_catalog.jsonb_build_object('version', o.version)
      FROM old_rows o;
  ELSE
    -- Per row: what changed (the value shows as a new version, never as text).
    WITH changes AS (
      SELECT n.id, n.name, n.version, o.version AS old_version,
             pg_catalog.array_remove(ARRAY[
               CASE WHEN n.version OPERATOR(pg_catalog.<>) o.version THEN 'value' END,
               CASE WHEN n.name IS DISTINCT FROM o.name THEN 'name' END,
               CASE WHEN n.description IS DISTINCT FROM o.description THEN 'description' END,
               CASE WHEN n.tags IS DISTINCT FROM o.tags THEN 'tags' END,
               CASE WHEN n.expires_at IS DISTINCT FROM o.expires_at THEN 'expires_at' END,
               CASE WHEN n.key_id IS DISTINCT FROM o.key_id THEN 'key_id' END], NULL) AS fields,
             n.secret IS DISTINCT FROM o.secret AS rewritten
        FROM new_rows n JOIN old_rows o ON o.id OPERATOR(pg_catalog.=) n.id
    ), logged AS (
      INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
      SELECT 'update', c.id, c.name,
             pg_catalog.jsonb_build_object('changed', c.fields, 'version', c.version)
        FROM changes c
       WHERE c.fields OPERATOR(pg_catalog.<>) '{}' AND c.fields OPERATOR(pg_catalog.<>) '{key_id}'
      RETURNING 1
    )
    -- Re-encryption without a change of value (key rotation, a new key_id): one summary row.
    INSERT INTO vault.audit_log (action, detail)
    SELECT 'reencrypt', pg_catalog.jsonb_build_object('secrets', pg_catalog.count(*))
      FROM changes c
     WHERE c.rewritten AND (c.fields OPERATOR(pg_catalog.=) '{}' OR c.fields OPERATOR(pg_catalog.=) '{key_id}')
    HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER secrets_audit_create AFTER INSERT ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_create();
CREATE TRIGGER secrets_audit_update AFTER UPDATE ON vault.secrets
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_secrets();
CREATE TRIGGER secrets_audit_delete AFTER DELETE ON vault.secrets
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_secrets();

CREATE FUNCTION vault._audit_grants() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
    SELECT 'grant', a.secret_id, s.name, pg_catalog.jsonb_build_object('grantee', a.grantee::text)
      FROM new_rows a LEFT JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
  ELSE
    INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
    SELECT 'revoke', a.secret_id, s.name, pg_catalog.jsonb_build_object('grantee', a.grantee::text)
      FROM old_rows a LEFT JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER secret_acl_audit_insert AFTER INSERT ON vault.secret_acl
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_grants();
CREATE TRIGGER secret_acl_audit_delete AFTER DELETE ON vault.secret_acl
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_grants();

-- The only way to remove audit rows: older than the given age, itself audited.
CREATE FUNCTION vault.purge_audit_log(older_than interval) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  purged bigint;
BEGIN
  IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) interval '0' THEN
    RAISE EXCEPTION 'older_than must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  DELETE FROM vault.audit_log a WHERE a.at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than);
  GET DIAGNOSTICS purged = ROW_COUNT;
  INSERT INTO vault.audit_log (session_role, "current_role", action, detail)
  -- SECURITY DEFINER hides the caller's current role; SET ROLE shows in the role setting.
  VALUES (SESSION_USER,
          CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.=) 'none' THEN SESSION_USER::text
               ELSE pg_catalog.current_setting('role') END,
          'purge_audit_log',
          pg_catalog.jsonb_build_object('older_than', older_than::text, 'rows', purged));
  RETURN purged;
END
$$;
COMMENT ON FUNCTION vault.purge_audit_log(interval) IS 'Delete audit rows older than the interval (the retention function); logs itself.';

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
  INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
  SELECT 'rollback', s.id, s.name,
         pg_catalog.jsonb_build_object('to_version', rollback_secret.to_version, 'version', new_version)
    FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) rollback_secret.secret_id;
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

CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secret_acl
  FOR EACH STATEMENT EXECUTE FUNCTION vault.grants_changed();

CREATE VIEW vault.secret_grants AS
SELECT a.secret_id, s.name AS secret_name, a.grantee, a.granted_by, a.granted_at
  FROM vault.secret_acl a JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
COMMENT ON VIEW vault.secret_grants IS 'Per-secret grants: who may read which secret besides vault_admin.';

CREATE FUNCTION vault.grant_secret(secret_id uuid, grantee regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) grant_secret.secret_id) THEN
    RAISE EXCEPTION 'secret % does not exist', grant_secret.secret_id USING ERRCODE = 'no_data_found';
  END IF;
  IF grant_secret.grantee IS NULL THEN
    RAISE EXCEPTION 'grantee must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO vault.secret_acl (secret_id, grantee)
  VALUES (grant_secret.secret_id, grant_secret.grantee)
  ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION vault.revoke_secret(secret_id uuid, grantee regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
BEGIN
  DELETE FROM vault.secret_acl a
   WHERE a.secret_id OPERATOR(pg_catalog.=) revoke_secret.secret_id
     AND a.grantee OPERATOR(pg_catalog.=) revoke_secret.grantee;
  IF NOT FOUND THEN
    RAISE NOTICE 'role % had no grant on secret %', revoke_secret.grantee, revoke_secret.secret_id;
  END IF;
END
$$;

CREATE FUNCTION vault.create_key(
  name text DEFAULT NULL, key_type text DEFAULT 'aead-det', expires_at timestamptz DEFAULT NULL,
  comment text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  new_id uuid;
  next_num bigint;
BEGIN
  IF create_key.key_type IS NULL THEN
    RAISE EXCEPTION 'key_type must not be NULL' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Use aead-det, aead-ietf or aes256gcm.';
  END IF;
  PERFORM vault._check_key_type(create_key.key_type);
  -- Serialise key creation so two sessions cannot pick the same key_id.
  LOCK TABLE vault.keys IN SHARE ROW EXCLUSIVE MODE;
  SELECT COALESCE(pg_catalog.max(k.key_id) OPERATOR(pg_catalog.+) 1, 0) INTO next_num
    FROM vault.keys k WHERE k.key_context OPERATOR(pg_catalog.=) 'pgsodium'::bytea;
  INSERT INTO vault.keys (name, key_type, key_id, key_context, status, expires_at, comment, root_key_fingerprint)
  VALUES (create_key.name, create_key.key_type, next_num, 'pgsodium', 'valid', create_key.expires_at,
          create_key.comment, vault._loaded_fingerprint())
  RETURNING id INTO new_id;
  RETURN new_id;
END
$$;

CREATE FUNCTION vault.reencrypt_secrets(to_key uuid) RETURNS bigint
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

CREATE FUNCTION vault.rotate_key(new_key_type text DEFAULT NULL) RETURNS uuid
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
  PERFORM vault.reencrypt_secrets(new_id);
  INSERT INTO vault.audit_log (action, detail)
  VALUES ('rotate_key', pg_catalog.jsonb_build_object('old_key', old_id, 'new_key', new_id));
  RETURN new_id;
END
$$;

CREATE VIEW vault.key_status AS
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
  INSERT INTO vault.audit_log (action, detail)
  VALUES ('rotate_root_key', pg_catalog.jsonb_build_object('from', prev, 'to', cur, 'secrets', moved));
  RETURN moved;
END
$$;
COMMENT ON FUNCTION vault.rotate_root_key() IS 'Re-encrypt every secret written under the previous root key for the current one; returns how many.';

CREATE FUNCTION vault.verify_secrets()
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

-- pg_dump keeps the rows of all three tables (the compatibility key's row is merged into the
-- one CREATE EXTENSION makes, by the trigger above).
SELECT pg_catalog.pg_extension_config_dump('vault.secrets', '');
SELECT pg_catalog.pg_extension_config_dump('vault.secret_acl', '');
SELECT pg_catalog.pg_extension_config_dump('vault.secret_versions', '');
SELECT pg_catalog.pg_extension_config_dump('vault.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('vault.keys', '');

-- Privileges: nothing for PUBLIC; vault_reader reads; vault_admin also writes and manages keys.
REVOKE ALL ON SCHEMA vault FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA vault FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA vault FROM PUBLIC;
GRANT USAGE ON SCHEMA vault TO vault_viewer, vault_reader, vault_admin;
-- vault_viewer: metadata and masks. _mask_secret reads key metadata and grants as the caller.
GRANT SELECT ON vault.masked_secrets, vault.keys, vault.secret_acl TO vault_viewer;
GRANT EXECUTE ON FUNCTION vault._mask_secret(uuid, text, bytea, uuid), vault.mask(text),
                          vault.expiring_secrets(interval)
  TO vault_viewer;
-- vault.keys holds metadata only (never key bytes); _decrypt reads it as the calling role.
GRANT SELECT ON vault.decrypted_secrets, vault.secret_grants, vault.secret_acl, vault.keys TO vault_reader;
GRANT EXECUTE ON FUNCTION vault._decrypt(uuid, text, bytea, uuid), vault.read_secret(text),
                          vault.root_key_fingerprint()
  TO vault_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON vault.secrets, vault.keys TO vault_admin;
-- Writers archive the value they replace (trigger runs as the writer); rotation rewrites them.
GRANT SELECT, INSERT, UPDATE, DELETE ON vault.secret_versions TO vault_admin;
GRANT SELECT ON vault.decrypted_secret_versions TO vault_admin;
-- Append-only: writers' audit triggers insert as the writer; no UPDATE or DELETE for anyone.
GRANT SELECT, INSERT ON vault.audit_log TO vault_admin;
GRANT SELECT ON vault.key_status TO vault_admin;
GRANT INSERT, DELETE ON vault.secret_acl TO vault_admin;
GRANT EXECUTE ON FUNCTION vault.create_secret(text, text, text, uuid, text[]),
                          vault.update_secret(uuid, text, text, text, uuid, text[], integer),
                          vault.rollback_secret(uuid, integer), vault.purge_audit_log(interval),
                          vault._rekey(uuid, text, bytea, uuid, uuid),
                          vault.create_key(text, text, timestamptz, text),
                          vault.grant_secret(uuid, regrole), vault.revoke_secret(uuid, regrole),
                          vault.rotate_key(text), vault.reencrypt_secrets(uuid), vault.verify_secrets(),
                          vault._check_key_type(text), vault._loaded_fingerprint(),
                          vault._previous_fingerprint(), vault.rotate_root_key(),
                          vault._rewrap(uuid, text, bytea, uuid),
                          vault._decrypt(uuid, text, bytea, uuid, text, bigint, bytea, text, text)
  TO vault_admin;
