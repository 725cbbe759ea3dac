#!/usr/bin/env bash
# Run the test tiers (run as root on Debian 12):
#   1. plain #[test] of vault_core (ciphers, vectors, encodings, root keys, lexer, masks), no server
#   2. #[pg_test] inside a preloaded server (cargo pgrx test)
#   3. pg_regress SQL with expected output           4. cluster tests (start/restart/break servers)
# plus pgvault's own #[test]s and, in tier 4, the pgvault binary against a server and behind
# pgbouncer (and, on PostgreSQL 15, under pg_cron and in a Patroni cluster). On PostgreSQL 15,
# tier 4 starts with the Debian packages (scripts/package.sh 15 and scripts/package.sh pgvault,
# release builds), before `cargo pgrx install`.
# All four on each major in VAULT_PG_FULL (default "15 17"), tiers 1-2 on each in VAULT_PG_QUICK
# (default "16 18"). PostgreSQL 15 is Debian's; the others come from scripts/pg-install.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
FULL=${VAULT_PG_FULL-15 17}
QUICK=${VAULT_PG_QUICK-16 18}
scripts/setup.sh $FULL $QUICK || exit 1

LOGS=$(mktemp -d /tmp/vault_ext_logs.XXXXXX)
PGTEST=$(mktemp -d /tmp/vault_ext_pgtest.XXXXXX)
chown postgres: "$PGTEST"
trap 'rm -rf "$PGTEST" "$LOGS"' EXIT
passed=0
failed=0
failing=()
skipped=()

# The fewest tests each tier runs today (raise them when adding tests): a tier that reports fewer
# (a script that stopped early, a filter that matched nothing, a count that was not found)
# fails instead of passing with what it ran.
declare -A MIN=([vault_core]=52 [pgrx]=12 [pgvault]=59 [pg_regress]=13 ["cluster tests"]=101 ["log tests"]=101
  ["root key rotation tests"]=38 ["upgrade tests"]=9 ["fault tests"]=41 ["cli tests"]=291
  ["leak tests"]=61 ["pool tests"]=51 ["cron tests"]=9 ["ha tests"]=27 ["package tests"]=52
  ["web tests"]=100 ["api tests"]=25 ["token tests"]=119 ["vault api tests"]=151)

# tally NAME RC PASSED FAILED MIN: add a tier's counts; a failing tier with no counted failure
# (it could not run) counts as one failure, and so does a tier that ran fewer than MIN tests.
tally() {
  passed=$((passed + $3)); failed=$((failed + $4))
  if [ "$2" -ne 0 ]; then failing+=("$1"); [ "$4" -gt 0 ] || failed=$((failed + 1)); fi
  if [ $(($3 + $4)) -lt "$5" ]; then
    failing+=("$1 (ran $(($3 + $4)) tests, expected at least $5)"); failed=$((failed + 1))
  fi
}

# note_skips NAME LOG: every test a tier skipped goes into the summary: cargo's "N ignored" and
# any "# skip ..." line a script prints.
note_skips() {
  local n line
  n=$(grep -E '^test result' "$2" | sed -nE 's/.* ([0-9]+) ignored.*/\1/p' | awk '{s += $1} END {print s + 0}')
  [ "$n" -eq 0 ] || skipped+=("$1: $n ignored test(s)")
  while IFS= read -r line; do skipped+=("$1: ${line#\# skip }"); done < <(grep -E '^# skip' "$2")
}

# test_counts LOG: "PASSED FAILED" summed over every "test result" line cargo printed (one per
# test binary, doc tests included).
test_counts() {
  grep -E '^test result' "$1" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' |
    awk '{p += $1; f += $2} END {print p + 0, f + 0}'
}

pgrx_tests() { # MAJOR
  local log=$LOGS/pgrx$1.log rc p f
  echo "== PostgreSQL $1, tiers 1+2: cargo pgrx test pg$1"
  cargo pgrx test "pg$1" --runas postgres --pgdata "$PGTEST/data$1" >"$log" 2>&1
  rc=$?
  grep -E '^test |^test result' "$log"
  read -r p f < <(test_counts "$log")
  [ "$rc" -eq 0 ] || grep -E 'panicked|ERROR|^error' "$log" | head -40
  tally "pg$1 cargo pgrx test" "$rc" "${p:-0}" "${f:-0}" "${MIN[pgrx]}"
  note_skips "pg$1 cargo pgrx test" "$log"
}

