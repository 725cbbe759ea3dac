#!/usr/bin/env bash
# The web console's API against the database itself (issue 17's benchmark): requests per second
# of `GET /api/v1/secrets/{name}` over HTTPS (keep-alive, 2 client threads, one logged-in
# session, wrk) against the same lookups as `SELECT vault.read_secret(name)` over direct
# connections (pgbench, 2 clients), both as the same vault_reader role, with random names from
# the same N secrets, for the same time, alternately in one run on one cluster. Each figure is
# the median of ROUNDS (default 3); the ratio is web / direct (target >= 0.5x). Not part of the
# tests. Needs root; installs wrk and pgbouncer (apt) when missing, release builds of vault_ext
# (into the server of PG_CONFIG; skip with NO_INSTALL=1) and of pgvault.
#
# Two references, for what any program between the client and the database costs on this
# machine: the same pgbench lookups through pgbouncer (transaction pooling, a C proxy that only
# forwards: no TLS, no HTTP, no JSON), in every round; and GET /app.css (no database), once.
# CLIENTS (default 2) sets the clients on every side (wrk -c, pgbench -c).
#
#   PG_CONFIG=/usr/lib/postgresql/17/bin/pg_config bench/web.sh
#   ROUNDS=5 SECONDS_EACH=15 N=10000 bench/web.sh
#   SERVE_ARGS="--session-connections 1" bench/web.sh     # extra options for pgvault serve
#   PGVAULT=/path/to/pgvault bench/web.sh                   # that binary instead of a build
#   CLIENTS=8 SERVE_ARGS="--session-connections 8" bench/web.sh
set -u
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-10}
N=${N:-10000}
CLIENTS=${CLIENTS:-2}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1; } ||
    { echo "cannot install wrk"; exit 1; }
fi
if ! command -v pgbouncer >/dev/null; then
  echo "installing pgbouncer (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >/dev/null 2>&1 ||
    { echo "cannot install pgbouncer"; exit 1; }
fi
for tool in curl openssl; do
  command -v $tool >/dev/null || { echo "the benchmark needs $tool (scripts/setup.sh installs it)"; exit 1; }
done
install_release || { echo "the release build of vault_ext failed"; exit 1; }
if [ -z "${PGVAULT:-}" ]; then
  echo "building pgvault (release)"
  (cd "$REPO" && cargo build --release -p pgvault >/dev/null 2>&1) || { echo "the release build of pgvault failed"; exit 1; }
  PGVAULT=$REPO/target/release/pgvault
fi

