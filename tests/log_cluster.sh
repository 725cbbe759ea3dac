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

# Statements that touch the vault without saying "vault" (issue 14, item 3). Each case runs
# twice: with the default vault.log_redact (its marker must not reach the log) and, as a
# positive control, with vault.log_redact = off (its marker, $O-..., must: the case does log it).
O=VISIBLE$RANDOM$RANDOM
psql_s() { "$PG_BINDIR/psql" -h "$WORK" -p "$(port logs)" -U postgres -d postgres -Xq -v VERBOSITY=verbose "$@" 2>&1; }
bench() { # bench MODE 'SQL' VAR=VALUE...: one transaction through pgbench's extended protocol
  local mode=$1 script=$WORK/bench.$RANDOM.sql; shift; printf '%s\n' "$1" >"$script"; shift
  local defs=() d; for d in "$@"; do defs+=(-D "$d"); done
  "$PG_BINDIR/pgbench" -h "$WORK" -p "$(port logs)" -U postgres -n -M "$mode" -t 1 "${defs[@]}" -f "$script" postgres >/dev/null 2>&1
}
sql logs "CREATE FUNCTION public.store_it(n text, v text) RETURNS uuid LANGUAGE sql AS \$\$ SELECT vault.create_secret(v, n) \$\$;
  CREATE PROCEDURE public.put(n text, v text) LANGUAGE plpgsql AS \$\$ BEGIN PERFORM vault.create_secret(v, n); END \$\$;
  CREATE FUNCTION public.wrap_it(n text, v text) RETURNS uuid LANGUAGE sql AS \$\$ SELECT public.store_it(n, v) \$\$;
  CREATE FUNCTION public.path_put(n text, v text) RETURNS void LANGUAGE sql SET search_path = public, vault
    AS \$\$ INSERT INTO secrets (name, secret) VALUES (n, v) \$\$;
  CREATE FUNCTION public.atomic_put(n text, v text) RETURNS uuid LANGUAGE sql BEGIN ATOMIC SELECT public.wrap_it(n, v); END;
  CREATE FUNCTION public.echo(v text) RETURNS text LANGUAGE sql AS \$\$ SELECT v \$\$" >/dev/null
