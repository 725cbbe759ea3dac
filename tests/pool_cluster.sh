#!/usr/bin/env bash
# Tier 4: vault_ext behind pgbouncer in transaction mode with one server connection, used the
# way PostgREST uses it: one login role (authenticator) that switches to the request's role
# with SET LOCAL ROLE inside each transaction. Alternating roles on that one backend must get
# exactly what their grants allow on every transaction (per-secret grants, the masked view,
# read_secret, decrypted_secrets), and vault.audit_reads must name the switched-to role.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
[ -x "$PGBOUNCER" ] || { echo "pgbouncer not found at $PGBOUNCER (apt-get install pgbouncer)"; exit 1; }

echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version); $("$PGBOUNCER" --version | head -1)"
new_cluster pool "listen_addresses = '127.0.0.1'" "vault.audit_reads = on" "log_error_verbosity = default"
start pool || { cat "$(logfile pool)"; exit 1; }
PGPORT_POOL=$(port pool)
PB_PORT=$((PGPORT_POOL + 1000))

sql pool "CREATE EXTENSION vault_ext" >/dev/null
# authenticator logs in and has no rights of its own (NOINHERIT): it may only become the others.
sql pool "
  CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'pool-test-password';
  CREATE ROLE web_viewer NOLOGIN;  GRANT vault_viewer TO web_viewer;
  CREATE ROLE web_reader NOLOGIN;  GRANT vault_reader TO web_reader;
  CREATE ROLE web_billing NOLOGIN; GRANT vault_reader TO web_billing;
  CREATE ROLE web_admin NOLOGIN;   GRANT vault_admin TO web_admin;
  CREATE ROLE web_anon NOLOGIN;
  GRANT web_viewer, web_reader, web_billing, web_admin, web_anon TO authenticator;
  SELECT vault.create_secret('sk-billing-0123456789abcdef', 'billing_key');
  SELECT vault.create_secret('pk-shared-0123456789abcdef', 'shared_key');
  SELECT vault.create_secret('sk-payroll-0123456789abcdef', 'payroll_key');
  SELECT vault.grant_secret(id, 'web_billing') FROM vault.secrets WHERE name = 'billing_key';" >/dev/null
BILLING_ID=$(sql pool "SELECT id FROM vault.secrets WHERE name = 'billing_key'")
SHARED_ID=$(sql pool "SELECT id FROM vault.secrets WHERE name = 'shared_key'")

# pgbouncer: transaction pooling, a single server connection for every client.
cat >"$WORK/userlist.txt" <<'EOF'
"authenticator" "pool-test-password"
EOF
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$PGPORT_POOL dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 50
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
chown postgres: "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
chmod 600 "$WORK/userlist.txt"
stop_pgbouncer() {
  [ -f "$WORK/pgbouncer.pid" ] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null
  local _
  for _ in $(seq 50); do [ -f "$WORK/pgbouncer.pid" ] || break; sleep 0.1; done
}
trap 'stop_pgbouncer; cluster_cleanup' EXIT
trap 'exit 1' INT TERM HUP PIPE # a killed run still stops what it started (EXIT trap)
as_pg "$PGBOUNCER" -d "$WORK/pgbouncer.ini" || { cat "$WORK/pgbouncer.log"; exit 1; }
for _ in $(seq 50); do [ -f "$WORK/pgbouncer.pid" ] && break; sleep 0.1; done

# tx ROLE 'query': one transaction through pgbouncer, as a new client, switching to ROLE
# (none: stay authenticator). Prints the backend pid line first, then the query's output or
# error; the statements go one by one so a failed one leaves the server connection idle.
tx() {
  local setrole=""
  [ "$1" = none ] || setrole="SET LOCAL ROLE $1;"
  PGPASSWORD=pool-test-password timeout 20 "$PG_BINDIR/psql" -h 127.0.0.1 -p "$PB_PORT" -U authenticator -d app \
    -XAtq -v VERBOSITY=default 2>&1 <<EOF
BEGIN;
$setrole
SELECT 'backend ' || pg_backend_pid();
$2;
COMMIT;
EOF
}
# value ROLE 'query': the output of tx without the backend line (and records that line).
value() {
  local out
  echo "$1" >>"$WORK/calls"
  out=$(tx "$1" "$2")
  printf '%s\n' "$out" | grep '^backend ' >>"$WORK/backends"
  printf '%s\n' "$out" | grep -v '^backend '
}

check "pgbouncer answers and the role switch works" "web_reader authenticator" \
  "$(value web_reader "SELECT current_user || ' ' || session_user")"

READ_BILLING="SELECT vault.read_secret('billing_key')"
VIEW_BILLING="SELECT coalesce(decrypted_secret, 'NULL') FROM vault.decrypted_secrets WHERE name = 'billing_key'"
VIEW_SHARED="SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'shared_key'"
MASKED="SELECT string_agg(name || '=' || masked_secret, ',' ORDER BY name) FROM vault.masked_secrets"
# A secret with per-secret grants is masked as **** for everyone but its grantees.
MASKED_EXPECT="billing_key=****,payroll_key=sk-p****cdef,shared_key=pk-s****cdef"