# cluster_script MAJOR PG_CONFIG SCRIPT LABEL: a tier-4 script, which ends with "LABEL: N passed, N failed".
cluster_script() {
  local log=$LOGS/$3$1.log rc p f
  echo "== PostgreSQL $1, tier 4: $4"
  PG_CONFIG=$2 "tests/$3.sh" >"$log" 2>&1
  rc=$?
  cat "$log"
  read -r p f < <(grep -E "^$4: " "$log" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1 \2/')
  tally "pg$1 $4" "$rc" "${p:-0}" "${f:-0}" "${MIN[$4]}"
  note_skips "pg$1 $4" "$log"
}

# crate_tests CRATE: a workspace crate's plain #[test]s (tier 1), counted against MIN[CRATE].
# pgvault is also built: the cli and web cluster tests drive the binary.
crate_tests() {
  local log=$LOGS/$1.log rc p f
  echo "== $1, tier 1: cargo test -p $1"
  cargo test -p "$1" >"$log" 2>&1 && { [ "$1" != pgvault ] || cargo build -p pgvault >>"$log" 2>&1; }
  rc=$?
  grep -E '^test |^test result' "$log"
  read -r p f < <(test_counts "$log")
  [ "$rc" -eq 0 ] || grep -E 'panicked|^error' -A5 "$log" | head -40
  tally "$1 cargo test" "$rc" "${p:-0}" "${f:-0}" "${MIN[$1]}"
  note_skips "$1 cargo test" "$log"
}

server_tests() { # MAJOR
  local pgc rc p f
  pgc=$(scripts/pg-install.sh "$1")
  # PostgreSQL 15 is Debian's: first the release .debs (the extension's and pgvault's), built,
  # installed, tested and removed.
  if [ "$1" = 15 ]; then
    cluster_script "$1" "$pgc" package_cluster "package tests"
  fi
  echo "== PostgreSQL $1: installing vault_ext"
  cargo pgrx install --pg-config "$pgc" >"$LOGS/install$1.log" 2>&1 || { cat "$LOGS/install$1.log"; tally "pg$1 install" 1 0 0 0; return; }

  echo "== PostgreSQL $1, tier 3: pg_regress"
  PG_CONFIG=$pgc tests/regress.sh >"$LOGS/regress$1.log" 2>&1
  rc=$?
  cat "$LOGS/regress$1.log"
  p=$(grep -cE '^test .* \.\.\. ok|^ok [0-9]+ ' "$LOGS/regress$1.log")
  f=$(grep -cE '\.\.\. FAILED|^not ok [0-9]+ ' "$LOGS/regress$1.log")
  tally "pg$1 pg_regress" "$rc" "$p" "$f" "${MIN[pg_regress]}"

  cluster_script "$1" "$pgc" cluster "cluster tests"
  cluster_script "$1" "$pgc" log_cluster "log tests"
  cluster_script "$1" "$pgc" key_cluster "root key rotation tests"
  cluster_script "$1" "$pgc" upgrade_cluster "upgrade tests"
  cluster_script "$1" "$pgc" fault_cluster "fault tests"
  cluster_script "$1" "$pgc" cli_cluster "cli tests"
  cluster_script "$1" "$pgc" api_cluster "api tests" # pgvault serve's API in process (cli/tests/api.rs)
  cluster_script "$1" "$pgc" web_cluster "web tests" # pgvault serve: curl, then headless Chromium
  cluster_script "$1" "$pgc" token_cluster "token tests" # service tokens: Bearer requests, pgvault over HTTPS
  cluster_script "$1" "$pgc" vault_api_cluster "vault api tests" # HashiCorp Vault's KV v2 API: hvac, node-vault, curl
  cluster_script "$1" "$pgc" leak_cluster "leak tests"
  cluster_script "$1" "$pgc" pool_cluster "pool tests"
  # Debian's postgresql-15-cron and Patroni (which runs Debian's server): PostgreSQL 15 only.
  if [ "$1" = 15 ]; then
    cluster_script "$1" "$pgc" cron_cluster "cron tests"
    cluster_script "$1" "$pgc" ha_cluster "ha tests" # Patroni + etcd, about 2 minutes
  fi
}

crate_tests vault_core
crate_tests pgvault
if [ -z "${FULL// /}" ]; then
  # Without a full version nothing of tiers 3-4 runs: that is a failure, not a pass.
  failing+=("tiers 3-4 (VAULT_PG_FULL is empty: no pg_regress or cluster test ran)"); failed=$((failed + 1))
fi
for v in $FULL; do
  pgrx_tests "$v"
  server_tests "$v"
done
for v in $QUICK; do
  pgrx_tests "$v"
  skipped+=("PostgreSQL $v: tiers 3-4 (in VAULT_PG_QUICK, which runs tiers 1-2 only)")
done
# libsodium's AES-256-GCM needs AES-NI and CLMUL; without them the aes256gcm round trips in
# src/cipher.rs's tests pass without running.
if ! grep -qw aes /proc/cpuinfo || ! grep -qw pclmulqdq /proc/cpuinfo; then
  skipped+=("aes256gcm round trips and key type (this CPU lacks AES-NI or CLMUL)")
fi

echo
for s in "${skipped[@]}"; do echo "skipped: $s"; done
[ ${#failing[@]} -eq 0 ] || printf 'failing: %s\n' "${failing[@]}"
echo "all tiers: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failing[@]} -eq 0 ]
