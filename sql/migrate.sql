-- vault_ext: migration from supabase_vault (vault.migrate_from).

-- Copies every row of a table holding supabase_vault's vault.secrets (restored under another
-- name, e.g. supabase_vault_import.secrets) into vault.secrets, keeping ids, names,
-- descriptions and times. Each row is classified by vault._supabase_row_kind (src/vault/write.rs):
-- ciphertext under the loaded root key is stored byte for byte (it was written with the same
-- key derivation and cipher); plaintext (supabase_vault stores a plain INSERT as it comes) is
-- encrypted now with a fresh nonce; rows that look like ciphertext but do not decrypt
-- ("ambiguous") are plaintext when ambiguous_as_plaintext is true, skipped when it is false, and
-- when it is NULL (the default) plaintext if any row of the source decrypted (the root key is
-- right: supabase_vault has one), an error otherwise (probably the wrong root key). Rows whose id
-- is already in vault.secrets are left alone, so it is safe to run twice. One transaction: an
-- error (e.g. a name already taken by another secret) imports nothing.
CREATE FUNCTION vault.migrate_from(source regclass, ambiguous_as_plaintext boolean DEFAULT NULL)
RETURNS TABLE (kept_ciphertext bigint, encrypted_plaintext bigint, already_present bigint, skipped bigint)
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  r record;
  decrypting bigint := 0;
  ambiguous uuid[] := '{}';
  as_plaintext boolean;
BEGIN
  kept_ciphertext := 0;
  encrypted_plaintext := 0;
  already_present := 0;
  skipped := 0;
  FOR r IN EXECUTE pg_catalog.format(
    'SELECT s.id, s.name, s.description, s.secret, s.nonce, s.created_at, s.updated_at,
            vault._supabase_row_kind(s.id, s.secret, s.nonce) AS kind,
            EXISTS (SELECT FROM vault.secrets v WHERE v.id OPERATOR(pg_catalog.=) s.id) AS present
       FROM %s s ORDER BY s.created_at, s.id', source)
  LOOP
    IF r.kind OPERATOR(pg_catalog.<>) 'ambiguous' AND r.kind OPERATOR(pg_catalog.<>) 'plaintext' THEN
      decrypting := decrypting OPERATOR(pg_catalog.+) 1;
    END IF;
    IF r.present THEN
      already_present := already_present OPERATOR(pg_catalog.+) 1;
    ELSIF r.kind OPERATOR(pg_catalog.=) 'ciphertext' THEN
      -- With its nonce: the encrypting trigger checks it decrypts for this id and stores it as is.
      INSERT INTO vault.secrets (id, name, description, secret, key_id, nonce, created_at, updated_at)
      VALUES (r.id, r.name, r.description, r.secret, NULL, r.nonce, r.created_at, r.updated_at);
      kept_ciphertext := kept_ciphertext OPERATOR(pg_catalog.+) 1;
    ELSIF r.kind OPERATOR(pg_catalog.=) 'ciphertext_without_nonce' THEN
      INSERT INTO vault.secrets (id, name, description, secret, nonce, created_at, updated_at)
      VALUES (r.id, r.name, r.description, vault._decrypt(r.id, r.secret, NULL, NULL), NULL, r.created_at, r.updated_at);
      encrypted_plaintext := encrypted_plaintext OPERATOR(pg_catalog.+) 1;
    ELSIF r.kind OPERATOR(pg_catalog.=) 'plaintext' THEN
      -- Without a nonce: the encrypting trigger encrypts it under the default key.
      INSERT INTO vault.secrets (id, name, description, secret, nonce, created_at, updated_at)
      VALUES (r.id, r.name, r.description, r.secret, NULL, r.created_at, r.updated_at);
      encrypted_plaintext := encrypted_plaintext OPERATOR(pg_catalog.+) 1;
    ELSE
      ambiguous := ambiguous OPERATOR(pg_catalog.||) r.id;
    END IF;
  END LOOP;
  IF pg_catalog.cardinality(ambiguous) OPERATOR(pg_catalog.>) 0 THEN
    as_plaintext := COALESCE(ambiguous_as_plaintext, decrypting OPERATOR(pg_catalog.>) 0);
    IF ambiguous_as_plaintext IS NULL AND NOT as_plaintext THEN
      RAISE EXCEPTION '% row(s) of % look like ciphertext but do not decrypt under the loaded root key, and no row does',
        pg_catalog.cardinality(ambiguous), source
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = pg_catalog.format('The loaded root key has fingerprint %s; the first such row is %s.',
                                         vault.root_key_fingerprint(), ambiguous[1]),
              HINT = 'Load the root key supabase_vault used (README: Migrating from supabase_vault). If these values are plaintext that looks like base64, call vault.migrate_from(source, ambiguous_as_plaintext => true).';
    END IF;
    IF as_plaintext THEN
      FOR r IN EXECUTE pg_catalog.format(
        'SELECT s.id, s.name, s.description, s.secret, s.created_at, s.updated_at FROM %s s
          WHERE s.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY s.created_at, s.id', source) USING ambiguous
      LOOP
        INSERT INTO vault.secrets (id, name, description, secret, nonce, created_at, updated_at)
        VALUES (r.id, r.name, r.description, r.secret, NULL, r.created_at, r.updated_at);
        encrypted_plaintext := encrypted_plaintext OPERATOR(pg_catalog.+) 1;
      END LOOP;
    ELSE
      skipped := pg_catalog.cardinality(ambiguous);
      RAISE NOTICE '% row(s) that look like ciphertext but do not decrypt were not imported; the first is %',
        skipped, ambiguous[1];
    END IF;
  END IF;
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION vault.migrate_from(regclass, boolean) IS 'Copy supabase_vault secrets (a restored copy of its vault.secrets) into vault.secrets: ciphertext kept, plaintext encrypted; safe to run twice.';