# Three rounds of alternating roles on the one server connection; every refusal comes right
# after a transaction of a role that was allowed the same thing.
for round in 1 2 3; do
  check "round $round: web_billing reads its granted secret with read_secret" "sk-billing-0123456789abcdef" "$(value web_billing "$READ_BILLING")"
  check_contains "round $round: web_reader is refused the granted secret right after (42501)" \
    "ERROR:  permission denied for secret \"billing_key\"" "$(value web_reader "$READ_BILLING")"
  check "round $round: web_billing sees it in decrypted_secrets" "sk-billing-0123456789abcdef" "$(value web_billing "$VIEW_BILLING")"
  check "round $round: web_reader sees NULL for it in decrypted_secrets" "NULL" "$(value web_reader "$VIEW_BILLING")"
  check "round $round: web_reader reads the ungranted secret" "pk-shared-0123456789abcdef" "$(value web_reader "$VIEW_SHARED")"
  check_contains "round $round: web_viewer is refused decrypted_secrets right after" "permission denied for view decrypted_secrets" \
    "$(value web_viewer "$VIEW_SHARED")"
  check "round $round: web_billing's masked listing shows its granted secret's mask" "billing_key=sk-b****cdef,payroll_key=sk-p****cdef,shared_key=pk-s****cdef" \
    "$(value web_billing "$MASKED")"
  check "round $round: web_viewer right after gets **** for that secret" "$MASKED_EXPECT" "$(value web_viewer "$MASKED")"
  check_contains "round $round: web_viewer is refused read_secret" "permission denied for function read_secret" \
    "$(value web_viewer "SELECT vault.read_secret('shared_key')")"
  check "round $round: web_reader reads the shared secret with read_secret" "pk-shared-0123456789abcdef" \
    "$(value web_reader "SELECT vault.read_secret('shared_key')")"
  check_contains "round $round: web_anon is refused read_secret right after" "permission denied for schema vault" \
    "$(value web_anon "SELECT vault.read_secret('shared_key')")"
  check_contains "round $round: web_anon is refused masked_secrets right after a viewer" "permission denied for schema vault" \
    "$(value web_viewer "$MASKED" >/dev/null; value web_anon "$MASKED")"
  check_contains "round $round: authenticator itself (no SET ROLE) is refused after a reader" "permission denied for schema vault" \
    "$(value web_reader "$VIEW_SHARED" >/dev/null; value none "$VIEW_SHARED")"
done
check "SET LOCAL ROLE ends with its transaction" "authenticator" \
  "$(value web_admin "SELECT 1" >/dev/null; value none "SELECT current_user")"

# Grants changed through the pool act on the next transaction of the same server connection.
value web_admin "SELECT vault.grant_secret(id, 'web_billing') FROM vault.secrets WHERE name = 'payroll_key'" >/dev/null
check_contains "a grant made in one transaction refuses web_reader in the next" "ERROR:  permission denied for secret \"payroll_key\"" \
  "$(value web_reader "SELECT vault.read_secret('payroll_key')")"
check "... while web_billing gets it" "sk-payroll-0123456789abcdef" "$(value web_billing "SELECT vault.read_secret('payroll_key')")"
value web_admin "SELECT vault.revoke_secret(id, 'web_billing') FROM vault.secrets WHERE name = 'payroll_key'" >/dev/null
check "after the revoke (last grant gone) web_reader reads it again" "sk-payroll-0123456789abcdef" \
  "$(value web_reader "SELECT vault.read_secret('payroll_key')")"

# Parallel clients: 6 at once, alternating roles, queue for the one server connection.
for i in 1 2 3 4 5 6; do
  if [ $((i % 2)) -eq 0 ]; then value web_billing "$READ_BILLING" >"$WORK/par_$i"
  else value web_reader "$READ_BILLING" >"$WORK/par_$i"; fi &
done
wait
par=""
for i in 1 2 3 4 5 6; do par+="$(grep -c 'sk-billing' "$WORK/par_$i")$(grep -c 'ERROR:  permission denied for secret' "$WORK/par_$i") "; done
check "parallel clients: billing reads, reader refused, each time" "01 10 01 10 01 10 " "$par"

NBACK=$(sort -u "$WORK/backends" | wc -l)
echo "# $(wc -l <"$WORK/calls") transactions through pgbouncer"
check "every transaction ran, all on one and the same server connection" "1 $(wc -l <"$WORK/calls")" \
  "$NBACK $(wc -l <"$WORK/backends")"

# audit_reads: the LOG line names the role switched to and authenticator as the session.
LOG=$(cat "$(logfile pool)")
check_contains "audit line names web_billing, session authenticator, and the secret" \
  "vault_ext audit: role \"web_billing\" (session \"authenticator\") read secret $BILLING_ID" "$LOG"
check_contains "audit line for web_reader's read of the shared secret" \
  "vault_ext audit: role \"web_reader\" (session \"authenticator\") read secret $SHARED_ID" "$LOG"
check_absent "no audit line for a refused read" "role \"web_reader\" (session \"authenticator\") read secret $BILLING_ID" "$LOG"
check_absent "no secret value in the server log" "0123456789abcdef" "$LOG"

stop_pgbouncer
check "pgbouncer stopped" "no" "$([ -f "$WORK/pgbouncer.pid" ] && echo yes || echo no)"
summary "pool tests"
