-- vault_ext: the audit trail (vault.audit_log): triggers and retention.

-- Audit: statement-level triggers with transition tables, one INSERT per statement (creates
-- are noted by a Rust row trigger and written at commit, see src/audit.rs). They run as the
-- writer, so current_role is who made the change (writers need INSERT on vault.audit_log,
-- which vault_admin has).
CREATE FUNCTION vault._audit_secrets() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  -- Creates are audited by the Rust row trigger secrets_audit_create (src/audit.rs): the hot path.
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
    SELECT 'delete', o.id, o.name, pg_catalog.jsonb_build_object('version', o.version)
      FROM old_rows o;
  ELSE
    -- Per row: what changed (the value shows as a new version, never as text).
    WITH changes AS (
      SELECT n.id, n.name, n.version, o.version AS old_version,
             pg_catalog.array_remove(ARRAY[
               CASE WHEN n.version OPERATOR(pg_catalog.<>) o.version THEN 'value' END,
               CASE WHEN n.name IS DISTINCT FROM o.name THEN 'name' END,
               CASE WHEN n.description IS DISTINCT FROM o.description THEN 'description' END,
               CASE WHEN n.tags IS DISTINCT FROM o.tags THEN 'tags' END,
               CASE WHEN n.expires_at IS DISTINCT FROM o.expires_at THEN 'expires_at' END,
               CASE WHEN n.key_id IS DISTINCT FROM o.key_id THEN 'key_id' END], NULL) AS fields,
             n.secret IS DISTINCT FROM o.secret AS rewritten
        FROM new_rows n JOIN old_rows o ON o.id OPERATOR(pg_catalog.=) n.id
    ), logged AS (
      INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
      SELECT 'update', c.id, c.name,
             pg_catalog.jsonb_build_object('changed', c.fields, 'version', c.version)
        FROM changes c
       WHERE c.fields OPERATOR(pg_catalog.<>) '{}' AND c.fields OPERATOR(pg_catalog.<>) '{key_id}'
      RETURNING 1
    )
    -- Re-encryption without a change of value (key rotation, a new key_id): one summary row.
    INSERT INTO vault.audit_log (action, detail)
    SELECT 'reencrypt', pg_catalog.jsonb_build_object('secrets', pg_catalog.count(*))
      FROM changes c
     WHERE c.rewritten AND (c.fields OPERATOR(pg_catalog.=) '{}' OR c.fields OPERATOR(pg_catalog.=) '{key_id}')
    HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER secrets_audit_create AFTER INSERT ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_create();
CREATE TRIGGER secrets_audit_update AFTER UPDATE ON vault.secrets
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_secrets();
CREATE TRIGGER secrets_audit_delete AFTER DELETE ON vault.secrets
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_secrets();

CREATE FUNCTION vault._audit_grants() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
    SELECT 'grant', a.secret_id, s.name, pg_catalog.jsonb_build_object('grantee', a.grantee::text)
      FROM new_rows a LEFT JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
  ELSE
    INSERT INTO vault.audit_log (action, secret_id, secret_name, detail)
    SELECT 'revoke', a.secret_id, s.name, pg_catalog.jsonb_build_object('grantee', a.grantee::text)
      FROM old_rows a LEFT JOIN vault.secrets s ON s.id OPERATOR(pg_catalog.=) a.secret_id;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER secret_acl_audit_insert AFTER INSERT ON vault.secret_acl
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_grants();
CREATE TRIGGER secret_acl_audit_delete AFTER DELETE ON vault.secret_acl
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vault._audit_grants();

-- The only way to remove audit rows: older than the given age, itself audited.
CREATE FUNCTION vault.purge_audit_log(older_than interval) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  purged bigint;
BEGIN
  IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) interval '0' THEN
    RAISE EXCEPTION 'older_than must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  DELETE FROM vault.audit_log a WHERE a.at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than);
  GET DIAGNOSTICS purged = ROW_COUNT;
  INSERT INTO vault.audit_log (session_role, "current_role", action, detail)
  -- SECURITY DEFINER hides the caller's current role; SET ROLE shows in the role setting.
  VALUES (SESSION_USER,
          CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.=) 'none' THEN SESSION_USER::text
               ELSE pg_catalog.current_setting('role') END,
          'purge_audit_log',
          pg_catalog.jsonb_build_object('older_than', older_than::text, 'rows', purged));
  RETURN purged;
END
$$;
COMMENT ON FUNCTION vault.purge_audit_log(interval) IS 'Delete audit rows older than the interval (the retention function); logs itself.';
