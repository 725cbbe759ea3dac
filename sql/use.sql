-- vault_ext: using a secret without reading it (SPEC §11). Role vault_user, non-exportable
-- secrets, the kinds of the keys vault_ext makes, and the privileges of src/api/usage.rs.

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
