-- Using a secret without reading it (SPEC §11): vault_user, 'use' grants, non-exportable
-- secrets, HMAC, webhooks, JWTs, signing keys and column encryption, with every SQLSTATE.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE ROLE regress_app LOGIN IN ROLE vault_user;          -- may use, may not read
CREATE ROLE regress_reader LOGIN IN ROLE vault_reader;     -- may read and use
CREATE ROLE regress_signer LOGIN IN ROLE vault_user;       -- gets a 'use' grant below
CREATE ROLE regress_uadmin LOGIN IN ROLE vault_admin;
CREATE ROLE regress_nobody LOGIN;
SELECT pg_has_role('vault_reader', 'vault_user', 'MEMBER') AS reader_uses,
       pg_has_role('vault_admin', 'vault_user', 'MEMBER') AS admin_uses,
       pg_has_role('vault_user', 'vault_reader', 'MEMBER') AS user_reads;
-- RFC 4231 test case 2 as a stored secret.
SELECT vault.create_secret('Jefe', 'jefe') IS NOT NULL AS created;
SELECT vault.create_secret('It''s a Secret to Everybody', 'github_hook') IS NOT NULL AS created;

-- A vault_user-only role gets the HMAC and not the value.
SET ROLE regress_app;
SELECT encode(vault.hmac('jefe', 'what do ya want for nothing?'), 'hex') AS hmac_sha256;
SELECT encode(vault.hmac('jefe', 'what do ya want for nothing?'::bytea, 'sha512'), 'hex') AS hmac_sha512;
SELECT vault.hmac_verify('jefe', 'what do ya want for nothing?',
       '\x5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843') AS valid,
       vault.hmac_verify('jefe', 'what do ya want for nothing!',
       '\x5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843') AS changed_message,
       vault.hmac_verify('jefe', 'what do ya want for nothing?', '\x5bdc') AS short_mac;
SELECT vault.read_secret('jefe');
\echo :SQLSTATE
SELECT decrypted_secret FROM vault.decrypted_secrets;
\echo :SQLSTATE
SELECT vault.hmac('no_such_secret', 'x');
\echo :SQLSTATE
SELECT vault.hmac('jefe', 'x', 'md5');
\echo :SQLSTATE
SELECT vault.hmac(NULL, 'x') IS NULL AS strict;
RESET ROLE;
-- A new value is used at once (the kept key is dropped by the write), in this transaction too.
BEGIN;
SELECT vault.update_secret(id, 'key') FROM vault.secrets WHERE name = 'jefe';
SET LOCAL ROLE regress_app;
SELECT encode(vault.hmac('jefe', 'The quick brown fox jumps over the lazy dog'), 'hex') AS new_value_used;
ROLLBACK;
SET ROLE regress_app;
SELECT encode(vault.hmac('jefe', 'what do ya want for nothing?'), 'hex') = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' AS old_value_again;
RESET ROLE;
-- No vault role at all: nothing.
SET ROLE regress_nobody;
SELECT vault.hmac('jefe', 'x');
\echo :SQLSTATE
RESET ROLE;

-- Per-secret grants: 'use' or 'read'; a restricted secret is used only by its grantees.
SET ROLE regress_uadmin;
SELECT vault.grant_secret(id, 'regress_signer', 'use') FROM vault.secrets WHERE name = 'jefe';
SELECT vault.grant_secret(id, 'regress_signer', 'write') FROM vault.secrets WHERE name = 'jefe';
\echo :SQLSTATE
SELECT vault.grant_secret(id, 'regress_signer', NULL) FROM vault.secrets WHERE name = 'jefe';
\echo :SQLSTATE
SELECT secret_name, grantee, privilege FROM vault.secret_grants ORDER BY grantee::text;
RESET ROLE;
SET ROLE regress_signer;
SELECT length(vault.hmac('jefe', 'x')) AS grantee_uses;
RESET ROLE;
SET ROLE regress_app;
SELECT vault.hmac('jefe', 'x');
\echo :SQLSTATE
RESET ROLE;
-- A 'use' grant does not let a reader read.
GRANT vault_reader TO regress_signer;
SET ROLE regress_signer;
SELECT vault.read_secret('jefe');
\echo :SQLSTATE
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'jefe';
RESET ROLE;
-- 'read' replaces 'use' and allows both.
SELECT vault.grant_secret(id, 'regress_signer', 'read') FROM vault.secrets WHERE name = 'jefe';
SELECT secret_name, grantee, privilege FROM vault.secret_grants ORDER BY grantee::text;
SET ROLE regress_signer;
SELECT vault.read_secret('jefe');
SELECT length(vault.hmac('jefe', 'x')) AS reader_uses;
RESET ROLE;
-- A reader without a grant neither reads nor uses it.
SET ROLE regress_reader;
SELECT vault.hmac('jefe', 'x');
\echo :SQLSTATE
RESET ROLE;
SELECT vault.revoke_secret(id, 'regress_signer') FROM vault.secrets WHERE name = 'jefe';
REVOKE vault_reader FROM regress_signer;

