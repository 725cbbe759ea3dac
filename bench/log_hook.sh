#!/usr/bin/env bash
# What the log-redaction hook costs a statement that does not touch the vault: pgbench
# `SELECT 1` (2 clients, 10 s, 3 runs each, median TPS) with log_statement = 'all', on the same
# cluster with and without vault_ext preloaded (a release build, installed first unless
# NO_INSTALL is set). Not part of the test run: it leaves the release build installed.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
install_release || exit 1
new_cluster bench "log_statement = '${LOG_STATEMENT:-all}'" "logging_collector = off"
echo 'SELECT 1;' >"$WORK/select1.sql"
tps() {
  "$PG_BINDIR/pgbench" -h "$WORK" -p "$(port bench)" -U postgres -n -c 2 -j 2 -T "${SECONDS_PER_RUN:-10}" \
    -f "$WORK/select1.sql" postgres 2>/dev/null | sed -nE 's/^tps = ([0-9.]+).*/\1/p'
}
run() {
  start bench || { cat "$(logfile bench)"; exit 1; }
  local a b c; a=$(tps); b=$(tps); c=$(tps)
  stop bench
  median "$a" "$b" "$c"
}
sed -i "s/^shared_preload_libraries = .*/shared_preload_libraries = ''/" "$(datadir bench)/postgresql.conf"
without=$(run)
sed -i "s/^shared_preload_libraries = .*/shared_preload_libraries = 'vault_ext'/" "$(datadir bench)/postgresql.conf"
with=$(run)
echo "SELECT 1 with log_statement=all, median TPS of 3: without vault_ext $without, with vault_ext $with"
python3 -c "import sys; w,o=float(sys.argv[1]),float(sys.argv[2]); print(f'ratio with/without: {w/o:.3f}')" "$with" "$without"
