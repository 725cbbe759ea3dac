-- API tokens (SPEC §9, issue 18): created once, only a hash stored, checked in constant time by
-- vault.api_token_role(), revocable, expiring, audited.
\set VERBOSITY default
CREATE ROLE regress_tok_admin LOGIN IN ROLE vault_admin;
CREATE ROLE regress_tok_service NOLOGIN IN ROLE vault_reader;
CREATE ROLE regress_tok_reader LOGIN IN ROLE vault_reader;
CREATE ROLE regress_tok_nobody LOGIN;
CREATE ROLE regress_tok_super NOLOGIN SUPERUSER;
CREATE ROLE regress_tok_sneaky NOLOGIN IN ROLE regress_tok_super;
CREATE ROLE regress_tok_shell NOLOGIN IN ROLE pg_execute_server_program;
CREATE ROLE regress_tok_creator NOLOGIN CREATEROLE;
CREATE ROLE regress_tok_stranger NOLOGIN IN ROLE vault_reader;
-- A token carries no more than its creator could use: the admin is a member of the roles.
GRANT regress_tok_service, regress_tok_reader, regress_tok_sneaky, regress_tok_shell, regress_tok_creator
  TO regress_tok_admin;
SET ROLE regress_tok_admin;
SELECT vault.create_api_token('ci-deploy', 'regress_tok_service') AS tok \gset
-- 'pgv_' and 43 base64url characters (256 bits).
SELECT length(:'tok') AS length, :'tok' ~ '^pgv_[A-Za-z0-9_-]{43}$' AS shape;
SELECT vault.api_token_role(:'tok') AS role;
SELECT name, role, created_by, expires_at, last_used_at IS NOT NULL AS used, revoked_at FROM vault.api_tokens;
-- Another token differs; malformed, unknown and NULL tokens have no role.
SELECT vault.create_api_token('cron', 'regress_tok_service', now() + interval '1 day') AS tok2 \gset
SELECT :'tok' <> :'tok2' AS differ;
SELECT vault.api_token_role(x) AS role
  FROM (VALUES (NULL), (''), ('pgv_'), (left(:'tok', 46)), (:'tok' || 'A'), (upper(:'tok')),
               ('pgv_' || repeat('A', 43)), (replace(:'tok', 'pgv_', 'PGV_'))) v(x);
-- Bad arguments.
SELECT vault.create_api_token('ci-deploy', 'regress_tok_service');
\echo :SQLSTATE
SELECT vault.create_api_token('', 'regress_tok_service');
\echo :SQLSTATE
SELECT vault.create_api_token(repeat('n', 129), 'regress_tok_service');
\echo :SQLSTATE
SELECT vault.create_api_token(E'two\nlines', 'regress_tok_service');
\echo :SQLSTATE
SELECT vault.create_api_token(E'ci-deploy\u200b', 'regress_tok_service');
\echo :SQLSTATE
SELECT vault.create_api_token(NULL, 'regress_tok_service');
\echo :SQLSTATE
SELECT vault.create_api_token('no-role', NULL);
\echo :SQLSTATE
SELECT vault.create_api_token('root', 'regress_tok_super');
\echo :SQLSTATE
-- ... nor a role that can become one, or reach the server's files and programs, or make roles.
SELECT vault.create_api_token('sneaky', 'regress_tok_sneaky');
\echo :SQLSTATE
SELECT vault.create_api_token('shell', 'regress_tok_shell');
\echo :SQLSTATE
SELECT vault.create_api_token('creator', 'regress_tok_creator');
\echo :SQLSTATE
SELECT vault.create_api_token('other', 'regress_tok_stranger');
\echo :SQLSTATE
SELECT vault.create_api_token('past', 'regress_tok_service', now() - interval '1 second');
\echo :SQLSTATE
SELECT vault.create_api_token('public', 0::oid::regrole);
\echo :SQLSTATE
SELECT vault.revoke_api_token('nonesuch');
\echo :SQLSTATE
-- The table is the owner's: not even vault_admin reads the hashes.
SELECT count(*) FROM vault.api_token_hashes;
\echo :SQLSTATE
RESET ROLE;
-- Only SHA-256 of the token is stored; no column holds the token.
SELECT count(*) AS rows_with_hash FROM vault.api_token_hashes
 WHERE hash = sha256(convert_to(:'tok', 'UTF8')) AND lookup = substr(sha256(convert_to(:'tok', 'UTF8')), 1, 8);
