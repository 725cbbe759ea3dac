-- vault_ext: what pg_dump keeps, and privileges. Runs last.

-- pg_dump keeps the rows of all three tables (the compatibility key's row is merged into the
-- one CREATE EXTENSION makes, by the trigger above).
SELECT pg_catalog.pg_extension_config_dump('vault.secrets', '');
SELECT pg_catalog.pg_extension_config_dump('vault.secret_acl', '');
SELECT pg_catalog.pg_extension_config_dump('vault.secret_versions', '');
SELECT pg_catalog.pg_extension_config_dump('vault.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('vault.keys', '');
SELECT pg_catalog.pg_extension_config_dump('vault.api_token_hashes', '');
SELECT pg_catalog.pg_extension_config_dump('vault.api_token_uses', '');

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
-- Versions are kept and pruned by vault_ext as the owner (versions.sql); key rotation rewrites
-- their ciphertext (a guard trigger allows nothing else; UPDATE on the table also lets rotation
-- lock it).
GRANT SELECT, UPDATE ON vault.secret_versions TO vault_admin;
GRANT SELECT ON vault.decrypted_secret_versions TO vault_admin;
-- Audit rows are written by vault_ext's code as the owner: vault_admin only reads them.
GRANT SELECT ON vault.audit_log TO vault_admin;
GRANT SELECT ON vault.key_status TO vault_admin;
GRANT INSERT, DELETE ON vault.secret_acl TO vault_admin;
GRANT EXECUTE ON FUNCTION vault.create_secret(text, text, text, uuid, text[], boolean),
                          vault.update_secret(uuid, text, text, text, uuid, text[], integer, boolean),
                          vault.rollback_secret(uuid, integer), vault.purge_audit_log(interval),
                          vault._rekey(uuid, text, bytea, uuid, uuid),
                          vault.create_key(text, text, timestamptz, text),
                          vault.grant_secret(uuid, regrole, text), vault.revoke_secret(uuid, regrole),
                          vault.rotate_key(text, boolean), vault.reencrypt_secrets(uuid), vault.verify_secrets(),
                          vault._check_key_type(text), vault._loaded_fingerprint(),
                          vault._previous_fingerprint(), vault.rotate_root_key(),
                          vault._rewrap(uuid, text, bytea, uuid),
                          vault._decrypt(uuid, text, bytea, uuid, text, bigint, bytea, text, text),
                          vault._audit_rollback(uuid, integer), vault._audit_rotate_key(uuid, uuid),
                          vault._audit_rotate_root_key(bigint), vault._rewrapped(uuid, bytea)
  TO vault_admin;
-- Migration from supabase_vault (the caller also needs SELECT on the source table).
GRANT EXECUTE ON FUNCTION vault.migrate_from(regclass, boolean), vault._supabase_row_kind(uuid, text, bytea)
  TO vault_admin;
-- API tokens: vault_admin creates, lists and revokes them; the table itself is the owner's.
GRANT SELECT ON vault.api_tokens TO vault_admin;
GRANT EXECUTE ON FUNCTION vault.create_api_token(text, regrole, timestamptz),
                          vault._create_api_token(text, oid, timestamptz), vault.revoke_api_token(text)
  TO vault_admin;
-- Any role may check a token (a server's login role needs no vault rights of its own): the
-- answer is a role name only for a live token, which its holder knows anyway.
GRANT EXECUTE ON FUNCTION vault.api_token_role(text), vault.api_token_self(text) TO PUBLIC;
-- GRANT and REVOKE ... ALL FUNCTIONS do not cover procedures: named here.
REVOKE ALL ON PROCEDURE vault.reencrypt_in_batches(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE vault.reencrypt_in_batches(uuid, integer) TO vault_admin;
