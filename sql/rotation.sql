-- vault_ext: creating keys, key rotation, root key rotation, verification.

CREATE FUNCTION vault.create_key(
  name text DEFAULT NULL, key_type text DEFAULT 'aead-det', expires_at timestamptz DEFAULT NULL,
  comment text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  new_id uuid;
  next_num bigint;
BEGIN
  IF create_key.key_type IS NULL THEN
    RAISE EXCEPTION 'key_type must not be NULL' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Use aead-det, aead-ietf or aes256gcm.';
  END IF;
  PERFORM vault._check_key_type(create_key.key_type);
  -- Serialise key creation so two sessions cannot pick the same key_id.
  LOCK TABLE vault.keys IN SHARE ROW EXCLUSIVE MODE;
  SELECT COALESCE(pg_catalog.max(k.key_id) OPERATOR(pg_catalog.+) 1, 0) INTO next_num
    FROM vault.keys k WHERE k.key_context OPERATOR(pg_catalog.=) 'pgsodium'::bytea;
  INSERT INTO vault.keys (name, key_type, key_id, key_context, status, expires_at, comment, root_key_fingerprint)
  VALUES (create_key.name, create_key.key_type, next_num, 'pgsodium', 'valid', create_key.expires_at,
          create_key.comment, vault._loaded_fingerprint())
  RETURNING id INTO new_id;
  RETURN new_id;
END
$$;

CREATE FUNCTION vault.reencrypt_secrets(to_key uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  target uuid;
  moved bigint;
BEGIN
  IF NOT EXISTS (SELECT FROM vault.keys k WHERE k.id OPERATOR(pg_catalog.=) reencrypt_secrets.to_key) THEN
    RAISE EXCEPTION 'vault key % does not exist', reencrypt_secrets.to_key USING ERRCODE = 'no_data_found';
  END IF;
  -- The compatibility key is stored as key_id NULL.
  target := NULLIF(reencrypt_secrets.to_key, '00000000-0000-0000-0000-000000000000'::uuid);
  -- Changing key_id alone makes the trigger decrypt under the old key and encrypt under the new
  -- one with a fresh nonce, row by row, in this transaction: all or nothing.
  UPDATE vault.secrets s SET key_id = reencrypt_secrets.to_key
   WHERE s.key_id IS DISTINCT FROM target;
  GET DIAGNOSTICS moved = ROW_COUNT;
  -- Kept versions move too (re-encrypted by _rekey; the archive trigger is not involved).
  UPDATE vault.secret_versions v SET (secret, nonce, key_id) =
         (SELECT r.secret, r.nonce, r.key_id FROM vault._rekey(v.secret_id, v.secret, v.nonce, v.key_id, reencrypt_secrets.to_key) r)
   WHERE v.key_id IS DISTINCT FROM target;
  RETURN moved;
END
$$;

CREATE FUNCTION vault.rotate_key(new_key_type text DEFAULT NULL, reencrypt boolean DEFAULT true) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  old_id uuid;
  old_type text;
  new_id uuid;
BEGIN
  LOCK TABLE vault.keys IN SHARE ROW EXCLUSIVE MODE;
  SELECT k.id, k.key_type INTO old_id, old_type FROM vault.keys k WHERE k.status OPERATOR(pg_catalog.=) 'default';
  new_id := vault.create_key(NULL, COALESCE(rotate_key.new_key_type, old_type, 'aead-det'), NULL,
                             'created by vault.rotate_key');
  UPDATE vault.keys k SET status = 'expired' WHERE k.id OPERATOR(pg_catalog.=) old_id;
  UPDATE vault.keys k SET status = 'default' WHERE k.id OPERATOR(pg_catalog.=) new_id;
  -- reencrypt => false: new secrets go to the new key at once; the old ones (they still decrypt:
  -- expired keys do) move later with CALL vault.reencrypt_in_batches().
  IF rotate_key.reencrypt THEN
    PERFORM vault.reencrypt_secrets(new_id);
  END IF;
  PERFORM vault._audit_rotate_key(old_id, new_id);
  RETURN new_id;
END
$$;

-- Large tables: the same move as reencrypt_secrets, batch_size rows per transaction, so a writer
-- waits for one batch at most and an interrupted run keeps what it committed (call it again to
-- finish). A procedure with COMMIT cannot have SET search_path: it sets search_path = '' for
-- each of its transactions itself before any other statement, and names everything qualified.
CREATE PROCEDURE vault.reencrypt_in_batches(to_key uuid DEFAULT NULL, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
  target uuid;    -- the key's id
  stored uuid;    -- what key_id holds for it (NULL for the compatibility key)
  ids uuid[];
  last_id uuid := '00000000-0000-0000-0000-000000000000';
  last_version integer := -1;
  batch record;
  moved bigint := 0;
  moved_versions bigint := 0;
  n bigint;
BEGIN
  PERFORM pg_catalog.set_config('search_path', '', true);
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_key IS NULL THEN
    SELECT k.id INTO target FROM vault.keys k WHERE k.status = 'default';
  ELSE
    SELECT k.id INTO target FROM vault.keys k WHERE k.id = to_key;
  END IF;
  IF target IS NULL THEN
    RAISE EXCEPTION 'vault key % does not exist', COALESCE(to_key::text, '(default)') USING ERRCODE = 'no_data_found',
      HINT = 'See vault.keys; with to_key NULL the key whose status is default is used.';
  END IF;
  stored := NULLIF(target, '00000000-0000-0000-0000-000000000000'::uuid);
  -- Secrets, in id order (the primary key), so each batch starts where the last one ended.
  LOOP
    SELECT pg_catalog.array_agg(b.id ORDER BY b.id) INTO ids
      FROM (SELECT s.id FROM vault.secrets s
             WHERE s.id > last_id AND s.key_id IS DISTINCT FROM stored
             ORDER BY s.id LIMIT batch_size FOR UPDATE) b;
    EXIT WHEN ids IS NULL;
    -- Changing key_id alone makes the encrypting trigger re-encrypt each row.
    UPDATE vault.secrets s SET key_id = target WHERE s.id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    moved := moved + n;
    last_id := ids[pg_catalog.array_length(ids, 1)];
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', '', true);
  END LOOP;
  -- Kept versions, in (secret_id, version) order.
  last_id := '00000000-0000-0000-0000-000000000000';
  LOOP
    SELECT pg_catalog.count(*) AS n, (pg_catalog.array_agg(b.secret_id ORDER BY b.secret_id DESC, b.version DESC))[1] AS sid,
           (pg_catalog.array_agg(b.version ORDER BY b.secret_id DESC, b.version DESC))[1] AS ver
      INTO batch
      FROM (SELECT v.secret_id, v.version FROM vault.secret_versions v
             WHERE (v.secret_id, v.version) > (last_id, last_version) AND v.key_id IS DISTINCT FROM stored
             ORDER BY v.secret_id, v.version LIMIT batch_size FOR UPDATE) b;
    EXIT WHEN batch.n = 0;
    UPDATE vault.secret_versions v SET (secret, nonce, key_id) =
           (SELECT r.secret, r.nonce, r.key_id FROM vault._rekey(v.secret_id, v.secret, v.nonce, v.key_id, target) r)
     WHERE (v.secret_id, v.version) > (last_id, last_version)
       AND (v.secret_id, v.version) <= (batch.sid, batch.ver)
       AND v.key_id IS DISTINCT FROM stored;
    GET DIAGNOSTICS n = ROW_COUNT;
    moved_versions := moved_versions + n;
    last_id := batch.sid;
    last_version := batch.ver;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', '', true);
  END LOOP;
  RAISE NOTICE 'moved % secrets and % kept versions', moved, moved_versions;
END
$$;
COMMENT ON PROCEDURE vault.reencrypt_in_batches(uuid, integer) IS 'Move every secret and kept version not yet on to_key (NULL: the default key) to it, batch_size rows per transaction; resumable.';
CREATE VIEW vault.key_status AS
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
  LOCK TABLE vault.secret_versions IN SHARE ROW EXCLUSIVE MODE;
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
    UPDATE vault.secret_versions v SET (secret, nonce) =
           (SELECT r.secret, r.nonce FROM vault._rewrap(v.secret_id, v.secret, v.nonce, kr.id) r)
     WHERE COALESCE(v.key_id, '00000000-0000-0000-0000-000000000000'::uuid) OPERATOR(pg_catalog.=) kr.id;
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
  PERFORM vault._audit_rotate_root_key(moved);
  RETURN moved;
END
$$;
COMMENT ON FUNCTION vault.rotate_root_key() IS 'Re-encrypt every secret written under the previous root key for the current one; returns how many.';

CREATE FUNCTION vault.verify_secrets()
RETURNS TABLE (id uuid, name text, key_id uuid, status text, detail text)
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
DECLARE
  r record;
  loaded text := vault.root_key_fingerprint();
  previous text := vault._previous_fingerprint();
BEGIN
  FOR r IN
    -- Current values, then kept versions (ver NOT NULL).
    SELECT c.sid, c.sname, c.skey, c.secret, c.nonce, c.ver, k.id AS kid, k.key_type,
           k.key_id AS knum, k.key_context, k.status AS kstatus, k.root_key_fingerprint AS kfp
      FROM (SELECT s.id AS sid, s.name AS sname, s.key_id AS skey, s.secret, s.nonce, NULL::integer AS ver,
                   s.created_at AS at
              FROM vault.secrets s
            UNION ALL
            SELECT v.secret_id, s.name, v.key_id, v.secret, v.nonce, v.version, s.created_at
              FROM vault.secret_versions v JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) v.secret_id) c
      LEFT JOIN vault.keys k
        ON k.id OPERATOR(pg_catalog.=) COALESCE(c.skey, '00000000-0000-0000-0000-000000000000'::uuid)
     ORDER BY c.at, c.sid, c.ver NULLS FIRST
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
    IF r.ver IS NOT NULL THEN
      detail := 'version ' OPERATOR(pg_catalog.||) r.ver OPERATOR(pg_catalog.||) COALESCE(': ' OPERATOR(pg_catalog.||) detail, '');
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;
