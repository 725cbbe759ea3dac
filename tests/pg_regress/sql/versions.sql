-- Versions: each change of a value keeps the previous ciphertext; rollback; check-and-set;
-- vault.max_versions; key rotation and verification cover versions.
\set VERBOSITY terse
INSERT INTO vault.secrets (id, name, secret) VALUES ('00000000-0000-4000-8000-0000000000b1', 'versioned', 'one');
SELECT vault.update_secret(id, 'two') FROM vault.secrets WHERE name = 'versioned';
SELECT vault.update_secret(id, 'three') FROM vault.secrets WHERE name = 'versioned';
UPDATE vault.secrets SET secret = 'four' WHERE name = 'versioned';  -- direct UPDATE too
-- Metadata changes and re-encryption keep the version.
SELECT vault.update_secret(id, NULL, NULL, 'described', NULL, ARRAY['t']) FROM vault.secrets WHERE name = 'versioned';
SELECT s.name, s.version, d.decrypted_secret FROM vault.decrypted_secrets d JOIN vault.secrets s USING (id) WHERE s.name = 'versioned';
SELECT version, decrypted_secret, created_by = current_user AS by_me
  FROM vault.decrypted_secret_versions WHERE name = 'versioned' ORDER BY version;
-- Plaintext is never stored in versions either.
SELECT count(*) AS plaintext_versions FROM vault.secret_versions WHERE secret IN ('one', 'two', 'three');
-- Rollback writes the old value as a new version.
SELECT vault.rollback_secret(id, 1) AS new_version FROM vault.secrets WHERE name = 'versioned';
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'versioned';
SELECT string_agg(version || '=' || decrypted_secret, ',' ORDER BY version) AS kept
  FROM vault.decrypted_secret_versions WHERE name = 'versioned';
SELECT vault.rollback_secret(id, 42) FROM vault.secrets WHERE name = 'versioned';
\echo :SQLSTATE
-- Check-and-set.
SELECT vault.update_secret(id, 'stale write', expected_version => 3) FROM vault.secrets WHERE name = 'versioned';
\echo :SQLSTATE
SELECT vault.update_secret(id, 'fresh write', expected_version => 5) FROM vault.secrets WHERE name = 'versioned';
SELECT version, decrypted_secret FROM vault.decrypted_secrets d JOIN vault.secrets USING (id) WHERE d.name = 'versioned';
SELECT vault.update_secret('00000000-0000-4000-8000-000000000000', 'x', expected_version => 1);
\echo :SQLSTATE
-- vault.max_versions bounds what is kept.
SET vault.max_versions = 2;
SELECT vault.update_secret(id, 'seven') FROM vault.secrets WHERE name = 'versioned';
SELECT string_agg(version::text, ',' ORDER BY version) AS kept FROM vault.secret_versions;
SET vault.max_versions = 0;
SELECT vault.update_secret(id, 'eight') FROM vault.secrets WHERE name = 'versioned';
SELECT count(*) AS kept FROM vault.secret_versions;
RESET vault.max_versions;
SELECT vault.update_secret(id, 'nine') FROM vault.secrets WHERE name = 'versioned';
SELECT vault.update_secret(id, 'ten') FROM vault.secrets WHERE name = 'versioned';
-- Key rotation re-encrypts kept versions: new key, new nonces, same values.
CREATE TEMP TABLE before_rotation AS SELECT version, nonce FROM vault.secret_versions;
SELECT vault.rotate_key() IS NOT NULL AS rotated;
SELECT count(*) AS on_old_key FROM vault.secret_versions v
  WHERE v.key_id IS DISTINCT FROM (SELECT id FROM vault.keys WHERE status = 'default');
SELECT count(*) AS same_nonce FROM vault.secret_versions v JOIN before_rotation b USING (version) WHERE v.nonce = b.nonce;
SELECT string_agg(version || '=' || decrypted_secret, ',' ORDER BY version) AS kept
  FROM vault.decrypted_secret_versions WHERE name = 'versioned';
SELECT status, detail FROM vault.verify_secrets() ORDER BY detail NULLS FIRST;
-- A reader sees no versions.
CREATE ROLE regress_vreader IN ROLE vault_reader;
SET ROLE regress_vreader;
SELECT count(*) FROM vault.decrypted_secret_versions;
\echo :SQLSTATE
RESET ROLE;
-- Deleting the secret deletes its versions.
DELETE FROM vault.secrets WHERE name = 'versioned';
SELECT count(*) AS versions_left FROM vault.secret_versions;
DROP ROLE regress_vreader;
-- A key still used by a secret cannot be deleted (key_id is not a foreign key; a trigger guards).
SELECT vault.create_secret('guarded', 'guarded', '', vault.create_key('guard_key')) IS NOT NULL AS created;
\set VERBOSITY sqlstate
DELETE FROM vault.keys WHERE name = 'guard_key';
\echo :SQLSTATE
TRUNCATE vault.keys;
\echo :SQLSTATE
UPDATE vault.keys SET id = gen_random_uuid() WHERE name = 'guard_key';
\echo :SQLSTATE
\set VERBOSITY terse
UPDATE vault.keys SET comment = 'still fine' WHERE name = 'guard_key';
SELECT vault.reencrypt_secrets((SELECT id FROM vault.keys WHERE status = 'default')) AS moved;
DELETE FROM vault.keys WHERE name = 'guard_key';
SELECT count(*) AS guard_key_left FROM vault.keys WHERE name = 'guard_key';
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'guarded';
DELETE FROM vault.secrets;
