#!/usr/bin/env bash
# Service tokens against sessions (issues 18 and 27): `GET /api/v1/secrets/{name}` on `pgvault
# serve`, requests per second and p50/p99 latency with a Bearer token (each request: a pooled
# connection of the server's own role, vault.api_token_role with the role switch, the read,
# COMMIT) and with a session cookie (the role's own connections), wrk with CLIENTS (default 2)
# keep-alive connections, random names from N secrets, token and cookie rounds alternating;
# medians and the ratio token / session (issue 27: >= 0.9x). PGVAULT_OLD=path adds another build
# on the same cluster, measured in the same rounds (old against new in one run). PROFILE=1
# records the last round of each with perf and prints where the time went.
#   PG_CONFIG=... bench/tokens.sh    (N=2000 ROUNDS=3 SECONDS_EACH=10 CLIENTS=2; NO_INSTALL=1
#   keeps the installed vault_ext; PGVAULT=path defaults to target/release/pgvault, built when
#   missing)
set -u
. "$(dirname "$0")/lib.sh"
N=${N:-2000}
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-10}
CLIENTS=${CLIENTS:-2}
PGVAULT=${PGVAULT:-$REPO/target/release/pgvault}
command -v wrk >/dev/null || { echo "the benchmark needs wrk (apt-get install wrk)"; exit 1; }
install_release || { echo "install failed"; exit 1; }
if [ ! -x "$PGVAULT" ]; then
  (cd "$REPO" && cargo build --release -p pgvault >/dev/null 2>&1) || { echo "cannot build pgvault"; exit 1; }
fi
cluster_init
trap 'serve_stop_all; cluster_cleanup' EXIT
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
  SELECT count(vault.create_secret('sk-bench-' || md5(i::text), 'secret_' || i)) FROM generate_series(1, $N) i" >/dev/null &&
  sql b "VACUUM ANALYZE" >/dev/null || { echo "setup failed"; exit 1; }
DSN="host=$WORK port=$(port b) dbname=postgres"
TOKEN=$("$PGVAULT" --dsn "$DSN user=postgres" token create bench --role svc_reader 2>/dev/null)
[ -n "$TOKEN" ] || { echo "cannot create a token"; exit 1; }
PGPASSWORD=$PW serve_builds "$DSN user=authenticator" web_reader "$PW" \
  --token-connections "$CLIENTS" --session-connections "$CLIENTS" || exit 1
for build in "${BUILDS[@]}"; do
  for auth in "Authorization: Bearer $TOKEN" "Cookie: ${COOKIEOF[$build]}"; do
    got=$(curl -s --cacert "$WORK/cert.pem" -H "$auth" "https://127.0.0.1:${PORTOF[$build]}/api/v1/secrets/secret_7")
    [ "$(sed -nE 's/.*"value":"([^"]*)".*/\1/p' <<<"$got")" = "sk-bench-$(printf 7 | md5sum | cut -c1-32)" ] ||
      { echo "$build: ${auth%%:*} does not read the value: $got"; exit 1; }
  done
done

declare -A RPS P50 P99
measure() { # BUILD MODE (PROFILE=1: the last round under perf)
  local header r rps p50 p99 perf=
  if [ "$2" = token ]; then header="Authorization: Bearer $TOKEN"; else header="Cookie: ${COOKIEOF[$1]}"; fi
  [ -n "${PROFILE:-}" ] && [ "$round" = "$ROUNDS" ] && { perf_start "$1-$2"; perf=$PERF_PID; }
  r=$(wrk_get "https://127.0.0.1:${PORTOF[$1]}/api/v1/secrets/" "$CLIENTS" "$SECONDS_EACH" "$header" "$N") ||
    { tail -5 "$WORK/serve-$1.out"; exit 1; }
  read -r rps p50 p99 <<<"$r"
  RPS[$1 $2]+="$rps "; P50[$1 $2]+="$p50 "; P99[$1 $2]+="$p99 "
  echo "# round $round: $1 build, $2: $rps req/s (p50 $p50, p99 $p99)"
  [ -n "$perf" ] && perf_report "$1-$2" "$perf" "${PIDOF[$1]}"
}
echo "# $("$PG_BINDIR/postgres" --version); $(nproc) CPUs; $CLIENTS clients, $SECONDS_EACH s each, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  order=("${BUILDS[@]}")
  [ $((round % 2)) = 0 ] && [ ${#BUILDS[@]} = 2 ] && order=("${BUILDS[1]}" "${BUILDS[0]}")
  for build in "${order[@]}"; do
    if [ $((round % 2)) = 1 ]; then measure "$build" token; measure "$build" cookie
    else measure "$build" cookie; measure "$build" token; fi
  done
done
serve_stop_all
for build in "${BUILDS[@]}"; do
  python3 - "$build" "${RPS[$build token]}" "${RPS[$build cookie]}" "${P50[$build token]}" "${P99[$build token]}" \
    "${P50[$build cookie]}" "${P99[$build cookie]}" <<'EOF'
import statistics, sys
build, t, c, t50, t99, c50, c99 = sys.argv[1:]
def us(x):
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if x.endswith(unit):
            return float(x[: -len(unit)]) * f
    return float(x)
med = lambda s: statistics.median(float(x) for x in s.split())
lat = lambda s: statistics.median(us(x) for x in s.split())
tm, cm = med(t), med(c)
print(f"{build} build: token {tm:.0f} req/s (p50 {lat(t50):.0f} us, p99 {lat(t99):.0f} us), "
      f"session {cm:.0f} req/s (p50 {lat(c50):.0f} us, p99 {lat(c99):.0f} us), token / session {tm / cm:.2f}x (target >= 0.9x)")
EOF
done
