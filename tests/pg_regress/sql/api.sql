-- The SQL surface: create/update/read secrets, keys, and the error of each misuse.
-- Ciphertext and nonces are random, so only lengths and booleans are printed.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION vault_ext;
SELECT name, key_type, key_id, key_context, status FROM vault.keys;

SELECT vault.create_secret('s3cr3t', 'api_key', 'the API key') IS NOT NULL AS created;
SELECT name, description, decrypted_secret, key_id, length(nonce) AS nonce_len,
       secret <> decrypted_secret AS stored_encrypted, created_at = updated_at AS fresh
  FROM vault.decrypted_secrets;
SELECT vault.read_secret('api_key');

-- supabase_vault-style defaults and named arguments
SELECT vault.create_secret('no name') IS NOT NULL AS created;
SELECT vault.create_secret(new_secret => 'named', new_name => 'named') IS NOT NULL AS created;
SELECT count(*) FILTER (WHERE name IS NULL) AS unnamed, count(*) AS total FROM vault.secrets;

-- Direct DML: plaintext in, ciphertext stored.
INSERT INTO vault.secrets (name, secret) VALUES ('direct', 'direct value');
SELECT secret <> 'direct value' AS encrypted, length(nonce) FROM vault.secrets WHERE name = 'direct';
UPDATE vault.secrets SET secret = 'changed value' WHERE name = 'direct';
SELECT vault.read_secret('direct');

-- update_secret: NULL keeps a field.
SELECT vault.update_secret(id, new_secret => 'rotated') FROM vault.secrets WHERE name = 'api_key';
SELECT name, description, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'api_key';
SELECT vault.update_secret(id, new_name => 'api_key_v2', new_description => 'renamed') FROM vault.secrets WHERE name = 'api_key';
SELECT name, description, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'api_key_v2';

-- Keys
SELECT vault.create_key('det2') IS NOT NULL AS det2, vault.create_key('ietf', 'aead-ietf') IS NOT NULL AS ietf;
-- A fixed id keeps the expected output stable (nothing refers to the key yet).
UPDATE vault.keys SET id = 'dddddddd-0000-4000-8000-000000000002' WHERE name = 'det2';
SELECT name, key_type, key_id, status, root_key_fingerprint = vault.root_key_fingerprint() AS fp_recorded
  FROM vault.keys ORDER BY key_id;
SELECT vault.create_secret('under ietf', 'ietf_secret', '', (SELECT id FROM vault.keys WHERE name = 'ietf')) IS NOT NULL AS created;
SELECT decrypted_secret, length(nonce) AS nonce_len, key_id = (SELECT id FROM vault.keys WHERE name = 'ietf') AS on_ietf
  FROM vault.decrypted_secrets WHERE name = 'ietf_secret';
-- Move a secret between keys: re-encrypted, still readable.
SELECT vault.update_secret(id, new_key_id => (SELECT id FROM vault.keys WHERE name = 'det2')) FROM vault.secrets WHERE name = 'ietf_secret';
SELECT decrypted_secret, length(nonce) AS nonce_len FROM vault.decrypted_secrets WHERE name = 'ietf_secret';

-- Errors: each with its SQLSTATE, and never the value.
SELECT vault.create_secret('x', 'bad key', '', '11111111-1111-1111-1111-111111111111');
\echo :SQLSTATE
SELECT vault.update_secret('11111111-1111-1111-1111-111111111111', 'x');
\echo :SQLSTATE
SELECT vault.read_secret('no such secret');
\echo :SQLSTATE
-- As 0.1.0's PL/pgSQL version: a NULL name is a missing secret, not a NULL value.
SELECT vault.read_secret(NULL);
\echo :SQLSTATE
SELECT vault.create_key('bad', 'rot13');
\echo :SQLSTATE
SELECT vault.create_secret('duplicate-plaintext-value', 'api_key_v2');
\echo :SQLSTATE
SELECT vault.create_secret(NULL, 'null value');
\echo :SQLSTATE
INSERT INTO vault.secrets (id, name, secret, nonce) VALUES ('00000000-0000-4000-8000-00000000000a', 'not base64', 'plain text!', '\x00112233445566778899aabbccddeeff');
\echo :SQLSTATE
INSERT INTO vault.secrets (id, name, secret, nonce) VALUES ('00000000-0000-4000-8000-00000000000b', 'too short', 'AAAA', '\x00112233445566778899aabbccddeeff');
\echo :SQLSTATE
INSERT INTO vault.secrets (id, name, secret, nonce) VALUES ('00000000-0000-4000-8000-00000000000c', 'short nonce', encode('\x00000000000000000000000000000000000000000000000000000000000000000000'::bytea, 'base64'), '\x0011');
\echo :SQLSTATE

