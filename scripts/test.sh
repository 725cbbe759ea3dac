#!/usr/bin/env bash
# Run the test tiers (run as root on Debian 12):
#   1. plain #[test] (cipher vectors, key parsing)  2. #[pg_test] inside a preloaded server
#   3. pg_regress SQL with expected output           4. cluster tests (start/restart/break servers)
# plus pgvault's own #[test]s and, in tier 4, the pgvault binary against a server and behind
# pgbouncer (and, on PostgreSQL 15, under pg_cron and in a Patroni cluster). On PostgreSQL 15,
# tier 4 starts with the Debian package (scripts/package.sh), before `cargo pgrx install`.
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

# tally NAME RC PASSED FAILED: add a tier's counts; a failing tier with no counted failure
# (it could not run) counts as one failure.
tally() {
  passed=$((passed + $3)); failed=$((failed + $4))
  if [ "$2" -ne 0 ]; then failing+=("$1"); [ "$4" -gt 0 ] || failed=$((failed + 1)); fi
}

pgrx_tests() { # MAJOR
  local log=$LOGS/pgrx$1.log rc p f
  echo "== PostgreSQL $1, tiers 1+2: cargo pgrx test pg$1"
  cargo pgrx test "pg$1" --runas postgres --pgdata "$PGTEST/data$1" >"$log" 2>&1
  rc=$?
  grep -E '^test |^test result' "$log"
  read -r p f < <(grep -E '^test result' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' | tail -1)
  [ "$rc" -eq 0 ] || grep -E 'panicked|ERROR|^error' "$log" | head -40
  tally "pg$1 cargo pgrx test" "$rc" "${p:-0}" "${f:-0}"
}

# cluster_script MAJOR PG_CONFIG SCRIPT LABEL: a tier-4 script, which ends with "LABEL: N passed, N failed".
cluster_script() {
  local log=$LOGS/$3$1.log rc p f
  echo "== PostgreSQL $1, tier 4: $4"
  PG_CONFIG=$2 "tests/$3.sh" >"$log" 2>&1
  rc=$?
  cat "$log"
  read -r p f < <(grep -E "^$4: " "$log" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1 \2/')
  tally "pg$1 $4" "$rc" "${p:-0}" "${f:-0}"
}

# pgvault, the command line (cli/): its #[test]s, and the binary the cli cluster tests drive.
cli_tests() {
  local log=$LOGS/cli.log rc p f
  echo "== pgvault, tier 1: cargo test -p pgvault"
  cargo test -p pgvault >"$log" 2>&1 && cargo build -p pgvault >>"$log" 2>&1
  rc=$?
  grep -E '^test |^test result' "$log"
  read -r p f < <(grep -E '^test result' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' | tail -1)
  [ "$rc" -eq 0 ] || grep -E 'panicked|^error' -A5 "$log" | head -40
  tally "pgvault cargo test" "$rc" "${p:-0}" "${f:-0}"
}

server_tests() { # MAJOR
  local pgc rc p f
  pgc=$(scripts/pg-install.sh "$1")
  # PostgreSQL 15 is Debian's: first the release .deb, built, installed, tested and removed.
  if [ "$1" = 15 ]; then
    cluster_script "$1" "$pgc" package_cluster "package tests"
  fi
  echo "== PostgreSQL $1: installing vault_ext"
  cargo pgrx install --pg-config "$pgc" >"$LOGS/install$1.log" 2>&1 || { cat "$LOGS/install$1.log"; tally "pg$1 install" 1 0 0; return; }

  echo "== PostgreSQL $1, tier 3: pg_regress"
  PG_CONFIG=$pgc tests/regress.sh >"$LOGS/regress$1.log" 2>&1
  rc=$?
  cat "$LOGS/regress$1.log"
  p=$(grep -cE '^test .* \.\.\. ok|^ok [0-9]+ ' "$LOGS/regress$1.log")
  f=$(grep -cE '\.\.\. FAILED|^not ok [0-9]+ ' "$LOGS/regress$1.log")
  tally "pg$1 pg_regress" "$rc" "$p" "$f"

  cluster_script "$1" "$pgc" cluster "cluster tests"
  cluster_script "$1" "$pgc" log_cluster "log tests"
  cluster_script "$1" "$pgc" key_cluster "root key rotation tests"
  cluster_script "$1" "$pgc" upgrade_cluster "upgrade tests"
  cluster_script "$1" "$pgc" fault_cluster "fault tests"
  cluster_script "$1" "$pgc" cli_cluster "cli tests"
  cluster_script "$1" "$pgc" pool_cluster "pool tests"
  # Debian's postgresql-15-cron and Patroni (which runs Debian's server): PostgreSQL 15 only.
  if [ "$1" = 15 ]; then
    cluster_script "$1" "$pgc" cron_cluster "cron tests"
    cluster_script "$1" "$pgc" ha_cluster "ha tests" # Patroni + etcd, about 2 minutes
  fi
}

cli_tests
for v in $FULL; do
  pgrx_tests "$v"
  server_tests "$v"
done
for v in $QUICK; do
  pgrx_tests "$v"
done

echo
[ ${#failing[@]} -eq 0 ] || echo "failing: ${failing[*]}"
echo "all tiers: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failing[@]} -eq 0 ]
