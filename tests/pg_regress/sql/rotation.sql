-- Key lifecycle: rotate_key, reencrypt_secrets, key_status, verify_secrets.
\set VERBOSITY default
\set SHOW_CONTEXT never
DELETE FROM vault.secrets;
SELECT count(*) FROM (SELECT vault.create_secret('value ' || i, 'rot' || i) FROM generate_series(1, 10000) i) c;
CREATE TEMP TABLE before AS SELECT id, nonce, key_id FROM vault.secrets;
SELECT vault.rotate_key() IS NOT NULL AS rotated;
SELECT name, key_type, status, secrets FROM vault.key_status WHERE secrets > 0 OR status <> 'valid' ORDER BY key_id;
-- Every secret moved to the new default key, with a new nonce, and still decrypts.
SELECT count(*) AS secrets,
       count(*) FILTER (WHERE s.key_id = (SELECT k.id FROM vault.keys k WHERE k.status = 'default')) AS on_new_key,
       count(*) FILTER (WHERE s.nonce = b.nonce) AS same_nonce,
       count(*) FILTER (WHERE d.decrypted_secret = 'value ' || substr(s.name, 4)) AS decrypt_ok
  FROM vault.secrets s JOIN before b USING (id) JOIN vault.decrypted_secrets d USING (id);
-- New writes go to the new default key.
SELECT vault.create_secret('after rotation', 'after') IS NOT NULL AS created;
SELECT key_id = (SELECT id FROM vault.keys WHERE status = 'default') AS on_default
  FROM vault.secrets WHERE name = 'after';
-- Rotating to another type.
SELECT vault.rotate_key('aead-ietf') IS NOT NULL AS rotated;
SELECT k.key_type, count(*), min(length(s.nonce)) AS nonce_len
  FROM vault.secrets s JOIN vault.keys k ON k.id = s.key_id GROUP BY 1;
SELECT count(*) AS decrypt_ok FROM vault.decrypted_secrets WHERE decrypted_secret LIKE 'value %' OR decrypted_secret = 'after rotation';
-- Expired keys still decrypt but take no secrets.
SELECT vault.reencrypt_secrets('00000000-0000-0000-0000-000000000000');
\echo :SQLSTATE
SELECT vault.reencrypt_secrets('11111111-1111-1111-1111-111111111111');
\echo :SQLSTATE
SELECT name, key_type, status, secrets FROM vault.key_status ORDER BY key_id;

-- verify_secrets: everything ok, then one tampered row, one key with a foreign fingerprint,
-- and one invalid key, each reported without stopping and without any value.
DELETE FROM vault.secrets WHERE name LIKE 'rot%' AND substr(name, 4)::int > 3;
SELECT name, status, detail FROM vault.verify_secrets() ORDER BY name;
CREATE TEMP TABLE saved AS SELECT * FROM vault.secrets WHERE name = 'rot1';
DELETE FROM vault.secrets WHERE name = 'rot1';
-- A tampered ciphertext is refused when written (22023) ...
\set VERBOSITY sqlstate
INSERT INTO vault.secrets (id, name, secret, key_id, nonce)
SELECT id, name, encode(set_byte(decode(secret, 'base64'), 0, get_byte(decode(secret, 'base64'), 0) # 1), 'base64'), key_id, nonce
  FROM saved;
\set VERBOSITY default
-- ... so put it there past the trigger, as damaged storage would.
ALTER TABLE vault.secrets DISABLE TRIGGER secrets_encrypt;
INSERT INTO vault.secrets (id, name, secret, key_id, nonce)
SELECT id, name, encode(set_byte(decode(secret, 'base64'), 0, get_byte(decode(secret, 'base64'), 0) # 1), 'base64'), key_id, nonce
  FROM saved;
ALTER TABLE vault.secrets ENABLE TRIGGER secrets_encrypt;
SELECT vault.create_key('foreign') IS NOT NULL AS created;
UPDATE vault.keys SET status = 'valid' WHERE name = 'foreign';
SELECT vault.create_secret('under foreign', 'foreign_secret', '', (SELECT id FROM vault.keys WHERE name = 'foreign')) IS NOT NULL AS created;
UPDATE vault.keys SET root_key_fingerprint = '0123456789abcdef' WHERE name = 'foreign';
SELECT vault.create_key('doomed') IS NOT NULL AS created;
SELECT vault.create_secret('under doomed', 'doomed_secret', '', (SELECT id FROM vault.keys WHERE name = 'doomed')) IS NOT NULL AS created;
UPDATE vault.keys SET status = 'invalid' WHERE name = 'doomed';
-- The foreign-fingerprint key's secret was written under this root key, so it still decrypts:
-- a mismatch is reported only when decryption fails. Tamper it too: under a root key this
-- server has not loaded it cannot be checked, so it is stored with a WARNING.
CREATE TEMP TABLE saved2 AS SELECT * FROM vault.secrets WHERE name = 'foreign_secret';
DELETE FROM vault.secrets WHERE name = 'foreign_secret';
\set VERBOSITY sqlstate
INSERT INTO vault.secrets (id, name, secret, key_id, nonce)
SELECT id, name, encode(set_byte(decode(secret, 'base64'), 0, get_byte(decode(secret, 'base64'), 0) # 1), 'base64'), key_id, nonce
  FROM saved2;
\set VERBOSITY default
SELECT name, status,
       replace(replace(detail, vault.root_key_fingerprint(), '<loaded>'),
               (SELECT id::text FROM vault.keys WHERE name = 'doomed'), '<doomed key>') AS detail
  FROM vault.verify_secrets() ORDER BY name;
DELETE FROM vault.secrets;
-- Root key rotation needs a previous root key loaded at server start (tested on real servers
-- in tests/key_cluster.sh); without one it refuses and changes nothing.
SELECT vault.rotate_root_key();
SELECT name, root_key, root_key_fingerprint = vault.root_key_fingerprint() AS current_fingerprint
  FROM vault.key_status WHERE name IN ('doomed', 'foreign') ORDER BY name;
