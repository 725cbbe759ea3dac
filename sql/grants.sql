-- vault_ext: per-secret grants (vault.secret_acl).

CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secret_acl
  FOR EACH STATEMENT EXECUTE FUNCTION vault.grants_changed();

-- A secret with grants is stored bound as restricted (src/vault/write.rs): its ciphertext then
-- decrypts only where a grant allows the caller, not in another database nor after the secret
-- is deleted or renamed. When grants change, a no-op UPDATE of the secrets concerned lets the
-- encrypting trigger rebind them. These triggers sort after grants_changed, so that trigger has
-- already made this transaction's cached grants stale.
CREATE FUNCTION vault._rebind_secrets() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    UPDATE vault.secrets s SET id = s.id;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    UPDATE vault.secrets s SET id = s.id WHERE s.id IN (SELECT n.secret_id FROM new_rows n);
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    UPDATE vault.secrets s SET id = s.id WHERE s.id IN (SELECT o.secret_id FROM old_rows o);
  ELSE
    UPDATE vault.secrets s SET id = s.id
     WHERE s.id IN (SELECT n.secret_id FROM new_rows n UNION SELECT o.secret_id FROM old_rows o);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER secret_acl_rebind_insert AFTER INSERT ON vault.secret_acl
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();
CREATE TRIGGER secret_acl_rebind_delete AFTER DELETE ON vault.secret_acl
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();
CREATE TRIGGER secret_acl_rebind_update AFTER UPDATE ON vault.secret_acl
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();
CREATE TRIGGER secret_acl_rebind_truncate AFTER TRUNCATE ON vault.secret_acl
  FOR EACH STATEMENT EXECUTE FUNCTION vault._rebind_secrets();

-- The grantor and the time of a grant are the inserting role and now, whatever the INSERT says
-- (vault_admin may INSERT into vault.secret_acl directly). A superuser's rows keep theirs: that
-- is how pg_dump's rows restore.
CREATE FUNCTION vault._stamp_grant() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER), false) THEN
    NEW.granted_by := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)::pg_catalog.regrole;
    NEW.granted_at := CURRENT_TIMESTAMP;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER secret_acl_stamp BEFORE INSERT ON vault.secret_acl
  FOR EACH ROW EXECUTE FUNCTION vault._stamp_grant();

CREATE VIEW vault.secret_grants AS
SELECT a.secret_id, s.name AS secret_name, a.grantee, a.granted_by, a.granted_at, a.privilege
  FROM vault.secret_acl a JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
COMMENT ON VIEW vault.secret_grants IS 'Per-secret grants: who may read which secret besides vault_admin.';

CREATE FUNCTION vault.grant_secret(secret_id uuid, grantee regrole, privilege text DEFAULT 'read') RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
BEGIN
  IF grant_secret.privilege IS NULL OR grant_secret.privilege OPERATOR(pg_catalog.<>) ALL ('{read,use}'::text[]) THEN
    RAISE EXCEPTION 'privilege must be ''read'' or ''use'', not %', COALESCE(pg_catalog.quote_literal(grant_secret.privilege), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '''use'' lets the grantee compute with the secret (vault.hmac, vault.sign_jwt, ...); ''read'' also lets it read the value.';
  END IF;
  IF NOT EXISTS (SELECT FROM vault.secrets s WHERE s.id OPERATOR(pg_catalog.=) grant_secret.secret_id) THEN
    RAISE EXCEPTION 'secret % does not exist', grant_secret.secret_id USING ERRCODE = 'no_data_found';
  END IF;
  IF grant_secret.grantee IS NULL THEN
    RAISE EXCEPTION 'grantee must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- '-'::regrole is OID 0, no role at all (the first review of issue 26 stored such a grant).
  IF grant_secret.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN
    RAISE EXCEPTION 'grantee must be a role, not "-"' USING ERRCODE = 'undefined_object';
  END IF;
  -- Another privilege for the same grantee replaces it: revoked, then granted (both audited).
  DELETE FROM vault.secret_acl a
   WHERE a.secret_id OPERATOR(pg_catalog.=) grant_secret.secret_id
     AND a.grantee OPERATOR(pg_catalog.=) grant_secret.grantee
     AND a.privilege OPERATOR(pg_catalog.<>) grant_secret.privilege;
  INSERT INTO vault.secret_acl (secret_id, grantee, privilege)
  VALUES (grant_secret.secret_id, grant_secret.grantee, grant_secret.privilege)
  ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION vault.revoke_secret(secret_id uuid, grantee regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ''
AS $$
BEGIN
  DELETE FROM vault.secret_acl a
   WHERE a.secret_id OPERATOR(pg_catalog.=) revoke_secret.secret_id
     AND a.grantee OPERATOR(pg_catalog.=) revoke_secret.grantee;
  IF NOT FOUND THEN
    RAISE NOTICE 'role % had no grant on secret %', revoke_secret.grantee, revoke_secret.secret_id;
  END IF;
END
$$;
