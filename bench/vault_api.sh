#!/usr/bin/env bash
# HashiCorp Vault's KV v2 read against pgvault's own API (issue 29): requests per second of
# `GET /v1/secret/data/<path>` (X-Vault-Token, as hvac sends it) and of
# `GET /api/v1/secrets/<name>` (Authorization: Bearer) with the same token and secret, on the
# same server, in alternating rounds of wrk (CLIENTS keep-alive connections, SECS seconds each);
# medians and the ratio (target >= 0.95x). Every answer must be a 200: wrk's non-2xx count is
# checked, and one answer of each is checked for the value first.
# PG_CONFIG=... bench/vault_api.sh   (SECS=5 ROUNDS=3 CLIENTS=2; NO_INSTALL=1 keeps the installed
# build; PGVAULT=path defaults to target/release/pgvault, built when missing)
set -u
. "$(dirname "$0")/lib.sh"
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-2}
PGVAULT=${PGVAULT:-$REPO/target/release/pgvault}
command -v wrk >/dev/null || { echo "this benchmark needs wrk (scripts/setup.sh installs it)"; exit 1; }
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
  SELECT vault.create_secret('sk-bench-0123456789abcdef', 'app/bench_key');" >/dev/null || exit 1
DSN="host=$WORK port=$(port b) dbname=postgres"
TOKEN=$("$PGVAULT" --dsn "$DSN user=postgres" token create bench --role svc_reader 2>/dev/null)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
P=$((PORT_NEXT + 100))
PGPASSWORD=$PW "$PGVAULT" --dsn "$DSN user=authenticator" serve --listen "127.0.0.1:$P" \
  --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" >"$WORK/serve.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$WORK/cert.pem" "https://127.0.0.1:$P/" && break; sleep 0.1; done
VAULT_URL="https://127.0.0.1:$P/v1/secret/data/app/bench_key"
API_URL="https://127.0.0.1:$P/api/v1/secrets/app%2Fbench_key"
v=$(curl -s --cacert "$WORK/cert.pem" -H "X-Vault-Token: $TOKEN" "$VAULT_URL" | jq -r .data.data.value)
a=$(curl -s --cacert "$WORK/cert.pem" -H "Authorization: Bearer $TOKEN" "$API_URL" | jq -r .value)
[ "$v $a" = "sk-bench-0123456789abcdef sk-bench-0123456789abcdef" ] || { echo "the two reads do not give the value: $v / $a"; exit 1; }

# run vault|api: requests per second over SECS seconds; every answer must be a 200.
run() {
  local out
  if [ "$1" = vault ]; then
    out=$(wrk -t "$CLIENTS" -c "$CLIENTS" -d "${SECS}s" -H "X-Vault-Token: $TOKEN" "$VAULT_URL")
  else
    out=$(wrk -t "$CLIENTS" -c "$CLIENTS" -d "${SECS}s" -H "Authorization: Bearer $TOKEN" "$API_URL")
  fi
  if printf '%s\n' "$out" | grep -q 'Non-2xx'; then
    echo "$1: some answers were not 200: $(printf '%s\n' "$out" | grep 'Non-2xx')" >&2
    exit 1
  fi
  printf '%s\n' "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}'
}
echo "# $("$PG_BINDIR/postgres" --version); $(nproc) CPUs; wrk, $CLIENTS connections, ${SECS}s per round, $ROUNDS rounds each"
run vault >/dev/null; run api >/dev/null # warm-up: pool, plans, TLS sessions
V=(); A=()
for r in $(seq "$ROUNDS"); do
  v=$(run vault) || exit 1; a=$(run api) || exit 1
  echo "round $r: /v1/secret/data $v req/s, /api/v1/secrets $a req/s"
  V+=("$v"); A+=("$a")
done
vm=$(median "${V[@]}"); am=$(median "${A[@]}")
echo "median: Vault KV v2 read $vm req/s, pgvault API read $am req/s, ratio vault/api $(awk -v a="$vm" -v b="$am" 'BEGIN {printf "%.2f", a / b}')x"
