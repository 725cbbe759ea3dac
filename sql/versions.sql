-- vault_ext: earlier values of secrets (vault.secret_versions), their view and rollback.

-- Versions: before the encrypting trigger (trigger names sort), keep the stored value when a
-- new plaintext replaces it, and bump the version. Runs as the calling writer.
CREATE FUNCTION vault._archive_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  keep integer := COALESCE(pg_catalog.current_setting('vault.max_versions', true)::integer, 10);
BEGIN
  -- A new value: nonce NULL (plaintext), secret changed with the nonce left alone, or
  -- ciphertext (secret and/or nonce) that vault._rewrap did not make for this row in this
  -- transaction, e.g. another row's copied in: the value it replaces is kept.
  -- Re-encryption (key or id change, root key rotation) keeps the version.
  IF NEW.nonce IS NULL
     OR (NEW.secret IS DISTINCT FROM OLD.secret AND NEW.nonce IS NOT DISTINCT FROM OLD.nonce)
     OR ((NEW.secret IS DISTINCT FROM OLD.secret OR NEW.nonce IS DISTINCT FROM OLD.nonce)
         AND NOT vault._rewrapped(NEW.id, NEW.nonce)) THEN
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