for mode in dflt off; do
  if [ $mode = dflt ]; then P=$M; OFF=""; else P=$O; OFF="-c vault.log_redact=off"; fi
  SP="-c search_path=public,vault $OFF"
  # 1. Unqualified names under a search_path holding vault; bind parameters of such statements.
  PGOPTIONS="$SP" psql_s -c "INSERT INTO secrets (name, secret) VALUES ('sp-$mode', '$P-sp-insert')" \
    -c "UPDATE secrets SET secret = '$P-sp-update' WHERE name = 'sp-$mode'" \
    -c "PREPARE p(text, text) AS UPDATE secrets SET secret = \$2 WHERE name = \$1" \
    -c "EXECUTE p('sp-$mode', '$P-sp-execute')" >/dev/null
  PGOPTIONS="$SP" bench extended "UPDATE secrets SET secret = :v WHERE name = :n;" "n=sp-$mode" "v=$P-sp-bind"
  PGOPTIONS="$SP" bench prepared "UPDATE secrets SET secret = :v WHERE name = :n;" "n=sp-$mode" "v=$P-sp-prepared"
  # 2. Application functions and procedures using the vault, directly, transitively, through
  # their search_path or a SQL-standard body; the first statement of a session (nothing known
  # yet) and one calling a function another session created after this one looked.
  PGOPTIONS="$OFF" psql_s -c "SELECT 1" -c "SELECT public.store_it('f1-$mode', '$P-fn-select')" \
    -c "CALL public.put('f2-$mode', '$P-fn-call')" -c "SELECT public.wrap_it('f3-$mode', '$P-fn-transitive')" \
    -c "SELECT public.path_put('f4-$mode', '$P-fn-search-path')" -c "SELECT public.atomic_put('f5-$mode', '$P-fn-atomic')" \
    -c "SELECT public.echo('$O-fn-unrelated-$mode')" >/dev/null
  PGOPTIONS="$OFF" psql_s -c "SELECT public.store_it('f6-$mode', '$P-fn-first')" >/dev/null
  PGOPTIONS="$OFF" psql_s -c "SELECT 1" \
    -c "\\! '$PG_BINDIR/psql' -h '$WORK' -p $(port logs) -U postgres -d postgres -Xq -c 'CREATE FUNCTION public.late_$mode(n text, v text) RETURNS uuid LANGUAGE sql AS \$\$ SELECT public.wrap_it(n, v) \$\$'" \
    -c "SELECT public.late_$mode('f7-$mode', '$P-fn-late')" >/dev/null
  # 3. A malformed COPY line of secrets, named without its schema.
  printf 'c-%s\t%s-copy-unqualified\textra\n' "$mode" "$P" >"$WORK/bad2.copy"
  PGOPTIONS="$SP" psql_s -c "\\copy secrets (name, secret) FROM '$WORK/bad2.copy'" >/dev/null
  # 4. Where a lexer reading literals differently from PostgreSQL would show them.
  PGOPTIONS="-c standard_conforming_strings=off $OFF" psql_s -c "SELECT vault.create_secret('x\\', $P-scs', 'scs-$mode')" >/dev/null
  PGOPTIONS="$OFF" psql_s -c "SELECT vault.create_secret(/* /* */ ' */ '$P-nested', 'nest-$mode')" \
    -c "INSERT INTO U&\"\\0076ault\".U&\"\\0073ecrets\" (name, secret) VALUES ('ue-$mode', '$P-uescape')" >/dev/null
  # 5. debug_print_*: constants printed as their bytes, for any statement.
  PGOPTIONS="-c debug_print_parse=on -c debug_print_rewritten=on -c debug_print_plan=on $OFF" \
    psql_s -c "SELECT vault.create_secret('$P-debug', 'dbg-$mode')" -c "CALL public.put('dbg2-$mode', '$P-debug-call')" \
    -c "SELECT '$O-plain-$mode' AS plain" >/dev/null
done
check "the values given above were stored" "13" \
  "$(sql logs "SELECT count(*) FROM vault.decrypted_secrets WHERE name LIKE '%-dflt' AND decrypted_secret LIKE '%$M-%'")"
# Each vault object named alone, unqualified, as a session's first statement.
for name in $(sql logs "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'vault'::regnamespace
                        AND c.relkind IN ('r', 'v', 'p', 'm', 'f')
                        UNION SELECT proname FROM pg_proc WHERE pronamespace = 'vault'::regnamespace"); do
  psql_s -c "SELECT '$M-name-$name' AS \"$name\"" >/dev/null
done
LOG=$(cat "$(logfile logs)")
FLAT=$(tr -d ' \n\t' <"$(logfile logs)")
bytes_of() { printf '%s' "$1" | od -An -tu1 | tr -d ' \n'; }
in_log() { grep -qF -- "$1" "$(logfile logs)" && echo yes || echo no; }
for case in "1 sp-insert" "1 sp-update" "1 sp-execute" "1 sp-bind" "1 sp-prepared" \
  "2 fn-select" "2 fn-call" "2 fn-transitive" "2 fn-search-path" "2 fn-atomic" "2 fn-first" "2 fn-late" \
  "3 copy-unqualified" "4 scs" "4 nested" "4 uescape" "5 debug" "5 debug-call"; do
  set -- $case
  check "$1. $2: no marker in the log" "0" "$(grep -c -- "$M-$2" "$(logfile logs)")"
  check "$1. $2 (control, vault.log_redact = off): the log shows it" "yes" "$(in_log "$O-$2")"
done
check "5. debug_print_*: the constant's bytes are masked" "no" "$(grep -qF -- "$(bytes_of "$M-debug")" <<<"$FLAT" && echo yes || echo no)"
check "5. ... also for a statement outside the vault" "no" "$(grep -qF -- "$(bytes_of "$O-plain-dflt")" <<<"$FLAT" && echo yes || echo no)"
check "5. (control) ... whose statement line is kept" "yes" "$(in_log "statement: SELECT '$O-plain-dflt' AS plain")"
check "5. (control, off) the bytes are in the log" "yes" "$(grep -qF -- "$(bytes_of "$O-debug")" <<<"$FLAT" && echo yes || echo no)"
check "5. the constant is shown masked" "yes" "$(in_log ":constvalue ")"
check "2. a function that does not use the vault stays readable" "yes" "$(in_log "$O-fn-unrelated-dflt")"
check "every vault object's name counts, before the backend has looked" "0" "$(grep -c -- "$M-name-" "$(logfile logs)")"
check "... (the names were logged)" "yes" "$(in_log "AS \"create_secret\"")"

