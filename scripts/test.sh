#!/usr/bin/env bash
# Run every test tier against PostgreSQL 15 (run as root on Debian 12):
#   1. plain #[test] (cipher vectors, key parsing)  2. #[pg_test] inside a preloaded server
#   3. pg_regress SQL with expected output           4. cluster tests (start/restart/break servers)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh || exit 1

LOGS=$(mktemp -d /tmp/vault_ext_logs.XXXXXX)
PGTEST=$(mktemp -d /tmp/vault_ext_pgtest.XXXXXX)
chown postgres: "$PGTEST"
trap 'rm -rf "$PGTEST" "$LOGS"' EXIT
passed=0
failed=0
tiers_failed=()

echo "== tiers 1+2: cargo pgrx test pg15 (#[test] and #[pg_test])"
cargo pgrx test pg15 --runas postgres --pgdata "$PGTEST/data" 2>&1 | tee "$LOGS/pgrx.log" | grep -E '^test |^test result'
rc=${PIPESTATUS[0]}
read -r p f < <(grep -E '^test result' "$LOGS/pgrx.log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' | tail -1)
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
if [ "$rc" -ne 0 ]; then
  tiers_failed+=("cargo pgrx test"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
  grep -E 'panicked|ERROR|error' "$LOGS/pgrx.log" | head -40
fi

echo "== installing vault_ext into PostgreSQL 15"
cargo pgrx install --pg-config /usr/bin/pg_config >"$LOGS/install.log" 2>&1 || { cat "$LOGS/install.log"; exit 1; }

echo "== tier 3: pg_regress"
tests/regress.sh 2>&1 | tee "$LOGS/regress.log"
rc=${PIPESTATUS[0]}
p=$(grep -cE '^(not )?ok |^test .* \.\.\. ok|^ok [0-9]+ ' "$LOGS/regress.log")
f=$(grep -cE '\.\.\. FAILED|^not ok [0-9]+ ' "$LOGS/regress.log")
passed=$((passed + p - f)); failed=$((failed + f))
if [ "$rc" -ne 0 ]; then tiers_failed+=("pg_regress"); [ "$f" -gt 0 ] || failed=$((failed + 1)); fi

echo "== tier 4: cluster tests"
tests/cluster.sh 2>&1 | tee "$LOGS/cluster.log"
rc=${PIPESTATUS[0]}
read -r p f < <(grep -E '^cluster tests: ' "$LOGS/cluster.log" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1 \2/')
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
if [ "$rc" -ne 0 ]; then tiers_failed+=("cluster tests"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1)); fi

echo
[ ${#tiers_failed[@]} -eq 0 ] || echo "failing tiers: ${tiers_failed[*]}"
echo "all tiers: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#tiers_failed[@]} -eq 0 ]
