-- vault_ext: earlier values of secrets (vault.secret_versions), their view and rollback.

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