# Errors that quote a decrypted value (issue 26, finding 3): a reader casts it. Each runs with
# the default mode, with vault.log_redact = all, and (control) with off, where the value shows.
sql logs "CREATE ROLE cast_reader IN ROLE vault_reader;
  SELECT vault.create_secret('$M-cast', 'cast-dflt'), vault.create_secret('$O-cast', 'cast-off');
  CREATE VIEW public.creds AS SELECT name AS n, decrypted_secret AS v FROM vault.decrypted_secrets;
  GRANT SELECT ON public.creds TO cast_reader" >/dev/null
for mode in vault all off; do
  if [ $mode = off ]; then name=cast-off; else name=cast-dflt; fi
  PGOPTIONS="-c vault.log_redact=$mode" psql_s -c "SET ROLE cast_reader" \
    -c "SELECT vault.read_secret('$name')::int" \
    -c "SELECT decrypted_secret::jsonb FROM vault.decrypted_secrets WHERE name = '$name'" \
    -c "SELECT vault.read_secret('$name')::date" \
    -c "SELECT v::numeric FROM public.creds WHERE n = '$name'" \
    -c "SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                               THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', false)" \
    -c "SELECT v::float8 FROM public.creds WHERE n = '$name'" >/dev/null
done
check "casts of a decrypted value: no marker in the log" "0" "$(grep -c -- "$M-cast" "$(logfile logs)")"
check "(control, off) the cast errors quote the value" "yes" "$(in_log "invalid input syntax for type integer: \"$O-cast\"")"
check "(control, off) ... in a JSON DETAIL and CONTEXT too" "yes" "$(in_log "JSON data, line 1: $O")"
check "(control, off) ... through a view whose name says nothing" "yes" "$(in_log "type numeric: \"$O-cast\"")"
check "(control, off) ... in a parallel worker and in its leader" "2" "$(grep -c "type double precision: \"$O-cast\"" "$(logfile logs)")"
check "a parallel worker's error is masked in the worker and the leader" "4" \
  "$(grep -c 'invalid input syntax for type double precision: "\*\*\*"' "$(logfile logs)")"
for what in integer date numeric; do
  check "a cast error stays readable, its value masked ($what)" "2" \
    "$(grep -c "ERROR:  22[0-9P]*: invalid input syntax for type $what: \"\*\*\*\"" "$(logfile logs)")"
done
check "a JSON error keeps its DETAIL, the token masked" "2" "$(grep -c 'DETAIL:  Token "\*\*\*" is invalid.' "$(logfile logs)")"
check "a JSON error's CONTEXT withholds the input" "2" "$(grep -c 'CONTEXT:  JSON data, line 1: (withheld by vault_ext)' "$(logfile logs)")"

