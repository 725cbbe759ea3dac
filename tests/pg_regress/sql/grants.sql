-- Per-secret grants. A secret with grants is readable only by vault_admin members, superusers
-- and the granted roles (and roles inheriting from them); other readers see decrypted_secret
-- NULL, get 42501 from read_secret, and cannot get around it by calling _decrypt directly.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE ROLE regress_team NOLOGIN IN ROLE vault_reader;
CREATE ROLE regress_member LOGIN IN ROLE regress_team;
CREATE ROLE regress_other LOGIN IN ROLE vault_reader;
CREATE ROLE regress_second NOLOGIN IN ROLE vault_reader;
CREATE ROLE regress_vadmin LOGIN IN ROLE vault_admin;
INSERT INTO vault.secrets (id, name, secret) VALUES
  ('00000000-0000-4000-8000-0000000000a1', 'open', 'open value'),
  ('00000000-0000-4000-8000-0000000000a2', 'team_only', 'team value');

SET ROLE regress_vadmin;
SELECT vault.grant_secret(id, 'regress_team') FROM vault.secrets WHERE name = 'team_only';
SELECT vault.grant_secret(id, 'regress_second') FROM vault.secrets WHERE name = 'team_only';
SELECT vault.grant_secret(id, 'regress_team') FROM vault.secrets WHERE name = 'team_only'; -- again: no-op
SELECT vault.grant_secret('11111111-1111-1111-1111-111111111111', 'regress_team');
\echo :SQLSTATE
SELECT vault.grant_secret(id, '-') FROM vault.secrets WHERE name = 'team_only'; -- OID 0: no role
\echo :SQLSTATE
SELECT secret_name, grantee, granted_by FROM vault.secret_grants ORDER BY grantee::text;
SELECT name, decrypted_secret FROM vault.decrypted_secrets ORDER BY name; -- admins see all
RESET ROLE;

SET ROLE regress_other;
SELECT name, decrypted_secret FROM vault.decrypted_secrets ORDER BY name;
SELECT vault.read_secret('open');
SELECT vault.read_secret('team_only');
\echo :SQLSTATE
-- The internal function checks too: passing the row's own columns gives NULL.
SELECT vault._decrypt(s.id, s.secret, s.nonce, s.key_id) AS direct_call
  FROM vault.decrypted_secrets s WHERE s.name = 'team_only';
-- Another row's ciphertext under a readable id does not decrypt: the id is authenticated.
SELECT vault._decrypt(o.id, t.secret, t.nonce, t.key_id)
  FROM vault.decrypted_secrets o, vault.decrypted_secrets t WHERE o.name = 'open' AND t.name = 'team_only';
\echo :SQLSTATE
SELECT vault.grant_secret(id, 'regress_other') FROM vault.decrypted_secrets WHERE name = 'team_only';
\echo :SQLSTATE
INSERT INTO vault.secret_acl (secret_id, grantee) SELECT id, 'regress_other' FROM vault.decrypted_secrets WHERE name = 'team_only';
\echo :SQLSTATE
RESET ROLE;

SET ROLE regress_team;
SELECT name, decrypted_secret FROM vault.decrypted_secrets ORDER BY name;
RESET ROLE;
SET ROLE regress_member;
SELECT vault.read_secret('team_only') AS member_of_grantee;
RESET ROLE;

-- Revoking one grantee: it loses access, the other keeps it.
SELECT vault.revoke_secret(id, 'regress_team') FROM vault.secrets WHERE name = 'team_only';
SELECT vault.revoke_secret(id, 'regress_team') FROM vault.secrets WHERE name = 'team_only';
SET ROLE regress_member;
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'team_only';
RESET ROLE;
SET ROLE regress_second;
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'team_only';
RESET ROLE;

-- Who the caller is is checked on every call: a superuser read earlier in the transaction does
-- not carry over to a role set later.
BEGIN;
SELECT decrypted_secret AS as_superuser FROM vault.decrypted_secrets WHERE name = 'team_only';
SET LOCAL ROLE regress_other;
SELECT decrypted_secret AS as_other FROM vault.decrypted_secrets WHERE name = 'team_only';
ROLLBACK;

-- Within one transaction a new grant takes effect at once.
BEGIN;
SET LOCAL ROLE regress_other;
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'team_only';
RESET ROLE;
SELECT vault.grant_secret(id, 'regress_other') FROM vault.secrets WHERE name = 'team_only';
SET LOCAL ROLE regress_other;
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'team_only';
ROLLBACK;

-- Deleting the secret deletes its grants.
DELETE FROM vault.secrets WHERE name = 'team_only';
SELECT count(*) AS grants_left FROM vault.secret_acl;
DELETE FROM vault.secrets WHERE name = 'open';
DROP ROLE regress_member, regress_team, regress_other, regress_second, regress_vadmin;
