-- vault_ext: NOTIFY vault_ext_changed after each committed transaction that changed secrets or
-- their grants (SPEC §13), for `pgvault run --watch`. Any session may LISTEN, so the payload is
-- empty: never a name, a value or a ciphertext. PostgreSQL delivers a notification only when
-- the transaction commits (none after a rollback) and folds identical ones of one transaction
-- into one, so a transaction of many statements (or each batch of reencrypt_in_batches, which
-- commits per batch) sends exactly one.
CREATE FUNCTION vault._notify_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('vault_ext_changed', '');
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION vault._notify_changed() IS 'Trigger: NOTIFY vault_ext_changed (empty payload) when secrets or their grants change.';
CREATE TRIGGER secrets_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault._notify_changed();
CREATE TRIGGER secret_acl_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vault.secret_acl
  FOR EACH STATEMENT EXECUTE FUNCTION vault._notify_changed();