-- Webhooks. GitHub's documented example (no timestamp).
SET ROLE regress_app;
SELECT vault.verify_webhook('github', 'github_hook', 'Hello, World!',
  '{"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}') AS github_ok,
       vault.verify_webhook('GitHub', 'github_hook', 'Hello, World?',
  '{"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}') AS changed_body,
       vault.verify_webhook('github', 'github_hook', 'Hello, World!', '{}') AS no_header,
       vault.verify_webhook('github', 'github_hook', 'Hello, World!', '[1, 2]') AS headers_not_an_object;
SELECT vault.verify_webhook('paypal', 'github_hook', 'x', '{}');
\echo :SQLSTATE
SELECT vault.verify_webhook('github', 'github_hook', 'x', '{}', '-1 minute');
\echo :SQLSTATE
-- Stripe: a header made now (with vault.hmac) passes; the same an hour old does not.
SELECT vault.verify_webhook('stripe', 'github_hook', '{"id":"evt_1"}',
  jsonb_build_object('Stripe-Signature', format('t=%s,v1=%s', ts, encode(vault.hmac('github_hook', ts || '.{"id":"evt_1"}'), 'hex')))) AS stripe_now
  FROM (SELECT extract(epoch FROM now())::bigint::text AS ts) t;
SELECT vault.verify_webhook('stripe', 'github_hook', '{"id":"evt_1"}',
  jsonb_build_object('Stripe-Signature', format('t=%s,v1=%s', ts, encode(vault.hmac('github_hook', ts || '.{"id":"evt_1"}'), 'hex')))) AS stripe_hour_old
  FROM (SELECT (extract(epoch FROM now())::bigint - 3600)::text AS ts) t;
