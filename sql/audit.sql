-- vault_ext: the audit trail (vault.audit_log): triggers and retention.

-- Every row is written by vault_ext's Rust code (src/vault/audit.rs), never by the caller:
-- row triggers note each change with the role ids and time read from the backend, and the
-- notes of a transaction are inserted just before it commits, as the extension owner. Nobody
-- else may INSERT, UPDATE or DELETE audit rows (not even vault_admin), so a row cannot name
-- another role or another time. Trigger functions cannot be called from SQL.
CREATE TRIGGER secrets_audit_create AFTER INSERT ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_create();
-- Per row: what changed (the value shows as a new version, never as text; an id change with
-- the old id); re-encryptions without a change of value make one `reencrypt` row per statement.
CREATE TRIGGER secrets_audit_update AFTER UPDATE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_update();
CREATE TRIGGER secrets_audit_update_end AFTER UPDATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault.secrets_audit_reencrypt();
CREATE TRIGGER secrets_audit_delete AFTER DELETE ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault.secrets_audit_delete();
-- TRUNCATE vault.secrets also empties vault.secret_acl and vault.secret_versions (the library
-- adds them to the statement): one `truncate` row with the three counts.
CREATE TRIGGER secrets_audit_truncate BEFORE TRUNCATE ON vault.secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault.secrets_audit_truncate();

CREATE TRIGGER secret_acl_audit AFTER INSERT OR DELETE ON vault.secret_acl
  FOR EACH ROW EXECUTE FUNCTION vault.secret_acl_audit();

-- Keys: create_key, update_key (changed columns, old and new: metadata only), delete_key, truncate.
CREATE TRIGGER keys_audit AFTER INSERT OR UPDATE OR DELETE ON vault.keys
  FOR EACH ROW EXECUTE FUNCTION vault.keys_audit();
CREATE TRIGGER keys_audit_truncate AFTER TRUNCATE ON vault.keys
  FOR EACH STATEMENT EXECUTE FUNCTION vault.keys_audit();

-- The only way to remove audit rows: older than the given age and than
-- vault.audit_min_retention (which only a superuser can lower), itself audited.
COMMENT ON FUNCTION vault.purge_audit_log(interval) IS 'Delete audit rows older than the interval, never younger than vault.audit_min_retention (the retention function); logs itself.';
