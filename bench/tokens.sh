#!/usr/bin/env bash
# Service tokens against sessions: `GET /api/v1/secrets/{name}` on `pgvault serve`, requests per
# second with a Bearer token (each request: a pooled connection of the server's own role,
# vault.api_token_role, SET LOCAL ROLE, the read, COMMIT) and with a session cookie (the role's
# own connection), in the same run: 2 client processes, each one keep-alive connection (curl,
# N requests per process), alternating token / cookie rounds; medians and the ratio.
# PG_CONFIG=... bench/tokens.sh   (N=2000 ROUNDS=3; NO_INSTALL=1 keeps the installed build;
# PGVAULT=path defaults to target/release/pgvault, built when missing)
set -u
. "$(dirname "$0")/lib.sh"
N=${N:-2000}
ROUNDS=${ROUNDS:-3}
PGVAULT=${PGVAULT:-$REPO/target/release/pgvault}
install_release || { echo "install failed"; exit 1; }
if [ ! -x "$PGVAULT" ]; then
  (cd "$REPO" && cargo build --release -p pgvault >/dev/null 2>&1) || { echo "cannot build pgvault"; exit 1; }
fi
cluster_init
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; cluster_cleanup' EXIT
trap 'exit 1' INT TERM HUP PIPE

new_cluster b "password_encryption = 'scram-sha-256'"
scram_only b
start b || { cat "$(logfile b)"; exit 1; }
PW=Pw-$RANDOM-$RANDOM-x
sql b "CREATE EXTENSION vault_ext;
  CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '$PW';
  GRANT USAGE ON SCHEMA vault TO authenticator;
  CREATE ROLE svc_reader NOLOGIN IN ROLE vault_reader;
  GRANT svc_reader TO authenticator;
  CREATE ROLE web_reader LOGIN PASSWORD '$PW' IN ROLE vault_reader;
  SELECT vault.create_secret('sk-bench-0123456789abcdef', 'bench_key');" >/dev/null || exit 1
DSN="host=$WORK port=$(port b) dbname=postgres"
TOKEN=$("$PGVAULT" --dsn "$DSN user=postgres" token create bench --role svc_reader 2>/dev/null)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
P=$((PORT_NEXT + 100))
PGPASSWORD=$PW "$PGVAULT" --dsn "$DSN user=authenticator" serve --listen "127.0.0.1:$P" \
  --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" >"$WORK/serve.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$WORK/cert.pem" "https://127.0.0.1:$P/" && break; sleep 0.1; done
curl -s --cacert "$WORK/cert.pem" -c "$WORK/jar" -o /dev/null -H 'Content-Type: application/json' \
  --data-binary "{\"user\":\"web_reader\",\"password\":\"$PW\"}" "https://127.0.0.1:$P/api/v1/session"
URL="https://127.0.0.1:$P/api/v1/secrets/bench_key?i=[1-$N]"

# run MODE: requests per second of 2 clients x N keep-alive requests; every answer must carry
# the value.
run() {
  local auth start end ok
  if [ "$1" = token ]; then auth=(-H "Authorization: Bearer $TOKEN"); else auth=(-b "$WORK/jar"); fi
  start=$(date +%s.%N)
  curl -s --cacert "$WORK/cert.pem" "${auth[@]}" "$URL" >"$WORK/c1" &
  p1=$!
  curl -s --cacert "$WORK/cert.pem" "${auth[@]}" "$URL" >"$WORK/c2" &
  wait "$p1" $!
  end=$(date +%s.%N)
  ok=$(cat "$WORK/c1" "$WORK/c2" | grep -o '"value":"sk-bench-0123456789abcdef"' | wc -l)
  [ "$ok" -eq $((2 * N)) ] || { echo "$1: only $ok of $((2 * N)) answers had the value" >&2; exit 1; }
  echo "$end $start" | awk -v n=$((2 * N)) '{printf "%.0f", n / ($1 - $2)}'
}
echo "# $("$PG_BINDIR/postgres" --version); $(nproc) CPUs; 2 clients x $N requests, $ROUNDS rounds each"
run token >/dev/null; run cookie >/dev/null # warm-up: pools, plans, TLS sessions
T=(); C=()
for r in $(seq "$ROUNDS"); do
  t=$(run token) || exit 1; c=$(run cookie) || exit 1
  echo "round $r: token $t req/s, cookie $c req/s"
  T+=("$t"); C+=("$c")
done
tm=$(median "${T[@]}"); cm=$(median "${C[@]}")
echo "median: token (Bearer) $tm req/s, session cookie $cm req/s, ratio token/cookie $(awk -v a="$tm" -v b="$cm" 'BEGIN {printf "%.2f", a / b}')x"