# The second review's ways past that (issue 26): dynamic SQL built from a value (QUERY, CONTEXT
# "SQL statement", auto_explain's nested Query Text), unquoted input (`operator does not exist`,
# `invalid type name`), and a value kept past its transaction (a WITH HOLD cursor, a setting).
sql logs "SELECT vault.create_secret('$M-dyn', 'dyn-dflt'), vault.create_secret('$O-dyn', 'dyn-off');
  CREATE FUNCTION public.dyn(n text, pre text, post text) RETURNS void LANGUAGE plpgsql
    AS \$f\$ DECLARE v text := (SELECT c.v FROM public.creds c WHERE c.n = dyn.n); BEGIN EXECUTE pre || v || post; END \$f\$;
  CREATE FUNCTION public.held(c text) RETURNS void LANGUAGE plpgsql
    AS \$f\$ DECLARE r refcursor := c; v text; BEGIN FETCH r INTO v; PERFORM v::int; END \$f\$;
  GRANT EXECUTE ON FUNCTION public.dyn(text, text, text), public.held(text) TO cast_reader" >/dev/null
for mode in vault all off; do
  if [ $mode = off ]; then name=dyn-off; else name=dyn-dflt; fi
  PGOPTIONS="-c vault.log_redact=$mode" psql_s -c "SET ROLE cast_reader" \
    -c "SELECT public.dyn('$name', 'SELECT ', '')" \
    -c "SELECT public.dyn('$name', 'SELECT 1/0 AS \"', '\"')" \
    -c "SELECT public.dyn('$name', 'SELECT 1 AS \"', '\"')" \
    -c "SELECT vault.read_secret('$name')::regoper" \
    -c "SELECT vault.read_secret('$name')::regtype" >/dev/null
  PGOPTIONS="-c vault.log_redact=$mode" psql_s -c "SET ROLE cast_reader" \
    -c "BEGIN" -c "DECLARE c CURSOR WITH HOLD FOR SELECT v FROM public.creds WHERE n = '$name'" -c "COMMIT" \
    -c "SELECT public.held('c')" >/dev/null
  PGOPTIONS="-c vault.log_redact=$mode" psql_s -c "SET ROLE cast_reader" \
    -c "SELECT set_config('my.v', v, false) IS NOT NULL FROM public.creds WHERE n = '$name'" \
    -c "SELECT current_setting('my.v')::int" >/dev/null
done
check "dynamic SQL, unquoted input, cursors and settings: no marker in the log" "0" "$(grep -c -- "$M-dyn" "$(logfile logs)")"
check "(control, off) dynamic SQL built from the value shows it" "yes" "$(in_log "SELECT $O-dyn")"
check "(control, off) ... and so do the casts to regoper and a WITH HOLD cursor" "yes yes" \
  "$(in_log "operator does not exist: $O-dyn") $(in_log "type integer: \"$O-dyn\"")"
check "the internal query is withheld" "yes" "$(in_log "QUERY:  (withheld by vault_ext)")"
check "a CONTEXT's SQL statement is withheld" "yes" "$(in_log "SQL statement (withheld by vault_ext)")"
check "a nested statement's auto_explain Query Text is withheld" "yes" "$(in_log "Query Text: (a nested statement, withheld by vault_ext)")"
check "unquoted input after a colon is masked" "yes" "$(in_log "operator does not exist: ***")"

# Numeric constants in statements that touch the vault (issue 26, finding 5); in every statement
# under vault.log_redact = all. Markers are long digit strings.
D=4111$RANDOM$RANDOM$RANDOM
PGOPTIONS="-c vault.log_redact=vault" psql_s -c "SELECT vault.create_secret(${D}1::text, 'num-card')" \
  -c "SELECT vault.create_secret(to_char(${D}2, 'FM99999999999999999999'), 'num-char')" \
  -c "SELECT ${D}3 AS unrelated" >/dev/null
PGOPTIONS="-c vault.log_redact=all" psql_s -c "SELECT ${D}4 AS unrelated" >/dev/null
PGOPTIONS="-c vault.log_redact=off" psql_s -c "SELECT vault.create_secret(${D}5::text, 'num-off')" >/dev/null
check "numbers given to the vault were stored" "2" \
  "$(sql logs "SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret IN ('${D}1', '${D}2')")"
