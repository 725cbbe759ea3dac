#!/usr/bin/env bash
# The web console's API against the database itself and against pgbouncer (issues 17 and 27):
# requests per second and p50/p99 latency of `GET /api/v1/secrets/{name}` over HTTPS
# (keep-alive, one logged-in session, wrk) against the same lookups as
# `SELECT vault.read_secret(name)` over direct connections (pgbench) and through pgbouncer
# (transaction pooling, a C proxy that only forwards: no TLS, no HTTP, no JSON), all as the same
# vault_reader role, random names from the same N secrets, the same time each, alternately in
# one run on one cluster. Each figure is the median of ROUNDS (default 3). The ratio that
# counts is web / pgbouncer (issue 27: >= 0.7x; 1.0x is the aim). Not part of the tests. Needs
# root; installs wrk and pgbouncer (apt) when missing, release builds of vault_ext (into the
# server of PG_CONFIG; skip with NO_INSTALL=1) and of pgvault.
#
# PGVAULT_OLD=path adds a second pgvault serve (another build) on the same cluster, measured in
# the same rounds, the two builds' order alternating: old against new in one run.
# GET /app.css (no database) is measured once per build: what TLS and HTTP cost alone.
# PROFILE=1 records the last round of each build with perf (all CPUs) and prints where the time
# went: by process and library, and pgvault's top functions.
# CLIENTS (default 2) sets the clients on every side (wrk -c, pgbench -c, pgbouncer's pool,
# and --session-connections).
#
#   PG_CONFIG=/usr/lib/postgresql/17/bin/pg_config bench/web.sh
#   ROUNDS=5 SECONDS_EACH=15 N=10000 bench/web.sh
#   PGVAULT_OLD=/tmp/pgvault-0.1 CLIENTS=8 bench/web.sh
#   SERVE_ARGS="--token-connections 2" bench/web.sh     # extra options for pgvault serve
#   PGVAULT=/path/to/pgvault bench/web.sh                 # that binary instead of a build
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
bench_cleanup() {
  serve_stop_all
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

DSN="host=$WORK port=$(port web) dbname=postgres"
# shellcheck disable=SC2086
serve_builds "$DSN" bench_reader "$PW" --session-connections "$CLIENTS" ${SERVE_ARGS:-} || exit 1
for build in "${BUILDS[@]}"; do
  probe=$(curl -s --cacert "$WORK/cert.pem" -H "Cookie: ${COOKIEOF[$build]}" "https://127.0.0.1:${PORTOF[$build]}/api/v1/secrets/secret_1")
  [ "$(sed -nE 's/.*"value":"([^"]*)".*/\1/p' <<<"$probe")" = "$(sql web "SELECT vault.read_secret('secret_1')")" ] ||
    { echo "GET /api/v1/secrets/secret_1 ($build) does not answer the value vault.read_secret gives"; exit 1; }
done

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

declare -A WEB P50 P99 STATIC
DIRECT=(); BOUNCER=()
web_round() { # BUILD: one wrk run against that build's server (PROFILE=1: under perf, last round)
  local r rps p50 p99 perf=
  [ -n "${PROFILE:-}" ] && [ "$round" = "$ROUNDS" ] && { perf_start "$1"; perf=$PERF_PID; }
  r=$(wrk_get "https://127.0.0.1:${PORTOF[$1]}/api/v1/secrets/" "$CLIENTS" "$SECONDS_EACH" "Cookie: ${COOKIEOF[$1]}" "$N") ||
    { tail -5 "$WORK/serve-$1.out"; exit 1; }
  read -r rps p50 p99 <<<"$r"
  WEB[$1]+="$rps "; P50[$1]+="$p50 "; P99[$1]+="$p99 "
  echo "# round $round: $1 build: $rps req/s (p50 $p50, p99 $p99)"
  [ -n "$perf" ] && perf_report "$1" "$perf" "${PIDOF[$1]}"
}
for round in $(seq "$ROUNDS"); do
  # The builds take turns going first.
  order=("${BUILDS[@]}")
  [ $((round % 2)) = 0 ] && [ ${#BUILDS[@]} = 2 ] && order=("${BUILDS[1]}" "${BUILDS[0]}")
  for build in "${order[@]}"; do web_round "$build"; done
  tps=$(pgbench_tps "$WORK") || { echo "$tps"; exit 1; }
  DIRECT+=("$tps")
  b=$(pgbench_tps "$WORK/pgbouncer") || { echo "$b"; exit 1; }
  BOUNCER+=("$b")
  echo "# round $round: direct $tps TPS, through pgbouncer $b TPS"
done
for build in "${BUILDS[@]}"; do
  r=$(wrk_get "https://127.0.0.1:${PORTOF[$build]}/app.css" "$CLIENTS" "$SECONDS_EACH" "Accept: */*" 0) || exit 1
  STATIC[$build]=${r%% *}
done
serve_stop_all
stop web

python3 - "$ROUNDS" "$SECONDS_EACH" "$N" "$CLIENTS" "${SERVE_ARGS:-}" "${DIRECT[*]}" "${BOUNCER[*]}" \
  "${WEB[new]}" "${P50[new]}" "${P99[new]}" "${STATIC[new]}" \
  "${WEB[old]:-}" "${P50[old]:-}" "${P99[old]:-}" "${STATIC[old]:-}" <<'EOF'
import statistics, sys
(rounds, secs, n, c, serve_args, direct, bouncer,
 web_new, p50_new, p99_new, static_new, web_old, p50_old, p99_old, static_old) = sys.argv[1:]
nums = lambda s: [float(x) for x in s.split()]
def us(t):  # wrk's "301.00us", "1.20ms", "2.00s" in microseconds
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * f
    return float(t)
direct, bouncer = nums(direct), nums(bouncer)
d, b = statistics.median(direct), statistics.median(bouncer)
runs = lambda xs: " / ".join(f"{x:.0f}" for x in xs)
print(f"GET /api/v1/secrets/{{name}}: {n} secrets, {c} clients, {secs} s each, median of {rounds} rounds")
print(f"  pgvault serve options: --session-connections {c} {serve_args}")
print(f"  direct (pgbench -c{c}, vault.read_secret)       {d:10.0f} TPS    ({runs(direct)})")
print(f"  through pgbouncer (forwarding only)            {b:10.0f} TPS    ({runs(bouncer)}), {b / d:.2f}x of direct")
for name, web, p50, p99, static in (("new", web_new, p50_new, p99_new, static_new),
                                    ("old", web_old, p50_old, p99_old, static_old)):
    if not web.strip():
        continue
    w = nums(web)
    m = statistics.median(w)
    lat50 = statistics.median([us(x) for x in p50.split()])
    lat99 = statistics.median([us(x) for x in p99.split()])
    print(f"  web, {name} build (wrk -c{c}, 1 session)          {m:10.0f} req/s  ({runs(w)}), p50 {lat50:.0f} us, p99 {lat99:.0f} us")
    print(f"    web / pgbouncer {m / b:.2f}x (target >= 0.7x), web / direct {m / d:.2f}x; GET /app.css (no database) {float(static):.0f} req/s")
EOF