SELECT count(*) AS rows_with_token FROM vault.api_token_hashes t
 WHERE strpos(row_to_json(t)::text, substr(:'tok', 5)) > 0 OR strpos(t::text, substr(:'tok', 5)) > 0;
-- last_used_at (kept apart from the token rows, so noting a use never locks a token): set by
-- the first check, not rewritten within a minute, set again after one.
CREATE TEMP VIEW uses AS SELECT t.name, u.xmin AS x, u.last_used_at
  FROM vault.api_token_hashes t JOIN vault.api_token_uses u ON u.token_id = t.id;
SELECT x AS x1 FROM uses WHERE name = 'ci-deploy' \gset
SELECT vault.api_token_role(:'tok') AS role;
SELECT x = :'x1'::xid AS not_rewritten FROM uses WHERE name = 'ci-deploy';
UPDATE vault.api_token_uses SET last_used_at = now() - interval '61 seconds'
 WHERE token_id = (SELECT id FROM vault.api_token_hashes WHERE name = 'ci-deploy');
SELECT vault.api_token_role(:'tok') AS role;
SELECT last_used_at > now() - interval '5 seconds' AS touched FROM uses WHERE name = 'ci-deploy';
-- A read-only or REPEATABLE READ transaction (or a standby) checks without writing.
UPDATE vault.api_token_uses SET last_used_at = NULL
 WHERE token_id = (SELECT id FROM vault.api_token_hashes WHERE name = 'cron');
BEGIN TRANSACTION READ ONLY;
SELECT vault.api_token_role(:'tok2') AS role;
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT vault.api_token_role(:'tok2') AS role;
COMMIT;
SELECT last_used_at IS NULL AS untouched FROM uses WHERE name = 'cron';
-- The row is found by the first 8 bytes of the hash; the whole hash must match.
UPDATE vault.api_token_hashes SET hash = substr(hash, 1, 31) || '\x00'::bytea WHERE name = 'cron' AND get_byte(hash, 31) <> 0;
UPDATE vault.api_token_hashes SET hash = substr(hash, 1, 31) || '\x01'::bytea WHERE name = 'cron' AND get_byte(hash, 31) = 0
  AND hash = sha256(convert_to(:'tok2', 'UTF8'));
