-- Secrets-manager features: tags, expiry, masking, vault_viewer. supabase_vault-style calls
-- keep working (the new parameters are trailing and optional).
\set VERBOSITY terse
SELECT vault.create_secret('sk-proj-abc123xyz789', 'openai', 'OpenAI key', NULL, ARRAY['prod', 'ai']) IS NOT NULL AS tagged;
SELECT vault.create_secret('short', 'pin', 'a PIN', NULL, ARRAY['dev']) IS NOT NULL AS tagged;
SELECT vault.create_secret('0123456789abcdef-long-enough', 'untagged') IS NOT NULL AS supabase_style;
SELECT vault.create_secret('ünïcödé-välüé-0123456789', 'unicode') IS NOT NULL AS created;
-- Filter by tag.
SELECT name, tags FROM vault.decrypted_secrets WHERE 'prod' = ANY (tags) ORDER BY name;
SELECT name, tags FROM vault.decrypted_secrets WHERE tags && ARRAY['dev', 'ai'] ORDER BY name;
SELECT name, tags FROM vault.decrypted_secrets WHERE tags = '{}' ORDER BY name;
-- update_secret: tags replaced only when given; the value and tags independently.
SELECT vault.update_secret(id, NULL, NULL, NULL, NULL, ARRAY['staging']) FROM vault.secrets WHERE name = 'pin';
SELECT vault.update_secret(id, 'new-pin') FROM vault.secrets WHERE name = 'pin';
SELECT name, decrypted_secret, tags FROM vault.decrypted_secrets WHERE name = 'pin';
-- Expiry.
UPDATE vault.secrets SET expires_at = now() + interval '1 day' WHERE name = 'openai';
UPDATE vault.secrets SET expires_at = now() + interval '40 days' WHERE name = 'pin';
UPDATE vault.secrets SET expires_at = now() - interval '1 hour' WHERE name = 'unicode';
SELECT name FROM vault.expiring_secrets('2 days');
SELECT name FROM vault.expiring_secrets();
SELECT name FROM vault.expiring_secrets('60 days');
-- The expiry change did not touch the ciphertext's value.
SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'openai';
-- Masking.
SELECT vault.mask('sk-proj-abc123xyz789') AS mask_20, vault.mask('0123456789abcdef') AS mask_16,
       vault.mask('0123456789abcde') AS mask_15, vault.mask('') AS mask_empty, vault.mask(NULL) IS NULL AS mask_null;
SELECT name, masked_secret, tags, expires_at IS NOT NULL AS expires FROM vault.masked_secrets ORDER BY name;
-- vault_viewer: metadata and masks, nothing else.
CREATE ROLE regress_viewer IN ROLE vault_viewer;
CREATE ROLE regress_granted;
SET ROLE regress_viewer;
SELECT name, masked_secret FROM vault.masked_secrets ORDER BY name;
SELECT name FROM vault.expiring_secrets('2 days');
SELECT decrypted_secret FROM vault.decrypted_secrets;
\echo :SQLSTATE
SELECT vault.read_secret('openai');
\echo :SQLSTATE
SELECT secret FROM vault.secrets;
\echo :SQLSTATE
RESET ROLE;
-- A secret with per-secret grants shows only **** to a viewer who is not a grantee.
SELECT vault.grant_secret(id, 'regress_granted') FROM vault.secrets WHERE name = 'openai';
SET ROLE regress_viewer;
SELECT name, masked_secret FROM vault.masked_secrets WHERE name = 'openai';
RESET ROLE;
-- vault_reader is a viewer too.
SELECT pg_has_role('vault_reader', 'vault_viewer', 'MEMBER') AS reader_is_viewer;
DELETE FROM vault.secrets;
DROP ROLE regress_viewer, regress_granted;
-- Tags with NULL elements are refused on every write path (22004): every client reads tags as
-- strings. A row arriving as ciphertext (a dump restore) is stored as it comes, and vault_ext's
-- own readers take it.
SELECT vault.create_secret('v1', 'nulltag', '', NULL, ARRAY['prod', NULL]);
\echo :SQLSTATE
SELECT vault.create_secret('v1', 'nulltag', '', NULL, ARRAY['prod']) IS NOT NULL AS created;
SELECT vault.update_secret(id, new_tags => ARRAY[NULL]::text[]) FROM vault.secrets WHERE name = 'nulltag';
\echo :SQLSTATE
INSERT INTO vault.secrets (name, secret, tags) VALUES ('nulltag2', 'v2', '{a,NULL}');
\echo :SQLSTATE
UPDATE vault.secrets SET tags = array_append(tags, NULL) WHERE name = 'nulltag';
\echo :SQLSTATE
SELECT name, tags FROM vault.secrets WHERE name LIKE 'nulltag%';
CREATE TEMP TABLE dumped AS SELECT * FROM vault.secrets WHERE name = 'nulltag';
DELETE FROM vault.secrets WHERE name = 'nulltag';
INSERT INTO vault.secrets SELECT id, name, description, secret, key_id, nonce, created_at, updated_at,
       ARRAY['prod', NULL], expires_at, version FROM dumped;
SELECT name, tags, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'nulltag';
SELECT name, tags, masked_secret FROM vault.masked_secrets WHERE name = 'nulltag';
SELECT vault.update_secret(id, 'v1-new', new_description => 'kept tags') FROM vault.secrets WHERE name = 'nulltag';
SELECT tags, decrypted_secret, description FROM vault.decrypted_secrets WHERE name = 'nulltag';
SELECT vault.update_secret(id, new_tags => ARRAY['prod']) FROM vault.secrets WHERE name = 'nulltag';
SELECT tags FROM vault.secrets WHERE name = 'nulltag';
DELETE FROM vault.secrets;
