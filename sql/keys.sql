-- vault_ext: the keys table's own rows and guards. Runs after the Rust functions it uses.

-- The compatibility key: what vault.secrets.key_id IS NULL means (supabase_vault's only key).
INSERT INTO vault.keys (id, name, key_type, key_id, key_context, status, comment, root_key_fingerprint)
VALUES ('00000000-0000-0000-0000-000000000000', 'default', 'aead-det', 0, 'pgsodium', 'default',
        'supabase_vault-compatible key (key_id 0, context pgsodium)', vault._loaded_fingerprint());

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
