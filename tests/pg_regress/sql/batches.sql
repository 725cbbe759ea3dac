-- Large tables (SPEC §10): rotate_key(reencrypt => false) only creates the new default key;
-- CALL vault.reencrypt_in_batches() moves secrets and kept versions a batch per transaction and
-- resumes after an interruption.
\set VERBOSITY default
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SELECT count(vault.create_secret('batch value ' || i, 'b' || i)) AS created FROM generate_series(1, 25) i;
SELECT count(vault.update_secret(id, 'batch value ' || substr(name, 2) || ' v2')) AS updated
  FROM vault.secrets WHERE name IN ('b1', 'b2', 'b3');
SELECT vault.rotate_key(reencrypt => false) IS NOT NULL AS rotated;
CREATE TEMP VIEW placement AS
SELECT (SELECT count(*) FROM vault.secrets s JOIN vault.keys k ON k.id = s.key_id WHERE k.status = 'default') AS secrets_on_new,
       (SELECT count(*) FROM vault.secrets) AS secrets,
       (SELECT count(*) FROM vault.secret_versions v JOIN vault.keys k ON k.id = v.key_id WHERE k.status = 'default') AS versions_on_new,
       (SELECT count(*) FROM vault.secret_versions) AS versions;
-- Nothing moved yet; a new secret goes to the new key at once.
SELECT * FROM placement;
SELECT vault.create_secret('batch value 26', 'b26') IS NOT NULL AS created;
SELECT * FROM placement;
-- A writer updating a secret still on the expired key is not refused: its new value goes to the
-- default key (expired keys decrypt but take no new values).
SELECT vault.update_secret(id, 'batch value 1 v3') FROM vault.secrets WHERE name = 'b1';
SELECT decrypted_secret, key_id = (SELECT id FROM vault.keys WHERE status = 'default') AS on_new
  FROM vault.decrypted_secrets WHERE name = 'b1';
SELECT vault.update_secret(id, 'batch value 1 v2') FROM vault.secrets WHERE name = 'b1';
-- Bad arguments.
CALL vault.reencrypt_in_batches(batch_size => 0);
\echo :SQLSTATE
CALL vault.reencrypt_in_batches('00000000-0000-4000-8000-00000000dead');
\echo :SQLSTATE
-- It commits, so it cannot run inside a transaction block.
BEGIN;
CALL vault.reencrypt_in_batches();
\echo :SQLSTATE
ROLLBACK;
-- An interruption in the third batch of 5 (the 12th row re-encrypted fails, as a crash would):
-- the first two batches stay committed.
CREATE SEQUENCE public.regress_rows;
CREATE FUNCTION public.regress_fail_at_12() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_catalog.nextval('public.regress_rows') = 12 THEN RAISE EXCEPTION 'simulated crash'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER regress_fail BEFORE UPDATE ON vault.secrets FOR EACH ROW EXECUTE FUNCTION public.regress_fail_at_12();
\set VERBOSITY terse
CALL vault.reencrypt_in_batches(batch_size => 5);
\set VERBOSITY default
SELECT * FROM placement;
DROP TRIGGER regress_fail ON vault.secrets;
-- A second call finishes the job: every secret and kept version on the new key, all decrypting.
CALL vault.reencrypt_in_batches(batch_size => 5);
SELECT * FROM placement;
SELECT count(*) FILTER (WHERE decrypted_secret LIKE 'batch value %') AS decrypting, count(*) AS secrets
  FROM vault.decrypted_secrets;
SELECT count(*) FILTER (WHERE decrypted_secret LIKE 'batch value %') AS versions_decrypting
  FROM vault.decrypted_secret_versions;
-- One reencrypt audit row per committed batch: 2 before the interruption, 3 after.
SELECT action, detail->'secrets' AS secrets FROM vault.audit_log
 WHERE action IN ('reencrypt', 'rotate_key') AND at >= :'t0' ORDER BY at, id;
-- Run again: nothing left to move.
CALL vault.reencrypt_in_batches();
-- Only vault_admin may call it.
CREATE ROLE regress_batch_reader IN ROLE vault_reader;
SET ROLE regress_batch_reader;
CALL vault.reencrypt_in_batches();
\echo :SQLSTATE
RESET ROLE;
DROP ROLE regress_batch_reader;
DROP VIEW placement;
DROP FUNCTION public.regress_fail_at_12();
DROP SEQUENCE public.regress_rows;
DELETE FROM vault.secrets;
