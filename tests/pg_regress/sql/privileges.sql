-- SPEC §4: nothing for PUBLIC; vault_reader reads; vault_admin writes and manages keys.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- :SQLSTATE, not :LAST_ERROR_SQLSTATE: it reads 00000 after a statement that succeeded.
SELECT vault.create_secret('privileged value', 'priv') IS NOT NULL AS created;
CREATE ROLE regress_nobody LOGIN;
CREATE ROLE regress_reader LOGIN IN ROLE vault_reader;
CREATE ROLE regress_admin LOGIN IN ROLE vault_admin;

SET ROLE regress_nobody;
SELECT count(*) FROM vault.secrets;
\echo :SQLSTATE
SELECT count(*) FROM vault.decrypted_secrets;
\echo :SQLSTATE
SELECT count(*) FROM vault.keys;
\echo :SQLSTATE
SELECT vault.read_secret('priv');
\echo :SQLSTATE
SELECT vault.create_secret('x');
\echo :SQLSTATE
SELECT vault.update_secret('11111111-1111-1111-1111-111111111111', 'x');
\echo :SQLSTATE
SELECT vault.create_key();
\echo :SQLSTATE
SELECT vault.root_key_fingerprint() IS NOT NULL;
\echo :SQLSTATE
SELECT vault._decrypt(NULL, NULL, NULL, NULL);
\echo :SQLSTATE
SELECT vault._decrypt(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
\echo :SQLSTATE
INSERT INTO vault.secrets (secret) VALUES ('x');
\echo :SQLSTATE
RESET ROLE;

SET ROLE regress_reader;
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'priv';
SELECT vault.read_secret('priv');
SELECT length(vault.root_key_fingerprint()) AS fingerprint_len;
SELECT vault.create_secret('x');
\echo :SQLSTATE
SELECT vault.update_secret((SELECT id FROM vault.decrypted_secrets WHERE name = 'priv'), 'x');
\echo :SQLSTATE
INSERT INTO vault.secrets (secret) VALUES ('x');
\echo :SQLSTATE
UPDATE vault.secrets SET secret = 'x';
\echo :SQLSTATE
DELETE FROM vault.secrets;
\echo :SQLSTATE
SELECT count(*) FROM vault.secrets;
\echo :SQLSTATE
SELECT count(*) FROM vault.keys;
\echo :SQLSTATE
SELECT vault.create_key();
\echo :SQLSTATE
-- Internal functions a reader has no use for.
SELECT vault._check_key_type('aead-det');
\echo :SQLSTATE
SELECT vault._loaded_fingerprint();
\echo :SQLSTATE
SELECT vault.secrets_encrypt();
\echo :SQLSTATE
SELECT vault.keys_changed();
\echo :SQLSTATE
SELECT vault.grants_changed();
\echo :SQLSTATE
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

-- Every grant to a role other than the owner, after CREATE EXTENSION (the README's table).
SELECT c.relname, a.grantee::regrole, string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privileges
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'vault'::regnamespace AND a.grantee <> c.relowner
 GROUP BY 1, 2 ORDER BY 1, a.grantee::regrole::text;
SELECT p.oid::regprocedure AS function, string_agg(a.grantee::regrole::text, ', ' ORDER BY a.grantee::regrole::text) AS execute
  FROM pg_proc p LEFT JOIN LATERAL aclexplode(p.proacl) a ON a.grantee <> p.proowner
 WHERE p.pronamespace = 'vault'::regnamespace
 GROUP BY 1 ORDER BY p.oid::regprocedure::text;
SELECT a.grantee::regrole, a.privilege_type
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'vault' AND a.grantee <> n.nspowner ORDER BY a.grantee::regrole::text;

DROP ROLE regress_nobody, regress_reader, regress_admin;
