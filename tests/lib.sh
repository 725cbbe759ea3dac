# Shared helpers for the cluster tests and pg_regress: throwaway clusters run by the
# `postgres` OS user in a temporary directory, each on its own port with its socket there.
# Source it; call `cluster_init` once. Every cluster started is stopped on exit (trap).

PG_CONFIG=${PG_CONFIG:-pg_config}
PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir)}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VECTORS=${VECTORS:-$REPO/core/tests/data/supabase_vault_0.3.1.json}
PASSED=0
FAILED=0
FAILURES=()

cluster_init() {
  WORK=$(mktemp -d /tmp/vault_ext_test.XXXXXX)
  chmod 755 "$WORK"
  chown postgres: "$WORK"
  # Below Linux's ephemeral range (32768-60999): a port there can be taken by any outgoing
  # connection (curl, wrk), and a server listening on it then fails with EADDRINUSE.
  PORT_NEXT=$((20000 + RANDOM % 12000))
  STARTED=()
  trap cluster_cleanup EXIT
}

cluster_cleanup() {
  local d
  for d in "${STARTED[@]}"; do
    [ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
  done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}

# Background servers a test starts (pgvault serve): servers_cleanup kills and waits for them,
# then stops the clusters; tests that start any use `trap servers_cleanup EXIT`.
SERVERS=()
servers_cleanup() {
  local p
  for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${SERVERS[@]}"; do wait "$p" 2>/dev/null; done
  cluster_cleanup
}

# scram_only NAME: logins are checked by the database: scram-sha-256 for every role but the
# superuser on its socket. Before the cluster starts.
scram_only() {
  printf 'local all postgres trust\nlocal all all scram-sha-256\n' >"$(datadir "$1")/pg_hba.conf"
}

# wait_https NAME PORT: wait (up to 10 s) until the pgvault serve started as NAME (its output in
# $WORK/NAME.out) answers HTTPS on 127.0.0.1:PORT with the test CA; else show its output.
wait_https() {
  local _
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$WORK/ca.pem" "https://127.0.0.1:$2/" && return 0
    sleep 0.1
  done
  echo "pgvault serve $1 did not start:"; cat "$WORK/$1.out"; return 1
}

# test_certificate: a test CA ($WORK/ca.pem) and a server certificate for localhost and
# 127.0.0.1 signed by it ($WORK/server.pem, $WORK/server.key).
test_certificate() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pgvault-test-ca \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$WORK/server.key" -out "$WORK/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/san.ext"
  openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
    -extfile "$WORK/san.ext" -out "$WORK/server.pem" >/dev/null 2>&1
  [ -s "$WORK/server.pem" ] || { echo "could not make the test certificate"; return 1; }
}

# Servers run without RUST_BACKTRACE: with it set, pgrx puts a Rust backtrace in the DETAIL of
# every error that passes through a Rust frame (expected output would depend on the caller's
# environment).
as_pg() { runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"; }

# new_cluster NAME [postgresql.conf lines...]: initdb with vault_ext preloaded unless a
# line overrides shared_preload_libraries.
new_cluster() {
  local name=$1; shift
  local dir=$WORK/$name
  as_pg "$PG_BINDIR/initdb" -D "$dir" -E UTF8 --locale=C.UTF-8 -A trust -U postgres >"$WORK/$name.initdb.log" 2>&1 \
    || { echo "initdb failed for $name"; cat "$WORK/$name.initdb.log"; return 1; }
  {
    echo "port = $PORT_NEXT"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$WORK'"
    echo "shared_preload_libraries = 'vault_ext'"
    echo "fsync = off"
    local line
    for line in "$@"; do echo "$line"; done
  } >>"$dir/postgresql.conf"
  eval "PORT_$name=$PORT_NEXT"
  PORT_NEXT=$((PORT_NEXT + 1))
  STARTED+=("$dir")
}

datadir() { echo "$WORK/$1"; }
logfile() { echo "$WORK/$1.log"; }
port() { eval "echo \$PORT_$1"; }

start() { as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w -t 60 start >/dev/null 2>&1; }
stop() { as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/$1" -w -t 60 stop >/dev/null 2>&1; }
restart() { stop "$1"; start "$1"; }

# sql NAME 'statements' [db]: run as superuser postgres; prints tuples only, unaligned.
sql() {
  "$PG_BINDIR/psql" -h "$WORK" -p "$(port "$1")" -U "${PGUSER_AS:-postgres}" -d "${3:-postgres}" \
    -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1
}

# bg_sql NAME APPNAME 'statements' [db]: like sql, but its session carries application_name
# APPNAME (so pg_stat_activity can find it); run it in the background with &.
bg_sql() {
  PGAPPNAME=$2 "$PG_BINDIR/psql" -h "$WORK" -p "$(port "$1")" -U postgres -d "${4:-postgres}" \
    -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$3" 2>&1
}

# wait_for_backend NAME APPNAME CONDITION: wait (up to 60 s) until the session APPNAME has a
# backend whose pg_stat_activity row satisfies CONDITION (SQL over wait_event_type, wait_event,
# state...); prints "pid wait_event_type:wait_event", or nothing on timeout.
wait_for_backend() {
  local out _
  for _ in $(seq 600); do
    out=$(sql "$1" "SELECT pid || ' ' || coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-')
                     FROM pg_stat_activity WHERE application_name = '$2' AND ($3)")
    case "$out" in [0-9]*' '*) echo "$out"; return 0 ;; esac
    sleep 0.1
  done
  return 1
}

# grep_data NEEDLE DIR...: "found" or "absent" for a fixed string anywhere in the files under
# the directories; any grep error (unreadable file, missing directory) is reported, not hidden.
grep_data() {
  local needle=$1 rc; shift
  grep -rqaF -e "$needle" -- "$@" 2>"$WORK/grep.err"
  rc=$?
  case $rc in
    0) echo found ;;
    1) echo absent ;;
    *) echo "grep error $rc: $(head -3 "$WORK/grep.err")" ;;
  esac
}

# A key file with mode 0600 owned by postgres: write_key DIR/FILE HEX
write_key() {
  printf '%s\n' "$2" >"$1"
  chown postgres: "$1"
  chmod 600 "$1"
}

ok() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
not_ok() {
  FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "not ok - $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/    /' | head -20
  return 0
}

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected: $2"$'\n'"actual:   $3"; fi
}

# check_contains NAME NEEDLE HAYSTACK
check_contains() {
  case "$3" in
    *"$2"*) ok "$1" ;;
    *) not_ok "$1" "expected to contain: $2"$'\n'"actual: $3" ;;
  esac
}

# check_absent NAME NEEDLE HAYSTACK
check_absent() {
  case "$3" in
    *"$2"*) not_ok "$1" "must not contain: $2" ;;
    *) ok "$1" ;;
  esac
}

summary() {
  echo
  [ "$FAILED" -eq 0 ] || printf 'failed: %s\n' "${FAILURES[@]}"
  echo "$1: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