-- Key status rules: expired keys decrypt but take no new secrets; invalid keys refuse.
UPDATE vault.keys SET status = 'expired' WHERE name = 'det2';
SELECT vault.read_secret('ietf_secret');
SELECT vault.create_secret('x', 'on expired', '', (SELECT id FROM vault.keys WHERE name = 'det2'));
\echo :SQLSTATE
UPDATE vault.keys SET status = 'valid', expires_at = now() - interval '1 day' WHERE name = 'det2';
SELECT vault.create_secret('x', 'past expiry', '', (SELECT id FROM vault.keys WHERE name = 'det2'));
\echo :SQLSTATE
UPDATE vault.keys SET status = 'invalid' WHERE name = 'det2';
SELECT vault.read_secret('ietf_secret');
\echo :SQLSTATE
UPDATE vault.keys SET status = 'valid', expires_at = NULL WHERE name = 'det2';
UPDATE vault.keys SET status = 'default' WHERE name = 'det2';
\echo :SQLSTATE

-- Tampering: a ciphertext moved to another row (id is authenticated) is refused when written
-- (it does not decrypt for that id: 22023), and, when it gets there past the trigger, on read.
INSERT INTO vault.secrets (id, name, secret, nonce)
SELECT '00000000-0000-4000-8000-000000000001', 'moved', secret, nonce FROM vault.secrets WHERE name = 'direct';
\echo :SQLSTATE
-- A plaintext in base64 with a made-up nonce is not stored as if it were ciphertext either.
INSERT INTO vault.secrets (id, name, secret, nonce)
VALUES ('00000000-0000-4000-8000-0000000000fa', 'fake', encode(convert_to(repeat('plain text, not ciphertext', 3), 'UTF8'), 'base64'), '\x000102030405060708090a0b0c0d0e0f');
\echo :SQLSTATE
SELECT count(*) AS stored FROM vault.secrets WHERE name IN ('moved', 'fake');
ALTER TABLE vault.secrets DISABLE TRIGGER secrets_encrypt;
INSERT INTO vault.secrets (id, name, secret, nonce)
SELECT '00000000-0000-4000-8000-000000000001', 'moved', secret, nonce FROM vault.secrets WHERE name = 'direct';
ALTER TABLE vault.secrets ENABLE TRIGGER secrets_encrypt;
SELECT vault.read_secret('moved');
\echo :SQLSTATE
-- A wrong recorded fingerprint turns the message into a root key mismatch.
UPDATE vault.keys SET root_key_fingerprint = '0000000000000000' WHERE status = 'default';
DO $$
DECLARE msg text; det text; hint text; state text;
BEGIN
  PERFORM decrypted_secret FROM vault.decrypted_secrets WHERE name = 'moved';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  RAISE NOTICE E'%: %\n%\n%', state, msg, replace(det, vault.root_key_fingerprint(), '<loaded fingerprint>'), hint;
END
$$;
UPDATE vault.keys SET root_key_fingerprint = vault.root_key_fingerprint() WHERE status = 'default';
DELETE FROM vault.secrets WHERE name = 'moved';

-- Functions are volatile where they must be; the decrypt function is parallel safe.
SELECT proname, provolatile, proparallel, prosecdef FROM pg_proc
 WHERE pronamespace = 'vault'::regnamespace ORDER BY proname;

-- The triggers learn where vault.secrets' columns are once and again after every ALTER TABLE:
-- a renamed column is noticed at the next row (nothing is written to a column by its old
-- place), columns added or dropped later change nothing.
INSERT INTO vault.secrets (name, secret) VALUES ('col_a', 'before the rename');
ALTER TABLE vault.secrets RENAME COLUMN secret TO secret_renamed;
INSERT INTO vault.secrets (name, secret_renamed) VALUES ('col_b', 'while renamed');
\echo :SQLSTATE
ALTER TABLE vault.secrets RENAME COLUMN secret_renamed TO secret;
ALTER TABLE vault.secrets ADD COLUMN extra int;
INSERT INTO vault.secrets (name, secret, extra) VALUES ('col_c', 'with a column added', 1);
ALTER TABLE vault.secrets DROP COLUMN extra;
INSERT INTO vault.secrets (name, secret) VALUES ('col_d', 'with it dropped');
SELECT name, decrypted_secret, nonce IS NOT NULL AS encrypted, secret NOT LIKE '%with%' AS no_plaintext
  FROM vault.decrypted_secrets WHERE name LIKE 'col\_%' ORDER BY name;
DELETE FROM vault.secrets WHERE name LIKE 'col\_%';
-- A value whose ciphertext would not fit in a text column (1 GB of base64) is refused with 54000
-- and the limit, on every write path, before anything is allocated for it (issue 26, finding 10).
\set VERBOSITY terse
SELECT vault.create_secret(repeat('x', 800000000), 'huge');
\echo :SQLSTATE
SELECT vault.create_secret('small', 'huge') IS NOT NULL AS created;
UPDATE vault.secrets SET secret = repeat('x', 800000000) WHERE name = 'huge';
\echo :SQLSTATE
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'huge';
DELETE FROM vault.secrets WHERE name = 'huge';
\set VERBOSITY default
