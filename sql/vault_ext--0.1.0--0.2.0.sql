-- vault_ext 0.1.0 -> 0.2.0: root key rotation.
-- Frozen once released: later changes go into a new vault_ext--0.2.0--X.sql.
-- Runs with search_path = vault (the extension's schema), like the install script.

CREATE  FUNCTION "_previous_fingerprint"() RETURNS TEXT /* Option < & '_ str > */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'previous_fingerprint_wrapper';

CREATE  FUNCTION "_rewrap"(
	"id" uuid, /* Uuid */
	"secret" TEXT, /* & str */
	"nonce" bytea, /* Option < & [u8] > */
	"key_id" uuid /* Uuid */
) RETURNS TABLE (
	"secret" TEXT,  /* String */
	"nonce" bytea  /* Vec < u8 > */
)
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rewrap_wrapper';

CREATE OR REPLACE VIEW vault.key_status AS
SELECT k.id, k.name, k.key_type, k.key_id, k.status, k.created_at, k.expires_at,
       (SELECT pg_catalog.count(*) FROM vault.secrets s
         WHERE COALESCE(s.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) k.id) AS secrets,
       k.root_key_fingerprint,
       CASE WHEN k.root_key_fingerprint IS NULL
              OR k.root_key_fingerprint OPERATOR(pg_catalog.=) vault._loaded_fingerprint() THEN 'current'
            WHEN k.root_key_fingerprint OPERATOR(pg_catalog.=) vault._previous_fingerprint() THEN 'previous'
            ELSE 'not loaded' END AS root_key
  FROM vault.keys k;
COMMENT ON VIEW vault.key_status IS 'Keys with the number of secrets written under each and the root key they derive from (current, previous, not loaded).';

CREATE FUNCTION vault.rotate_root_key() RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  cur text := vault.root_key_fingerprint();
  prev text := vault._previous_fingerprint();
  kr record;
  n bigint;
  moved bigint := 0;
BEGIN
  IF prev IS NULL THEN
    RAISE EXCEPTION 'no previous root key is loaded'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set vault.previous_root_key_file (or vault.previous_getkey_script) to the old root key, restart the server, then run vault.rotate_root_key().';
  END IF;
  -- Writers and key changes wait until this transaction ends; readers do not. All or nothing:
  -- a crash or cancel leaves every secret under the previous root key, still readable.
  LOCK TABLE vault.keys IN SHARE ROW EXCLUSIVE MODE;
  LOCK TABLE vault.secrets IN SHARE ROW EXCLUSIVE MODE;
  FOR kr IN
    SELECT k.id, k.status FROM vault.keys k
     WHERE k.root_key_fingerprint OPERATOR(pg_catalog.=) prev ORDER BY k.created_at, k.id
  LOOP
    IF kr.status OPERATOR(pg_catalog.=) 'invalid' THEN
      RAISE WARNING 'vault key % is invalid: its secrets stay under the previous root key', kr.id
        USING HINT = 'They cannot be decrypted once the previous root key is removed; set the key valid and run vault.rotate_root_key() again to keep them.';
      CONTINUE;
    END IF;
    -- _rewrap decrypts under the previous root key and encrypts for the same key under the
    -- current one; the trigger stores the ciphertext as given (both secret and nonce change).
    UPDATE vault.secrets s SET (secret, nonce) =
           (SELECT r.secret, r.nonce FROM vault._rewrap(s.id, s.secret, s.nonce, kr.id) r)
     WHERE COALESCE(s.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) kr.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    moved := moved OPERATOR(pg_catalog.+) n;
    UPDATE vault.keys k2 SET root_key_fingerprint = cur WHERE k2.id OPERATOR(pg_catalog.=) kr.id;
  END LOOP;
  FOR kr IN
    SELECT k.root_key_fingerprint AS fp, pg_catalog.count(*) AS keys FROM vault.keys k
     WHERE k.root_key_fingerprint OPERATOR(pg_catalog.<>) cur AND k.root_key_fingerprint OPERATOR(pg_catalog.<>) prev
     GROUP BY 1
  LOOP
    RAISE WARNING '% vault key(s) belong to root key %, which is neither the current nor the previous one', kr.keys, kr.fp
      USING HINT = 'Their secrets do not decrypt here; see vault.key_status and vault.verify_secrets().';
  END LOOP;
  RETURN moved;
END
$$;
COMMENT ON FUNCTION vault.rotate_root_key() IS 'Re-encrypt every secret written under the previous root key for the current one; returns how many.';

CREATE OR REPLACE FUNCTION vault.verify_secrets()
RETURNS TABLE (id uuid, name text, key_id uuid, status text, detail text)
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  r record;
  loaded text := vault.root_key_fingerprint();
  previous text := vault._previous_fingerprint();
BEGIN
  FOR r IN
    SELECT s.id AS sid, s.name AS sname, s.key_id AS skey, s.secret, s.nonce, k.id AS kid, k.key_type,
           k.key_id AS knum, k.key_context, k.status AS kstatus, k.root_key_fingerprint AS kfp
      FROM vault.secrets s
      LEFT JOIN vault.keys k
        ON k.id OPERATOR(pg_catalog.=) COALESCE(s.key_id, '00000000-0000-0000-0000-000000000000'::uuid)
     ORDER BY s.created_at, s.id
  LOOP
    id := r.sid; name := r.sname; key_id := r.skey; detail := NULL;
    BEGIN
      PERFORM vault._decrypt(r.sid, r.secret, r.nonce, r.kid, r.key_type, r.knum, r.key_context, r.kstatus, r.kfp);
      status := 'ok';
      IF r.kfp OPERATOR(pg_catalog.=) previous THEN
        detail := 'under the previous root key: run vault.rotate_root_key()';
      END IF;
    EXCEPTION
      WHEN data_corrupted THEN
        IF r.kfp IS NOT NULL AND r.kfp OPERATOR(pg_catalog.<>) loaded AND r.kfp IS DISTINCT FROM previous THEN
          status := 'root_key_mismatch';
          detail := pg_catalog.format('key created under root key %s, server has %s', r.kfp, loaded);
        ELSE
          status := 'tampered';
          detail := 'the ciphertext does not authenticate';
        END IF;
      WHEN invalid_parameter_value THEN
        IF r.kstatus OPERATOR(pg_catalog.=) 'invalid' THEN
          status := 'key_invalid';
        ELSE
          status := 'tampered';
        END IF;
        detail := SQLERRM;
    END;
    RETURN NEXT;
  END LOOP;
END
$$;

-- vault.decrypted_secrets becomes a single-table view: _decrypt(id, secret, nonce, key_id) looks
-- the key up once per transaction instead of the view joining vault.keys (cheaper to plan).
CREATE  FUNCTION "_decrypt"(
	"id" uuid, /* Option < Uuid > */
	"secret" TEXT, /* Option < & str > */
	"nonce" bytea, /* Option < & [u8] > */
	"key_id" uuid /* Option < Uuid > */
) RETURNS TEXT /* Option < String > */
STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'decrypt_row_wrapper';

-- Decryption costs about as much as 100 simple operators: with that estimate the planner hands
-- big scans to parallel workers, without reaching the JIT threshold for ordinary table sizes.
ALTER FUNCTION vault._decrypt(uuid, text, bytea, uuid) COST 100;
CREATE OR REPLACE VIEW vault.decrypted_secrets AS
SELECT s.id, s.name, s.description, s.secret,
       vault._decrypt(s.id, s.secret, s.nonce, s.key_id) AS decrypted_secret,
       s.key_id, s.nonce, s.created_at, s.updated_at
  FROM vault.secrets s;

REVOKE ALL ON FUNCTION vault._decrypt(uuid, text, bytea, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault._decrypt(uuid, text, bytea, uuid) TO vault_reader;
-- vault.keys holds metadata only (never key bytes); _decrypt reads it as the calling role.
GRANT SELECT ON vault.keys TO vault_reader;
REVOKE EXECUTE ON FUNCTION vault._decrypt(uuid, text, bytea, uuid, text, bigint, bytea, text, text) FROM vault_reader;
GRANT EXECUTE ON FUNCTION vault._decrypt(uuid, text, bytea, uuid, text, bigint, bytea, text, text) TO vault_admin;

-- create_secret becomes a SQL function (faster per call; see finalize.sql).
CREATE OR REPLACE FUNCTION vault.create_secret(
  new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '',
  new_key_id uuid DEFAULT NULL
) RETURNS uuid
-- One INSERT: the BEFORE trigger encrypts (nonce NULL = plaintext) before the row is stored.
-- A SQL function without SET search_path, unlike the others: the body names only vault.secrets
-- (qualified), its parameters and COALESCE (syntax, not a function lookup), so no object on
-- the caller's search_path can be reached, and it runs about 25% faster per call.
LANGUAGE sql VOLATILE
AS $$
  INSERT INTO vault.secrets (secret, name, description, key_id)
  VALUES (new_secret, new_name, COALESCE(new_description, ''), new_key_id)
  RETURNING id
$$;

-- Dumps carry the compatibility key's row too; the insert trigger merges it on restore.
CREATE OR REPLACE FUNCTION vault._keys_one_default() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF NEW.status OPERATOR(pg_catalog.=) 'default' THEN
    UPDATE vault.keys k SET status = 'expired'
     WHERE k.status OPERATOR(pg_catalog.=) 'default' AND k.id OPERATOR(pg_catalog.<>) NEW.id;
  END IF;
  IF NEW.id OPERATOR(pg_catalog.=) '00000000-0000-0000-0000-000000000000'::uuid THEN
    UPDATE vault.keys k
       SET status = NEW.status, expires_at = NEW.expires_at, root_key_fingerprint = NEW.root_key_fingerprint
     WHERE k.id OPERATOR(pg_catalog.=) NEW.id;
    IF FOUND THEN
      RETURN NULL;
    END IF;
  END IF;
  RETURN NEW;
END
$$;
SELECT pg_catalog.pg_extension_config_dump('vault.keys', '');

REVOKE ALL ON FUNCTION vault._previous_fingerprint(), vault.rotate_root_key(),
                       vault._rewrap(uuid, text, bytea, uuid)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault._previous_fingerprint(), vault.rotate_root_key(),
                          vault._rewrap(uuid, text, bytea, uuid)
  TO vault_admin;