cluster_init
SERVER=
bench_cleanup() {
  [ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
  [ -f "$WORK/pgbouncer/pid" ] && kill "$(cat "$WORK/pgbouncer/pid")" 2>/dev/null
  cluster_cleanup
}
trap bench_cleanup EXIT

new_cluster web "password_encryption = 'scram-sha-256'"
scram_only web
start web || { cat "$(logfile web)"; exit 1; }
PW=Bench-$RANDOM-$RANDOM
out=$(sql web "CREATE EXTENSION vault_ext;
  CREATE ROLE bench_reader LOGIN PASSWORD '$PW' IN ROLE vault_reader;
  SELECT count(vault.create_secret('sk-live-' || md5(i::text), 'secret_' || i)) FROM generate_series(1, $N) i") &&
  out=$(sql web "VACUUM ANALYZE") || { echo "setup failed: $out"; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
WPORT=$PORT_NEXT
env -u PGUSER -u PGPASSWORD -u PGSERVICE -u DATABASE_URL "$PGVAULT" --dsn "host=$WORK port=$(port web) dbname=postgres" \
  serve --listen "127.0.0.1:$WPORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" ${SERVE_ARGS:-} >"$WORK/serve.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  curl -sk -o /dev/null "https://127.0.0.1:$WPORT/" && break
  sleep 0.1
done
login=$(curl -sk -D - -o /dev/null -H 'Content-Type: application/json' \
  --data-binary "{\"user\": \"bench_reader\", \"password\": \"$PW\"}" "https://127.0.0.1:$WPORT/api/v1/session")
COOKIE=$(sed -nE 's/^[Ss]et-[Cc]ookie: (pgvault_session=[0-9a-f]+);.*/\1/p' <<<"$login")
[ -n "$COOKIE" ] || { echo "cannot log in to pgvault serve:"; echo "$login"; cat "$WORK/serve.out"; exit 1; }
probe=$(curl -sk -H "Cookie: $COOKIE" "https://127.0.0.1:$WPORT/api/v1/secrets/secret_1")
[ "$(sed -nE 's/.*"value":"([^"]*)".*/\1/p' <<<"$probe")" = "$(sql web "SELECT vault.read_secret('secret_1')")" ] ||
  { echo "GET /api/v1/secrets/secret_1 does not answer the value vault.read_secret gives"; exit 1; }

# wrk: a random name per request, every answer must be 200.
cat >"$WORK/get.lua" <<EOF
wrk.headers["Cookie"] = "$COOKIE"
local threads = 0
function setup(thread) threads = threads + 1; thread:set("seed", threads) end
function init(args) math.randomseed(os.time() * 100 + seed) end
request = function()
  return wrk.format("GET", "/api/v1/secrets/secret_" .. math.random(1, $N))
end
EOF
# pgbouncer in front of the same database: SCRAM both ways, the server's connections pooled
# per transaction, on a socket in the work directory.
mkdir -p "$WORK/pgbouncer"
cat >"$WORK/pgbouncer/pgbouncer.ini" <<EOF
[databases]
postgres = host=$WORK port=$(port web) dbname=postgres
[pgbouncer]
listen_addr =
unix_socket_dir = $WORK/pgbouncer
listen_port = $(port web)
auth_type = scram-sha-256
auth_file = $WORK/pgbouncer/users.txt
pool_mode = transaction
default_pool_size = $CLIENTS
logfile = $WORK/pgbouncer/pgbouncer.log
pidfile = $WORK/pgbouncer/pid
EOF
printf '"bench_reader" "%s"\n' "$PW" >"$WORK/pgbouncer/users.txt"
chown -R postgres "$WORK/pgbouncer"
chmod 600 "$WORK/pgbouncer/users.txt"
as_pg pgbouncer -d "$WORK/pgbouncer/pgbouncer.ini" >/dev/null 2>&1 ||
  { echo "pgbouncer did not start"; cat "$WORK/pgbouncer/pgbouncer.log"; exit 1; }

printf '\\set i random(1, %s)\nSELECT vault.read_secret('"'"'secret_'"'"' || :i);\n' "$N" >"$WORK/read.sql"
chmod 644 "$WORK/read.sql"

# pgbench through $1 (a socket directory), CLIENTS clients: TPS, or a failure message.
pgbench_tps() {
  local d tps
  d=$(as_pg env PGPASSWORD="$PW" "$PG_BINDIR/pgbench" -h "$1" -p "$(port web)" -U bench_reader -n -c "$CLIENTS" -j 2 \
    -T "$SECONDS_EACH" -f "$WORK/read.sql" postgres 2>&1)
  tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$d" | head -1)
  [ -n "$tps" ] && ! grep -q 'number of failed transactions: [1-9]' <<<"$d" || { echo "pgbench through $1 failed:"; echo "$d"; return 1; }
  echo "$tps"
}

declare -a WEB DIRECT BOUNCER P50 P99
for round in $(seq "$ROUNDS"); do
  w=$(wrk --latency -t2 -c"$CLIENTS" -d"${SECONDS_EACH}s" -s "$WORK/get.lua" "https://127.0.0.1:$WPORT/" 2>&1)
  if grep -qE 'Non-2xx|Socket errors' <<<"$w"; then
    echo "wrk saw errors:"; echo "$w"; tail -5 "$WORK/serve.out"; exit 1
  fi
  WEB+=("$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' <<<"$w")")
  tps=$(pgbench_tps "$WORK") || { echo "$tps"; exit 1; }
  DIRECT+=("$tps")
  b=$(pgbench_tps "$WORK/pgbouncer") || { echo "$b"; exit 1; }
  BOUNCER+=("$b")
  # wrk --latency: the 50% and 99% lines of its distribution (e.g. "50%  301.00us").
  P50+=("$(awk '$1 == "50%" {print $2}' <<<"$w")"); P99+=("$(awk '$1 == "99%" {print $2}' <<<"$w")")
  echo "# round $round: web ${WEB[-1]} req/s (p50 ${P50[-1]}, p99 ${P99[-1]}), direct $tps TPS, through pgbouncer $b TPS"
done
# The same HTTPS path without the database (a static file), once: what pgvault serve and wrk
# themselves cost on this machine.
w=$(wrk -t2 -c"$CLIENTS" -d"${SECONDS_EACH}s" "https://127.0.0.1:$WPORT/app.css" 2>&1)
STATIC=$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' <<<"$w")
kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; SERVER=
stop web

python3 - "$ROUNDS" "$SECONDS_EACH" "$N" "${WEB[*]}" "${DIRECT[*]}" "${SERVE_ARGS:-}" "${STATIC:-0}" "${BOUNCER[*]}" "$CLIENTS" <<'EOF'
import statistics, sys
rounds, secs, n, web, direct, serve_args, static, bouncer, c = sys.argv[1:]
web = [float(x) for x in web.split()]
direct = [float(x) for x in direct.split()]
bouncer = [float(x) for x in bouncer.split()]
w, d, b = statistics.median(web), statistics.median(direct), statistics.median(bouncer)
runs = lambda xs: " / ".join(f"{x:.0f}" for x in xs)
print(f"GET /api/v1/secrets/{{name}} vs vault.read_secret(name): {n} secrets, {c} clients, {secs} s each, median of {rounds} rounds")
print(f"  pgvault serve options: {serve_args or '(defaults)'}")
print(f"  direct (pgbench -c{c} -j2, vault.read_secret)          {d:10.0f} TPS    ({runs(direct)})")
print(f"  web (wrk -t2 -c{c}, HTTPS keep-alive, 1 session)        {w:10.0f} req/s  ({runs(web)})")
print(f"  ratio web / direct                                     {w / d:10.2f}x    target >= 0.5x")
print(f"  reference: pgbench through pgbouncer (forwarding only) {b:10.0f} TPS    ({runs(bouncer)}), {b / d:.2f}x of direct")
print(f"  reference: GET /app.css (no database), once            {float(static):10.0f} req/s")
EOF