check "a number given to create_secret is not in the log" "0" "$(grep -c -- "${D}1" "$(logfile logs)")"
check "... nor one formatted by to_char" "0" "$(grep -c -- "${D}2" "$(logfile logs)")"
check "... nor, under vault.log_redact = all, one in any statement" "0" "$(grep -c -- "${D}4" "$(logfile logs)")"
check "the statement stays readable, the number masked" "yes" "$(in_log "statement: SELECT vault.create_secret(***::text, '***')")"
check "(control) a number outside the vault is logged" "yes" "$(in_log "SELECT ${D}3 AS unrelated")"
check "(control, off) the number is logged" "yes" "$(in_log "${D}5")"

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

# Using a secret without reading it (SPEC 11): payloads, plaintexts, claims, tokens and
# ciphertexts given to these functions are user data, masked like values; errors too.
U=USEDATA$RANDOM$RANDOM
sql logs "SELECT vault.create_secret('$U-key', 'use_key'); SELECT vault.create_encryption_key('use_enc');
          SELECT vault.create_signing_key('use_sig'); CREATE ROLE audited_user IN ROLE vault_user" >/dev/null
TOKEN=$(sql logs "SELECT vault.sign_jwt('use_key', '{\"sub\":\"$U-claim\"}')")
CT=$(sql logs "SELECT vault.encrypt('use_enc', '$U-plain', 'user:1')")
sql logs "SELECT vault.hmac('use_key', '$U-message'), vault.hmac_verify('use_key', '$U-verify', '\\x00');
          SELECT vault.verify_webhook('github', 'use_key', '$U-payload', '{\"X-Hub-Signature-256\": \"sha256=$U-sig\"}');
          SELECT vault.verify_jwt('use_key', '$TOKEN'); SELECT vault.decrypt_text('use_enc', '$CT', 'user:1');
          SELECT vault.rewrap('use_enc', '$CT', 'user:1'); SELECT vault.sign('use_sig', '$U-signed'::bytea)" >/dev/null
check_contains "a failing use is logged, masked" "22023" "$(sql logs "SELECT vault.decrypt_text('use_enc', '$U-not-a-ciphertext')")"
check_contains "a wrong context fails" "XX001" "$(sql logs "SELECT vault.decrypt_text('use_enc', '$CT', '$U-context')")"
PGOPTIONS="-c search_path=public,vault" psql_s -c "SELECT encode(hmac('use_key', '$U-unqualified'), 'hex')" >/dev/null
bench extended "SELECT vault.hmac('use_key', :m::text);" "m=$U-bind"
bench extended "SELECT vault.encrypt('use_enc', :m::text);" "m=$U-bind-encrypt"
sql logs "SELECT 1" >/dev/null # flush
check "the token was made" "yes" "$([ ${#TOKEN} -gt 40 ] && echo yes || echo no)"
check "use: no payload, plaintext or claim in the log" "0" "$(grep -c -- "$U-" "$(logfile logs)")"
check "use: no token in the log" "0" "$(grep -cF -- "${TOKEN##*.}" "$(logfile logs)")"
check "use: no ciphertext in the log" "0" "$(grep -cF -- "${CT:9:40}" "$(logfile logs)")"
check_contains "use: the statement stays readable" "statement: SELECT vault.hmac('***', '***')" "$(cat "$(logfile logs)")"
# vault.audit_reads: a use is logged like a read, with action use.
UID_=$(sql logs "SELECT id FROM vault.secrets WHERE name = 'use_key'")
sql logs "SET vault.audit_reads = on; SET ROLE audited_user; SELECT vault.hmac('use_key', 'x')" >/dev/null
check "audit_reads on: one use line, naming role, session and secret" "1" \
  "$(grep -c "LOG:  .*vault_ext audit: role \"audited_user\" (session \"postgres\") use secret $UID_" "$(logfile logs)")"
check "no value of a used secret in the log" "0" "$(grep -c -- "$U-" "$(logfile logs)")"

summary "log tests"
