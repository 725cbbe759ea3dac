-- The audit trail also covers id changes, ciphertext copied in from another row, and every
-- change to vault.keys; a key in use keeps its key_type, key_id and key_context; TRUNCATE
-- vault.secrets works as in supabase_vault, takes grants and versions along, and is audited.
\set VERBOSITY terse
CREATE ROLE regress_guard IN ROLE vault_admin;
CREATE ROLE regress_guard_team;
SET ROLE regress_guard;
INSERT INTO vault.secrets (id, name, secret) VALUES
  ('00000000-0000-4000-8000-0000000000d1', 'guard_a', 'GUARD-VALUE-A1'),
  ('00000000-0000-4000-8000-0000000000d2', 'guard_b', 'GUARD-VALUE-B');
SELECT vault.grant_secret('00000000-0000-4000-8000-0000000000d1', 'regress_guard_team');
SELECT vault.update_secret('00000000-0000-4000-8000-0000000000d1', 'GUARD-VALUE-A2');
-- A change of id is audited with the old id; grants and versions follow it.
UPDATE vault.secrets SET id = '00000000-0000-4000-8000-0000000000d3' WHERE id = '00000000-0000-4000-8000-0000000000d1';
SELECT "current_role", action, secret_id, detail FROM vault.audit_log
 WHERE secret_name = 'guard_a' AND action = 'update' ORDER BY at;
SELECT secret_id FROM vault.secret_acl WHERE grantee = 'regress_guard_team'::regrole;
SELECT secret_id, version FROM vault.secret_versions WHERE secret_id = '00000000-0000-4000-8000-0000000000d3';
-- Ciphertext copied in from another row (here guard_b's kept version 1, bypassing
-- rollback_secret) changes the value: the replaced value is kept as a version, and audited.
SELECT vault.update_secret('00000000-0000-4000-8000-0000000000d2', 'GUARD-VALUE-B2');
UPDATE vault.secrets s SET (secret, nonce) =
       (SELECT v.secret, v.nonce FROM vault.secret_versions v WHERE v.secret_id = s.id AND v.version = 1)
 WHERE s.id = '00000000-0000-4000-8000-0000000000d2';
SELECT s.version, d.decrypted_secret FROM vault.secrets s JOIN vault.decrypted_secrets d USING (id) WHERE s.name = 'guard_b';
SELECT version, decrypted_secret FROM vault.decrypted_secret_versions WHERE name = 'guard_b' ORDER BY version;
SELECT "current_role", action, detail FROM vault.audit_log
 WHERE secret_name = 'guard_b' AND action = 'update' ORDER BY at;
-- Root key rotation's own re-encryption is not a new value (see rotation.sql); nor is a key change.
SELECT vault.reencrypt_secrets((SELECT id FROM vault.keys WHERE status = 'default')) >= 0 AS moved;
SELECT version FROM vault.secrets WHERE name = 'guard_b';
-- vault.keys: every change is audited; key_type, key_id and key_context of a key in use are
-- refused (its secrets would no longer decrypt), other changes are allowed.
SELECT vault.create_key('guard_used') IS NOT NULL AS created;
SELECT vault.create_key('guard_free') IS NOT NULL AS created;
SELECT vault.create_secret('GUARD-VALUE-K', 'guard_k', '', (SELECT id FROM vault.keys WHERE name = 'guard_used')) IS NOT NULL AS created;
\set VERBOSITY sqlstate
UPDATE vault.keys SET key_context = 'othercon' WHERE name = 'guard_used';
\echo :LAST_ERROR_SQLSTATE
UPDATE vault.keys SET key_type = 'aead-ietf' WHERE name = 'guard_used';
\echo :LAST_ERROR_SQLSTATE
UPDATE vault.keys SET key_id = key_id + 1000 WHERE name = 'guard_used';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
UPDATE vault.keys SET status = 'expired', expires_at = now() + interval '1 year' WHERE name = 'guard_used';
UPDATE vault.keys SET key_context = 'othercon', key_type = 'aead-ietf' WHERE name = 'guard_free';
DELETE FROM vault.keys WHERE name = 'guard_free';
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'guard_k';
SELECT "current_role", action, detail->>'name' AS name, detail->'changed' AS changed,
       (detail->'from') - 'expires_at'::text AS "from", (detail->'to') - 'expires_at'::text AS "to"
  FROM vault.audit_log WHERE action LIKE '%key%' AND at > now() - interval '1 hour'
   AND detail->>'key' IN (SELECT a.detail->>'key' FROM vault.audit_log a
                           WHERE a.action = 'create_key' AND a.detail->>'name' LIKE 'guard%')
 ORDER BY at;
