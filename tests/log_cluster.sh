#!/usr/bin/env bash
# Tier 4: no plaintext given to the vault reaches the server log, with every logging setting
# that prints statements, parameters or errors turned on, auto_explain loaded, and both the
# simple and the extended query protocol.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init

new_cluster logs \
  "shared_preload_libraries = 'vault_ext, auto_explain'" \
  "log_statement = 'all'" "log_min_duration_statement = 0" \
  "log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
  "log_min_error_statement = error" "log_error_verbosity = verbose" \
  "auto_explain.log_min_duration = 0" "auto_explain.log_nested_statements = on"
start logs || { cat "$(logfile logs)"; exit 1; }
sql logs "CREATE EXTENSION vault_ext" >/dev/null
M=PLAINTEXT$RANDOM$RANDOM  # a marker; each value below starts with it

# Simple protocol: functions, direct DML, and failing statements.
sql logs "SELECT vault.create_secret('$M-create', 'n1')" >/dev/null
sql logs "SELECT vault.update_secret(id, '$M-update') FROM vault.secrets WHERE name = 'n1'" >/dev/null
sql logs "INSERT INTO vault.secrets (name, secret) VALUES ('n3', '$M-insert')" >/dev/null
sql logs "UPDATE vault.secrets SET secret = '$M-direct-update' WHERE name = 'n3'" >/dev/null
sql logs "UPDATE vault.decrypted_secrets SET secret = '$M-view-update' WHERE name = 'n3'" >/dev/null
check_contains "unique violation fails" "23505" "$(sql logs "SELECT vault.create_secret('$M-duplicate', 'n1')")"
check_contains "NOT NULL violation fails" "23502" \
  "$(sql logs "INSERT INTO vault.secrets (name, secret, description) VALUES ('n6', '$M-notnull', NULL)")"
check_contains "bad uuid fails" "22P02" "$(sql logs "SELECT vault.update_secret('not-a-uuid', '$M-baduuid')")"

# COPY of a malformed line: PostgreSQL quotes the raw input line in its CONTEXT.
printf 'n7\t%s-copy\textra\n' "$M" >"$WORK/bad.copy"
check_contains "malformed COPY fails" "22P04" "$("$PG_BINDIR/psql" -h "$WORK" -p "$(port logs)" -U postgres -d postgres -Xq \
  -v VERBOSITY=verbose -c "\\copy vault.secrets (name, secret) FROM '$WORK/bad.copy'" 2>&1)"

# PL/pgSQL: a function and a trigger that call the vault with literals, failing inside.
sql logs "CREATE FUNCTION store_it() RETURNS uuid LANGUAGE plpgsql AS \$\$
  BEGIN RETURN vault.create_secret('$M-plpgsql', 'n1'); END \$\$" >/dev/null
check_contains "PL/pgSQL call fails" "23505" "$(sql logs "SELECT store_it()")"
sql logs "CREATE TABLE app (v text);
  CREATE FUNCTION app_trg() RETURNS trigger LANGUAGE plpgsql AS \$\$
  BEGIN PERFORM vault.create_secret('$M-trigger', 'n1'); RETURN NEW; END \$\$;
  CREATE TRIGGER app_trg BEFORE INSERT ON app FOR EACH ROW EXECUTE FUNCTION app_trg()" >/dev/null
check_contains "trigger call fails" "23505" "$(sql logs "INSERT INTO app VALUES ('x')")"

# Extended protocol: pgbench sends :v as a bind parameter ($1). Markers here are digits.
N=918273$RANDOM$RANDOM
printf '\\set v %s\nSELECT vault.create_secret(:v::text, :n);\n' "$N" >"$WORK/ext_ok.sql"
printf '\\set v %s\nSELECT vault.create_secret((:v::bigint + 1)::text, :n);\n' "$N" >"$WORK/ext_dup.sql"
"$PG_BINDIR/pgbench" -h "$WORK" -p "$(port logs)" -U postgres -n -M extended -t 1 -D n=ext1 -f "$WORK/ext_ok.sql" postgres >/dev/null 2>&1
"$PG_BINDIR/pgbench" -h "$WORK" -p "$(port logs)" -U postgres -n -M extended -t 1 -D n=ext1 -f "$WORK/ext_dup.sql" postgres >/dev/null 2>&1
check "extended protocol wrote its secret" "$N" "$(sql logs "SELECT vault.read_secret('ext1')")"

# A control statement outside the vault stays in the log verbatim.
sql logs "SELECT 'CONTROL-$M' AS control" >/dev/null
sql logs "SELECT 1" >/dev/null # flush
LOG=$(cat "$(logfile logs)")
check_contains "the log has the control literal (logging is on)" "'CONTROL-$M'" "$LOG"
check_contains "auto_explain logged plans" "Query Text:" "$LOG"
check_contains "bind parameters are logged, masked" "\$1 = '***'" "$LOG"
check_contains "vault statements stay readable" "statement: SELECT vault.create_secret('***', '***')" "$LOG"
check_contains "failing statements are logged, masked" "STATEMENT:  SELECT vault.create_secret('***', '***')" "$LOG"
check_contains "PL/pgSQL context is logged, masked" "SQL statement \"SELECT vault.create_secret('***', '***')\"" "$LOG"
check_contains "COPY input in CONTEXT is withheld" "COPY secrets, line 1: (withheld by vault_ext)" "$LOG"
check_contains "the failing row of a vault table is withheld" "Failing row contains (withheld by vault_ext)." "$LOG"
check "no plaintext marker in the server log" "0" "$(grep -c "$M-" "$(logfile logs)")"
check "no extended-protocol marker in the server log" "0" "$(grep -c "$N" "$(logfile logs)")"
[ "$FAILED" -eq 0 ] || grep -nE "$M-|$N" "$(logfile logs)" | head -20

# vault.audit_reads: one LOG line per value handed out, naming the role and the secret id.
ID=$(sql logs "SELECT id FROM vault.secrets WHERE name = 'n3'")
sql logs "CREATE ROLE audited_reader IN ROLE vault_reader" >/dev/null
sql logs "SET ROLE audited_reader; SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'n3'" >/dev/null
check "audit_reads off (default): no audit line" "0" "$(grep -c 'vault_ext audit:' "$(logfile logs)")"
sql logs "SET vault.audit_reads = on; SET ROLE audited_reader;
          SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'n3'" >/dev/null
sql logs "SET vault.audit_reads = on; SELECT masked_secret FROM vault.masked_secrets WHERE name = 'n3'" >/dev/null
check "audit_reads on: one line for the read, naming role, session and secret" "1" \
  "$(grep -c "LOG:  .*vault_ext audit: role \"audited_reader\" (session \"postgres\") read secret $ID" "$(logfile logs)")"
check "... and one for the masked listing" "1" \
  "$(grep -c "vault_ext audit: role \"postgres\" (session \"postgres\") read the mask of secret $ID" "$(logfile logs)")"
check_contains "vault.audit_reads is superuser-only" "42501" \
  "$(sql logs "SET ROLE audited_reader; SET vault.audit_reads = off")"
check "still no plaintext marker in the server log" "0" "$(grep -c "$M-" "$(logfile logs)")"

summary "log tests"
