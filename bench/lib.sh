# Shared by the benchmarks: the test helpers, plus a release build of vault_ext installed into
# the server of PG_CONFIG (skipped when NO_INSTALL is set). Benchmarks are not part of the tests
# and leave the release build installed.
. "$(dirname "${BASH_SOURCE[0]}")/../tests/lib.sh"

install_release() {
  [ -n "${NO_INSTALL:-}" ] && return 0
  echo "installing a release build of vault_ext into $("$PG_CONFIG" --version)"
  (cd "$REPO" && cargo pgrx install --release --pg-config "$(command -v "$PG_CONFIG")" >/dev/null 2>&1)
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }

# serve_start NAME BINARY DSN [ARGS...]: `BINARY --dsn DSN serve` on the next free port with
# the work directory's test certificate (cert.pem/key.pem, made here once), in the background;
# sets SERVE_PORT and appends its pid to SERVE_PIDS (stopped by serve_stop_all).
SERVE_PIDS=()
serve_start() {
  local name=$1 bin=$2 dsn=$3 port
  shift 3
  [ -f "$WORK/cert.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
  port=$((PORT_NEXT + 100 + ${#SERVE_PIDS[@]}))
  env -u PGUSER -u PGSERVICE -u DATABASE_URL "$bin" --dsn "$dsn" serve --listen "127.0.0.1:$port" \
    --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" "$@" >"$WORK/serve-$name.out" 2>&1 &
  SERVE_PIDS+=($!)
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$WORK/cert.pem" "https://127.0.0.1:$port/" && break
    sleep 0.1
  done
  SERVE_PORT=$port
}
serve_stop_all() {
  local p
  for p in "${SERVE_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  SERVE_PIDS=()
}

# serve_builds DSN USER PASSWORD [ARGS...]: BUILDS is (new), or (new old) with PGVAULT_OLD; for
# each, `pgvault serve ARGS` on DSN (serve_start: PGVAULT, or PGVAULT_OLD) logged in as USER:
# PORTOF, PIDOF and COOKIEOF by build. Fails when a login does not work.
declare -A PORTOF PIDOF COOKIEOF
serve_builds() {
  local dsn=$1 user=$2 pw=$3 build bin
  shift 3
  BUILDS=(new)
  [ -n "${PGVAULT_OLD:-}" ] && BUILDS=(new old)
  for build in "${BUILDS[@]}"; do
    bin=$PGVAULT
    [ "$build" = old ] && bin=$PGVAULT_OLD
    serve_start "$build" "$bin" "$dsn" "$@"
    PORTOF[$build]=$SERVE_PORT
    PIDOF[$build]=${SERVE_PIDS[-1]}
    COOKIEOF[$build]=$(serve_login "$SERVE_PORT" "$user" "$pw")
    [ -n "${COOKIEOF[$build]}" ] || { echo "cannot log in to pgvault serve ($build) as $user:"; cat "$WORK/serve-$build.out"; return 1; }
  done
}

# serve_login PORT USER PASSWORD: the session cookie (pgvault_session=...), or nothing.
serve_login() {
  curl -s -D - -o /dev/null --cacert "$WORK/cert.pem" -H 'Content-Type: application/json' \
    --data-binary "{\"user\": \"$2\", \"password\": \"$3\"}" "https://127.0.0.1:$1/api/v1/session" |
    sed -nE 's/^[Ss]et-[Cc]ookie: (pgvault_session=[0-9a-f]+);.*/\1/p'
}

# wrk_get URL CLIENTS SECONDS HEADER NAMES: GET URL/secret_<random 1..NAMES> (NAMES 0: URL
# itself) with HEADER ("Name: value") on CLIENTS keep-alive connections; prints
# "REQ_PER_S P50 P99" (latencies as wrk writes them), or fails on any non-2xx answer.
wrk_get() {
  local url=$1 clients=$2 secs=$3 header=$4 names=$5 lua out
  lua=$(mktemp "$WORK/wrk.XXXXXX.lua")
  cat >"$lua" <<LUA
wrk.headers["${header%%: *}"] = "${header#*: }"
local threads = 0
function setup(thread) threads = threads + 1; thread:set("seed", threads) end
function init(args) math.randomseed(os.time() * 100 + seed) end
request = function()
  if $names == 0 then return wrk.format("GET", nil) end
  return wrk.format("GET", wrk.path .. "secret_" .. math.random(1, $names))
end
LUA
  out=$(wrk --latency -t2 -c"$clients" -d"${secs}s" -s "$lua" "$url" 2>&1)
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "wrk saw errors: $out" >&2; return 1; fi
  echo "$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out")"
}

# perf_start NAME: records every CPU for SECONDS_EACH seconds in the background (perf from
# linux-perf); sets PERF_PID, the recorder, for perf_report.
perf_start() {
  perf record -a -g -F 499 -o "$WORK/perf-$1.data" -- sleep "$SECONDS_EACH" >/dev/null 2>&1 &
  PERF_PID=$!
}

# perf_report NAME RECORDER SERVER_PID: waits for the recording, then prints where the CPU went:
# by process and library, then the top functions of the pgvault serve process (all threads)
# and of the PostgreSQL backends.
perf_report() {
  wait "$2"
  echo "# where the CPU went during that run ($1), by process and library (perf, all CPUs):"
  perf report -i "$WORK/perf-$1.data" --no-children --sort comm,dso --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -14 | sed 's/^/#   /'
  echo "# ... the top functions of pgvault serve, all its threads ($1):"
  perf report -i "$WORK/perf-$1.data" --no-children --pid "$3" --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -12 | sed 's/^/#   /'
  echo "# ... and of the PostgreSQL backends ($1):"
  perf report -i "$WORK/perf-$1.data" --no-children --comm postgres --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -16 | sed 's/^/#   /'
}