-- TRUNCATE vault.secrets (the owner's right, as in supabase_vault): grants and kept versions go
-- with it, in one audited statement.
RESET ROLE;
SELECT count(*) AS n_secrets FROM vault.secrets \gset
SELECT count(*) AS n_grants FROM vault.secret_acl \gset
SELECT count(*) AS n_versions FROM vault.secret_versions \gset
SELECT :n_grants > 0 AS had_grants, :n_versions > 0 AS had_versions;
TRUNCATE vault.secrets;
SELECT (SELECT count(*) FROM vault.secrets) AS secrets, (SELECT count(*) FROM vault.secret_acl) AS grants,
       (SELECT count(*) FROM vault.secret_versions) AS versions;
SELECT "current_role", action, detail->>'secrets' = :'n_secrets' AS secrets_ok,
       detail->>'grants' = :'n_grants' AS grants_ok, detail->>'versions' = :'n_versions' AS versions_ok
  FROM vault.audit_log WHERE action = 'truncate';
-- Unqualified, inside a function, and with the companions listed: the same.
SELECT vault.create_secret('GUARD-VALUE-T', 'guard_t') IS NOT NULL AS created;
SET search_path = vault, public;
TRUNCATE secrets;
RESET search_path;
SELECT vault.create_secret('GUARD-VALUE-T', 'guard_t') IS NOT NULL AS created;
DO $$ BEGIN EXECUTE 'TRUNCATE vault.secrets, vault.secret_acl'; END $$;
SELECT count(*) AS secrets FROM vault.secrets;
SELECT count(*) AS truncates FROM vault.audit_log WHERE action = 'truncate';
-- A table of the user's own that references vault.secrets still refuses, as PostgreSQL does.
CREATE TABLE regress_guard_ref (s uuid REFERENCES vault.secrets (id));
TRUNCATE vault.secrets;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE regress_guard_ref;
-- vault_admin has no TRUNCATE privilege (nor had it before).
SET ROLE regress_guard;
TRUNCATE vault.secrets;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Secrets are created and granted again as before.
SELECT vault.grant_secret(vault.create_secret('GUARD-VALUE-N', 'guard_n'), 'regress_guard_team');
SELECT count(*) AS grants FROM vault.secret_grants WHERE secret_name = 'guard_n';
DELETE FROM vault.secrets WHERE name = 'guard_n';
-- Kept versions, grants and timestamps cannot be rewritten without a trace (issue 26, finding 6).
SET ROLE regress_guard;
\set hid '00000000-0000-4000-8000-0000000000e1'
INSERT INTO vault.secrets (id, name, secret) VALUES (:'hid', 'guard_h', 'GUARD-HIST-1');
SELECT vault.update_secret(:'hid', 'GUARD-HIST-2');
SELECT version, created_by, created_at > now() - interval '1 hour' AS recent
  FROM vault.secret_versions WHERE secret_id = :'hid';
-- A version's author, time and number are vault_ext's (42501), whatever vault_admin says.
UPDATE vault.secret_versions SET created_by = 'postgres' WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
UPDATE vault.secret_versions SET created_at = '2001-01-01' WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
UPDATE vault.secret_versions SET version = 7 WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
-- Plaintext (no nonce, or a made-up one) never becomes a version (22023); nor does a version
-- get inserted or deleted by vault_admin (42501).
UPDATE vault.secret_versions SET secret = 'GUARD-PLAIN', nonce = NULL WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
UPDATE vault.secret_versions SET secret = encode('GUARD-PLAIN-0123456789abcdefghijklmnop', 'base64') WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
INSERT INTO vault.secret_versions (secret_id, version, secret, nonce) VALUES (:'hid', 9, 'GUARD-PLAIN', NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO vault.secret_versions (secret_id, version, secret, nonce, created_by, created_at)
SELECT secret_id, 9, secret, nonce, 'postgres', '2001-01-01' FROM vault.secret_versions WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM vault.secret_versions WHERE secret_id = :'hid';
\echo :LAST_ERROR_SQLSTATE
SELECT version, decrypted_secret FROM vault.decrypted_secret_versions WHERE secret_id = :'hid';
-- Key rotation still rewrites versions (ciphertext that decrypts for the secret), rollback and
-- pruning still work.
SELECT vault.create_key('guard_rot') AS rot \gset
SELECT vault.reencrypt_secrets(:'rot') >= 1 AS moved;
SELECT v.key_id = :'rot' AS on_new_key, d.decrypted_secret
  FROM vault.secret_versions v JOIN vault.decrypted_secret_versions d USING (secret_id, version)
 WHERE v.secret_id = :'hid';
SELECT vault.reencrypt_secrets((SELECT id FROM vault.keys WHERE status = 'default')) >= 1 AS moved_back;
SELECT vault.rollback_secret(:'hid', 1) AS new_version;
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE id = :'hid';
RESET ROLE;
SET vault.max_versions = 1;
SET ROLE regress_guard;
SELECT vault.update_secret(:'hid', 'GUARD-HIST-4');
SELECT version, created_by FROM vault.secret_versions WHERE secret_id = :'hid' ORDER BY version;
RESET ROLE;
RESET vault.max_versions;
-- A kept version may be re-encrypted, never given a value the secret did not hold there: a
-- rolled-back savepoint makes valid ciphertext of any value for this id (second review).
SET ROLE regress_guard;
BEGIN;
SAVEPOINT s;
UPDATE vault.secrets SET secret = 'FORGED-never-held' WHERE id = :'hid'
RETURNING secret AS forged_secret, nonce AS forged_nonce \gset
ROLLBACK TO s;
UPDATE vault.secret_versions SET secret = :'forged_secret', nonce = :'forged_nonce'
 WHERE secret_id = :'hid' AND version = (SELECT min(version) FROM vault.secret_versions WHERE secret_id = :'hid');
ROLLBACK;
SELECT count(*) AS forged FROM vault.decrypted_secret_versions WHERE decrypted_secret = 'FORGED-never-held';
RESET ROLE;
-- A grant's grantor and time are the inserting role's and now, whatever the INSERT says.
SET ROLE regress_guard;
INSERT INTO vault.secret_acl (secret_id, grantee, granted_by, granted_at)
VALUES (:'hid', 'regress_guard_team', 'postgres', '2001-01-01');
SELECT grantee, granted_by, granted_at > now() - interval '1 hour' AS recent
  FROM vault.secret_grants WHERE secret_id = :'hid';
-- An edit of a secret's timestamps is audited (which fields, never a value).
UPDATE vault.secrets SET created_at = '2001-01-01' WHERE id = :'hid';
UPDATE vault.secrets SET updated_at = '2001-01-02' WHERE id = :'hid';
UPDATE vault.secrets SET description = 'touched', updated_at = now() WHERE id = :'hid';
RESET ROLE;
SELECT "current_role", action, detail->'changed' AS changed FROM vault.audit_log
 WHERE secret_id = :'hid' AND action = 'update' ORDER BY at;
DELETE FROM vault.secrets WHERE id = :'hid';
DELETE FROM vault.keys WHERE id = :'rot';
DROP ROLE regress_guard, regress_guard_team;
