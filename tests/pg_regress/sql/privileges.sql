-- SPEC §4: nothing for PUBLIC; vault_reader reads; vault_admin writes and manages keys.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT vault.create_secret('privileged value', 'priv') IS NOT NULL AS created;
CREATE ROLE regress_nobody LOGIN;
CREATE ROLE regress_reader LOGIN IN ROLE vault_reader;
CREATE ROLE regress_admin LOGIN IN ROLE vault_admin;

SET ROLE regress_nobody;
SELECT count(*) FROM vault.secrets;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM vault.decrypted_secrets;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM vault.keys;
\echo :LAST_ERROR_SQLSTATE
SELECT vault.read_secret('priv');
\echo :LAST_ERROR_SQLSTATE
SELECT vault.create_secret('x');
\echo :LAST_ERROR_SQLSTATE
SELECT vault.update_secret('11111111-1111-1111-1111-111111111111', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT vault.create_key();
\echo :LAST_ERROR_SQLSTATE
SELECT vault.root_key_fingerprint() IS NOT NULL;
\echo :LAST_ERROR_SQLSTATE
SELECT vault._decrypt(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO vault.secrets (secret) VALUES ('x');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SET ROLE regress_reader;
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'priv';
SELECT vault.read_secret('priv');
SELECT length(vault.root_key_fingerprint()) AS fingerprint_len;
SELECT vault.create_secret('x');
\echo :LAST_ERROR_SQLSTATE
SELECT vault.update_secret((SELECT id FROM vault.decrypted_secrets WHERE name = 'priv'), 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO vault.secrets (secret) VALUES ('x');
\echo :LAST_ERROR_SQLSTATE
UPDATE vault.secrets SET secret = 'x';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM vault.secrets;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM vault.secrets;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM vault.keys;
\echo :LAST_ERROR_SQLSTATE
SELECT vault.create_key();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SET ROLE regress_admin;
SELECT vault.create_secret('admin value', 'by_admin') IS NOT NULL AS created;
SELECT vault.update_secret(id, 'admin value 2') FROM vault.secrets WHERE name = 'by_admin';
INSERT INTO vault.secrets (name, secret) VALUES ('admin_direct', 'direct');
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name IN ('by_admin', 'admin_direct') ORDER BY name;
SELECT vault.create_key('admin key') IS NOT NULL AS key_created;
DELETE FROM vault.secrets WHERE name IN ('by_admin', 'admin_direct');
SELECT count(*) FROM vault.secrets WHERE name LIKE 'admin%' OR name = 'by_admin';
RESET ROLE;

-- The ACL of every object after CREATE EXTENSION.
SELECT c.relname, c.relacl FROM pg_class c
 WHERE c.relnamespace = 'vault'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY c.relname;
SELECT p.oid::regprocedure AS function, p.proacl FROM pg_proc p
 WHERE p.pronamespace = 'vault'::regnamespace ORDER BY p.proname;
SELECT nspacl FROM pg_namespace WHERE nspname = 'vault';

DROP ROLE regress_nobody, regress_reader, regress_admin;
