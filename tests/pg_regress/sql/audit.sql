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
-- The audit_log in order: who, what, which secret; key ids replaced for a stable output.
SELECT session_role = session_user AS session_ok, "current_role", action, secret_name,
       regexp_replace(detail::text, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g') AS detail
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
-- Append-only, even for vault_admin.
UPDATE vault.audit_log SET action = 'nothing';
\echo :SQLSTATE
DELETE FROM vault.audit_log;
\echo :SQLSTATE
TRUNCATE vault.audit_log;
\echo :SQLSTATE
-- Retention goes through purge_audit_log, which logs itself.
SELECT vault.purge_audit_log('1 day') AS purged_recent;
SELECT vault.purge_audit_log('0 seconds') > 0 AS purged_all;
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