RESET ROLE;
-- Slack's and Standard Webhooks' documented examples (old timestamps: a wide tolerance).
SELECT vault.create_secret('8f742231b10e8888abcd99yyyzzz85a5', 'slack_hook') IS NOT NULL AS created;
SELECT vault.create_secret('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'standard_hook') IS NOT NULL AS created;
SET ROLE regress_app;
SELECT vault.verify_webhook('slack', 'slack_hook',
  'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
  '{"X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"}',
  '100 years') AS slack_ok;
SELECT vault.verify_webhook('standard', 'standard_hook', '{"test": 2432232314}',
  '{"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330", "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}',
  '100 years') AS standard_ok,
       vault.verify_webhook('standard', 'standard_hook', '{"test": 2432232314}',
  '{"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330", "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}') AS standard_too_old;
-- A secret that is not base64 after whsec_ is the wrong kind of secret for 'standard'.
SELECT vault.verify_webhook('standard', 'github_hook', 'x', '{"webhook-id": "a", "webhook-timestamp": "1", "webhook-signature": "v1,AA=="}');
\echo :SQLSTATE

-- JWTs with a secret: HS256 / HS512, exactly the given claims, exp and nbf.
SELECT vault.sign_jwt('jefe', '{"sub":"42","admin":true}') AS hs256;
SELECT split_part(vault.sign_jwt('jefe', '{"sub":"42"}', 'HS512'), '.', 1) AS hs512_header;
SELECT vault.verify_jwt('jefe', vault.sign_jwt('jefe', '{"sub":"42","admin":true}')) AS claims;
SELECT vault.verify_jwt('jefe', vault.sign_jwt('jefe', jsonb_build_object('exp', extract(epoch FROM now()) - 10))) AS expired,
       vault.verify_jwt('jefe', vault.sign_jwt('jefe', jsonb_build_object('nbf', extract(epoch FROM now()) + 600))) AS not_yet,
       vault.verify_jwt('jefe', vault.sign_jwt('jefe', jsonb_build_object('exp', extract(epoch FROM now()) + 600))) IS NOT NULL AS fresh,
       vault.verify_jwt('github_hook', vault.sign_jwt('jefe', '{}')) AS other_secret,
       vault.verify_jwt('jefe', 'eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.') AS alg_none,
       vault.verify_jwt('jefe', 'garbage') AS malformed;
SELECT vault.sign_jwt('jefe', '{}', 'none');
\echo :SQLSTATE
SELECT vault.sign_jwt('jefe', '{}', 'EdDSA');
\echo :SQLSTATE
SELECT vault.sign_jwt('jefe', '[1]');
\echo :SQLSTATE
SELECT vault.sign_jwt('nope', '{}');
\echo :SQLSTATE
SELECT vault.verify_jwt('nope', 'x.y.z');
\echo :SQLSTATE
RESET ROLE;

-- Non-exportable secrets: used, never returned, also not to vault_admin.
SET ROLE regress_uadmin;
SELECT vault.create_secret('x', 'made_locked', new_exportable => false) IS NOT NULL AS created;
SELECT exportable, decrypted_secret IS NULL AS hidden FROM vault.secrets JOIN vault.decrypted_secrets USING (id, name) WHERE name = 'made_locked';
INSERT INTO vault.secrets (id, name, secret, exportable) VALUES ('00000000-0000-4000-8000-0000000000c1', 'jefe_locked', 'Jefe', false);
SELECT name, decrypted_secret IS NULL AS hidden FROM vault.decrypted_secrets WHERE name = 'jefe_locked';
SELECT masked_secret FROM vault.masked_secrets WHERE name = 'jefe_locked';
SELECT exportable FROM vault.secrets WHERE name = 'jefe_locked';
SELECT vault.read_secret('jefe_locked');
\echo :SQLSTATE
SELECT vault._decrypt(s.id, s.secret, s.nonce, s.key_id) AS direct_call FROM vault.secrets s WHERE s.name = 'jefe_locked';
SELECT vault._decrypt(s.id, s.secret, s.nonce, k.id, k.key_type, k.key_id, k.key_context, k.status, k.root_key_fingerprint) AS direct_call_with_key
  FROM vault.secrets s JOIN vault.keys k ON k.status = 'default' WHERE s.name = 'jefe_locked';
SELECT encode(vault.hmac('jefe_locked', 'what do ya want for nothing?'), 'hex') AS admin_uses;
-- A new value keeps the old one as a version: NULL there too.
SELECT vault.update_secret(id, 'Jefe2') FROM vault.secrets WHERE name = 'jefe_locked';
SELECT version, decrypted_secret IS NULL AS hidden FROM vault.decrypted_secret_versions WHERE name = 'jefe_locked';
-- Rolling back would need the value: refused.
SELECT vault.rollback_secret('00000000-0000-4000-8000-0000000000c1', 1);
\echo :SQLSTATE
-- Back to exportable: by no path.
SELECT vault.update_secret(id, new_exportable => true) FROM vault.secrets WHERE name = 'jefe_locked';
\echo :SQLSTATE
UPDATE vault.secrets SET exportable = true WHERE name = 'jefe_locked';
\echo :SQLSTATE
RESET ROLE;
-- Deleted and restored under its id with exportable = true (its ciphertext as it was): refused.
CREATE TEMP TABLE saved AS SELECT * FROM vault.secrets WHERE name = 'jefe_locked';
DELETE FROM vault.secrets WHERE name = 'jefe_locked';
INSERT INTO vault.secrets SELECT * FROM saved; -- as it was: fine
\echo :SQLSTATE
DELETE FROM vault.secrets WHERE name = 'jefe_locked';
UPDATE saved SET exportable = true;
INSERT INTO vault.secrets SELECT * FROM saved;
\echo :SQLSTATE
-- A new plaintext under that id is a new value, but an id once non-exportable returns none.
UPDATE saved SET secret = 'fresh', nonce = NULL;
INSERT INTO vault.secrets SELECT * FROM saved;
SELECT exportable, decrypted_secret IS NULL AS hidden FROM vault.secrets JOIN vault.decrypted_secrets USING (id) WHERE id = (SELECT id FROM saved);
DROP TABLE saved;
-- update_secret may set it to false.
SELECT vault.update_secret(id, new_exportable => false) FROM vault.secrets WHERE name = 'github_hook';
SELECT name, exportable, decrypted_secret IS NULL AS hidden FROM vault.secrets JOIN vault.decrypted_secrets USING (id, name) WHERE name IN ('github_hook', 'jefe') ORDER BY name;
SELECT vault.update_secret(id, new_exportable => false) FROM vault.secrets WHERE name = 'github_hook'; -- again: fine

-- Signing keys: made in the server, vault_admin's; used by vault_user; public key for viewers.
SET ROLE regress_app;
SELECT vault.create_signing_key('app_signer');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_uadmin;
SELECT vault.create_signing_key('app_signer', 'signs outgoing webhooks') IS NOT NULL AS created;
SELECT name, exportable, decrypted_secret IS NULL AS hidden FROM vault.secrets JOIN vault.decrypted_secrets USING (id, name) WHERE name = 'app_signer';
RESET ROLE;
CREATE ROLE regress_viewer LOGIN IN ROLE vault_viewer;
SET ROLE regress_viewer;
SELECT length(vault.public_key('app_signer')) AS public_key_bytes;
SELECT vault.sign('app_signer', 'x');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_app;
SELECT length(vault.sign('app_signer', 'payload')) AS signature_bytes,
       vault.verify_signature(vault.public_key('app_signer'), 'payload', vault.sign('app_signer', 'payload')) AS verifies,
       vault.verify_signature(vault.public_key('app_signer'), 'payload!', vault.sign('app_signer', 'payload')) AS other_message,
       vault.verify_signature('\x00', 'payload', '\x00') AS malformed;
-- RFC 8032 TEST 1 (empty message) through the SQL function.
SELECT vault.verify_signature('\xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '',
  '\xe5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b') AS rfc8032_test1;
SELECT split_part(vault.sign_jwt('app_signer', '{"iss":"app"}', 'EdDSA'), '.', 1) AS eddsa_header,
       vault.verify_jwt('app_signer', vault.sign_jwt('app_signer', '{"iss":"app"}', 'EdDSA')) AS eddsa_claims;
SELECT vault.sign_jwt('app_signer', '{}', 'HS256');
\echo :SQLSTATE
-- An HS256 token does not verify against a signing key (no algorithm confusion; the HMAC with
-- the public key as key is checked in core's tests).
SELECT vault.verify_jwt('app_signer', vault.sign_jwt('jefe', '{}')) AS hs256_for_signing_key;
SELECT vault.read_secret('app_signer');
\echo :SQLSTATE
SELECT vault.public_key('jefe');
\echo :SQLSTATE
SELECT vault.public_key('nope');
\echo :SQLSTATE
SELECT vault.sign('jefe', 'x');
\echo :SQLSTATE
RESET ROLE;

-- Column encryption: per-row context, versions, rewrap.
SET ROLE regress_uadmin;
SELECT vault.create_encryption_key('pii') IS NOT NULL AS created;
RESET ROLE;
SET ROLE regress_app;
CREATE TEMP TABLE customers (id int, ssn text);
INSERT INTO customers SELECT i, vault.encrypt('pii', 'ssn-' || i, 'user:' || i) FROM generate_series(1, 3) i;
SELECT id, left(ssn, 9) AS prefix, vault.decrypt_text('pii', ssn, 'user:' || id) AS plain FROM customers ORDER BY id;
SELECT vault.decrypt('pii', vault.encrypt('pii', '\x00ff'::bytea)) AS bytes;
SELECT vault.decrypt_text('pii', ssn, 'user:2') FROM customers WHERE id = 1;
\echo :SQLSTATE
SELECT vault.decrypt_text('pii', 'vault:v1:' || encode(set_byte(decode(substr(ssn, 10), 'base64'), 30, get_byte(decode(substr(ssn, 10), 'base64'), 30) # 1), 'base64'), 'user:1') FROM customers WHERE id = 1;
\echo :SQLSTATE
SELECT vault.decrypt_text('pii', 'not a ciphertext');
\echo :SQLSTATE
SELECT vault.decrypt_text('pii', 'vault:v9:' || substr(ssn, 10), 'user:1') FROM customers WHERE id = 1;
\echo :SQLSTATE
SELECT vault.decrypt_text('pii', vault.encrypt('pii', '\xff'::bytea));
\echo :SQLSTATE
SELECT vault.encrypt('jefe', 'x');
\echo :SQLSTATE
SELECT vault.rotate_encryption_key('pii');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_uadmin;
SELECT vault.rotate_encryption_key('pii') AS new_version;
SELECT vault.rotate_encryption_key('jefe');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_app;
SELECT left(vault.encrypt('pii', 'x'), 9) AS new_encryptions;
UPDATE customers SET ssn = vault.rewrap('pii', ssn, 'user:' || id);
SELECT id, left(ssn, 9) AS prefix, vault.decrypt_text('pii', ssn, 'user:' || id) AS plain FROM customers ORDER BY id;
SELECT length(vault.hmac('pii', 'x')) AS hmac_with_encryption_key;
RESET ROLE;
-- Old versions are never pruned by vault.max_versions.
SET vault.max_versions = 1;
SET ROLE regress_uadmin;
SELECT vault.rotate_encryption_key('pii') AS v3, vault.rotate_encryption_key('pii') AS v4;
RESET ROLE;
RESET vault.max_versions;
SET ROLE regress_app;
SELECT vault.decrypt_text('pii', vault.encrypt('pii', 'still here')) AS latest;
SELECT count(*) AS v2_rows_still_decrypt FROM customers WHERE vault.decrypt_text('pii', ssn, 'user:' || id) LIKE 'ssn-%';
RESET ROLE;

DROP TABLE customers;
DELETE FROM vault.secrets WHERE name IN ('jefe', 'github_hook', 'slack_hook', 'standard_hook', 'jefe_locked', 'made_locked', 'app_signer', 'pii');
SELECT count(*) AS kinds_left FROM vault.secret_kinds;
DROP ROLE regress_app, regress_reader, regress_signer, regress_uadmin, regress_nobody, regress_viewer;