SELECT vault.api_token_role(:'tok2') AS role;
UPDATE vault.api_token_hashes SET hash = sha256(convert_to(:'tok2', 'UTF8')) WHERE name = 'cron';
SELECT vault.api_token_role(:'tok2') AS role;
-- Expired: no role, by the clock (not the transaction's start).
UPDATE vault.api_token_hashes SET expires_at = clock_timestamp() + interval '2 seconds' WHERE name = 'cron';
BEGIN;
SELECT vault.api_token_role(:'tok2') AS role;
SELECT pg_sleep(2.1);
SELECT vault.api_token_role(:'tok2') AS role;
COMMIT;
-- Any role may check a token, given USAGE on the schema (a server's login role).
SET ROLE regress_tok_nobody;
\set VERBOSITY terse
SELECT vault.api_token_role(:'tok') AS role;
\echo :SQLSTATE
\set VERBOSITY default
RESET ROLE;
GRANT USAGE ON SCHEMA vault TO regress_tok_nobody;
SET ROLE regress_tok_nobody;
SELECT vault.api_token_role(:'tok') AS role;
-- ... and what a live token may know about itself (pgvault serve's Vault token lookup): its
-- name, role, expiry and seconds left (0: none), never the token; NULL for any other token.
SELECT j->>'name' AS name, j->>'role' AS role, j->'expires_at' = 'null' AS no_expiry, j->'ttl' AS ttl,
       strpos(j::text, substr(:'tok', 5)) AS token_at
  FROM vault.api_token_self(:'tok') j;
SELECT vault.api_token_self(x) IS NULL AS none
  FROM (VALUES (NULL), ('pgv_' || repeat('A', 43)), (:'tok2')) v(x);
-- ... but not create, list or revoke tokens; neither may a reader.
SELECT vault.create_api_token('mine', 'regress_tok_nobody');
\echo :SQLSTATE
SET ROLE regress_tok_reader;
SELECT vault.create_api_token('mine', 'regress_tok_reader');
\echo :SQLSTATE
SELECT count(*) FROM vault.api_tokens;
\echo :SQLSTATE
SELECT vault.revoke_api_token('ci-deploy');
\echo :SQLSTATE
SELECT vault._api_token_role(:'tok');
\echo :SQLSTATE
RESET ROLE;
REVOKE USAGE ON SCHEMA vault FROM regress_tok_nobody;
-- A role that became a superuser, or was dropped, is not acted as.
CREATE ROLE regress_tok_temp NOLOGIN;
GRANT regress_tok_temp TO regress_tok_admin;
SET ROLE regress_tok_admin;
SELECT vault.create_api_token('temp', 'regress_tok_temp') AS tok3 \gset
RESET ROLE;
SELECT vault.api_token_role(:'tok3') AS role;
ALTER ROLE regress_tok_temp SUPERUSER;
SELECT vault.api_token_role(:'tok3') AS role;
ALTER ROLE regress_tok_temp NOSUPERUSER;
GRANT pg_write_server_files TO regress_tok_temp;
SELECT vault.api_token_role(:'tok3') AS role;
REVOKE pg_write_server_files FROM regress_tok_temp;
SELECT vault.api_token_role(:'tok3') AS role;
-- Renamed: the token ends (it names the role by OID and name). A dropped role's OID that
-- another role has (after a restore elsewhere) does not revive it either.
ALTER ROLE regress_tok_temp RENAME TO regress_tok_renamed;
SELECT vault.api_token_role(:'tok3') AS role;
ALTER ROLE regress_tok_renamed RENAME TO regress_tok_temp;
SELECT vault.api_token_role(:'tok3') AS role;
DROP ROLE regress_tok_temp;
SELECT vault.api_token_role(:'tok3') AS role;
UPDATE vault.api_token_hashes SET role = 'regress_tok_reader' WHERE name = 'temp';
SELECT vault.api_token_role(:'tok3') AS role;
-- Revoked: no role at once; the name can be used again, by a new token.
SET ROLE regress_tok_admin;
SELECT vault.revoke_api_token('ci-deploy');
SELECT vault.api_token_role(:'tok') AS role;
SELECT vault.api_token_self(:'tok') IS NULL AS revoked_self;
SELECT vault.revoke_api_token('ci-deploy');
\echo :SQLSTATE
SELECT vault.create_api_token('ci-deploy', 'regress_tok_reader') AS tok4 \gset
SELECT vault.api_token_role(:'tok4') AS role, vault.api_token_role(:'tok') AS old;
SELECT name, role, revoked_at IS NOT NULL AS revoked FROM vault.api_tokens WHERE name <> 'temp' ORDER BY name, created_at;
-- Audited under the caller's name; the token never appears in the log.
SELECT "current_role", action, detail->>'token' AS token_name, detail->>'role' AS role
  FROM vault.audit_log WHERE action IN ('create_token', 'revoke_token') ORDER BY at;
SELECT count(*) AS audit_rows_with_token FROM vault.audit_log WHERE strpos(detail::text, substr(:'tok', 5)) > 0;
-- A token with an expiry knows how long it has left.
SELECT vault.create_api_token('later', 'regress_tok_service', now() + interval '1 hour') AS tok5 \gset
SELECT (j->>'ttl')::int BETWEEN 3590 AND 3600 AS ttl_left, (j->>'expires_at')::timestamptz > now() AS expires
  FROM vault.api_token_self(:'tok5') j;
RESET ROLE;
DELETE FROM vault.api_token_hashes;
DROP OWNED BY regress_tok_admin, regress_tok_reader, regress_tok_nobody;
DROP ROLE regress_tok_admin, regress_tok_service, regress_tok_reader, regress_tok_nobody, regress_tok_sneaky,
  regress_tok_super, regress_tok_shell, regress_tok_creator, regress_tok_stranger;
