-- Audit trail: a row per create, update, delete, rollback, grant, revoke and key rotation,
-- naming the actor, never holding a value; append-only.
\set VERBOSITY terse
TRUNCATE vault.audit_log;
CREATE ROLE regress_auditor IN ROLE vault_admin;
CREATE ROLE regress_team;
SET ROLE regress_auditor;
INSERT INTO vault.secrets (id, name, secret) VALUES ('00000000-0000-4000-8000-0000000000c1', 'audited', 'AUDIT-VALUE-1');
SELECT vault.update_secret('00000000-0000-4000-8000-0000000000c1', 'AUDIT-VALUE-2');
SELECT vault.update_secret('00000000-0000-4000-8000-0000000000c1', NULL, NULL, 'now described', NULL, ARRAY['x']);
SELECT vault.rollback_secret('00000000-0000-4000-8000-0000000000c1', 1);
SELECT vault.grant_secret('00000000-0000-4000-8000-0000000000c1', 'regress_team');
SELECT vault.revoke_secret('00000000-0000-4000-8000-0000000000c1', 'regress_team');
SELECT vault.rotate_key() IS NOT NULL AS rotated;
DELETE FROM vault.secrets WHERE id = '00000000-0000-4000-8000-0000000000c1';
-- The audit_log in order: who, what, which secret (rotate_key also shows the key changes it
-- made); key ids replaced for a stable output.
SELECT session_role = session_user AS session_ok, "current_role", action, secret_name,
       regexp_replace(regexp_replace(detail::text, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g'),
                      '"key_id": "[0-9]+"', '"key_id": "<n>"') AS detail
  FROM vault.audit_log ORDER BY at, id;
-- No value anywhere in it.
SELECT count(*) AS rows_with_value FROM vault.audit_log a WHERE a::text LIKE '%AUDIT-VALUE%';
-- Creates are recorded when the transaction commits; those of rolled-back subtransactions and
-- transactions are not.
BEGIN;
SAVEPOINT s1;
SELECT vault.create_secret('x', 'sub_rolled_back') IS NOT NULL AS created;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT vault.create_secret('y', 'sub_kept') IS NOT NULL AS created;
RELEASE SAVEPOINT s2;
COMMIT;
BEGIN;
SELECT vault.create_secret('z', 'tx_rolled_back') IS NOT NULL AS created;
ROLLBACK;
SELECT "current_role", action, secret_name FROM vault.audit_log
 WHERE secret_name IN ('sub_rolled_back', 'sub_kept', 'tx_rolled_back') ORDER BY at;
-- An upsert that meets an existing name is an update, not a create.
WITH v AS (SELECT 'upserted value' AS value)
INSERT INTO vault.secrets (name, secret) SELECT 'sub_kept', value FROM v
ON CONFLICT (name) WHERE name IS NOT NULL DO UPDATE SET secret = (SELECT value FROM v), nonce = NULL;
SELECT action, detail->'changed' AS changed FROM vault.audit_log WHERE secret_name = 'sub_kept' ORDER BY at;
DELETE FROM vault.secrets WHERE name = 'sub_kept';
-- Append-only, even for vault_admin: only vault_ext's own code writes rows (as the owner), so
-- no row can name another role or another time.
INSERT INTO vault.audit_log (at, session_role, "current_role", action) VALUES ('2000-01-01', 'someone', 'someone', 'forged');
\echo :SQLSTATE
SELECT vault.secrets_audit_update();
\echo :SQLSTATE
-- The event rows of vault's functions are refused without the change they describe.
SELECT vault._audit_rollback('00000000-0000-4000-8000-0000000000c1', 1);
\echo :SQLSTATE
SELECT vault._audit_rotate_key(NULL, gen_random_uuid());
\echo :SQLSTATE
UPDATE vault.audit_log SET action = 'nothing';
\echo :SQLSTATE
DELETE FROM vault.audit_log;
\echo :SQLSTATE
TRUNCATE vault.audit_log;
\echo :SQLSTATE
-- Retention goes through purge_audit_log, which logs itself and keeps rows younger than
-- vault.audit_min_retention, whoever calls it; only a superuser can lower the setting.
SHOW vault.audit_min_retention;
SELECT vault.purge_audit_log('30 days') AS purged_old;
SELECT count(*) AS before FROM vault.audit_log \gset
SELECT vault.purge_audit_log('0 seconds');
\echo :SQLSTATE
SELECT vault.purge_audit_log('29 days 23 hours');
\echo :SQLSTATE
SELECT count(*) = :before AS nothing_purged FROM vault.audit_log;
SET vault.audit_min_retention = 0;
\echo :SQLSTATE
RESET ROLE;
SET vault.audit_min_retention = 0;
SET ROLE regress_auditor;
SELECT vault.purge_audit_log('0 seconds') > 0 AS purged_all;
RESET ROLE;
RESET vault.audit_min_retention;
SET ROLE regress_auditor;
SELECT "current_role", action, detail->>'older_than' AS older_than FROM vault.audit_log ORDER BY at, id;
SELECT vault.purge_audit_log(NULL);
\echo :SQLSTATE
RESET ROLE;
-- A reader cannot see the audit log.
CREATE ROLE regress_areader IN ROLE vault_reader;
SET ROLE regress_areader;
SELECT count(*) FROM vault.audit_log;
\echo :SQLSTATE
RESET ROLE;
DROP ROLE regress_auditor, regress_team, regress_areader;
