#!/usr/bin/env bash
# `pgvault run` masking throughput: a child writing 100 MB (lines with the start of a secret
# value in each, so the matcher holds and releases bytes all along) through pgvault's masking,
# against the same bytes through a direct pipe into `cat`. Medians of ROUNDS and the ratio
# (target: masking >= 0.5x the direct pipe).
# PG_CONFIG=... bench/run_mask.sh   (MB=100 ROUNDS=9; NO_INSTALL=1 keeps the installed build;
# PGVAULT=path defaults to target/release/pgvault, built when missing)
set -u
. "$(dirname "$0")/lib.sh"
MB=${MB:-100}
ROUNDS=${ROUNDS:-9}
PGVAULT=${PGVAULT:-$REPO/target/release/pgvault}
install_release || { echo "install failed"; exit 1; }
if [ ! -x "$PGVAULT" ]; then
  (cd "$REPO" && cargo build --release -p pgvault >/dev/null 2>&1) || { echo "cannot build pgvault"; exit 1; }
fi
cluster_init
new_cluster b
start b || { cat "$(logfile b)"; exit 1; }
sql b "CREATE EXTENSION vault_ext; CREATE ROLE bench_reader LOGIN IN ROLE vault_reader;
  SELECT vault.create_secret('sk-live-0123456789abcdef', 'stripe_key');
  SELECT vault.create_secret('db-password-for-the-bench', 'db_password')" >/dev/null || exit 1
export PGHOST=$WORK PGPORT=$(port b) PGDATABASE=postgres PGUSER=bench_reader
DATA=$WORK/data
yes "2026-12-07T12:00:00Z INFO request id=4711 path=/api/v1/items user=sk-live-0123 took 12 ms db-pa" \
  | head -c $((MB * 1000000)) >"$DATA"

# The bytes out are the bytes in (no value occurs whole, only their starts).
"$PGVAULT" run --only stripe_key --only db_password -- cat "$DATA" | cmp -s - "$DATA" \
  || { echo "pgvault run changed the output"; exit 1; }

now() { date +%s.%N; }
# mbps START END: MB per second.
mbps() { echo "$MB $1 $2" | awk '{ printf "%.0f", $1 / ($3 - $2) }'; }
direct=() masked=() ratios=()
for r in $(seq "$ROUNDS"); do
  t0=$(now); cat "$DATA" | cat >/dev/null; t1=$(now)
  direct+=("$(mbps "$t0" "$t1")")
  t0=$(now); "$PGVAULT" run --only stripe_key --only db_password -- cat "$DATA" >/dev/null; t1=$(now)
  masked+=("$(mbps "$t0" "$t1")")
  ratios+=("$(echo "${masked[-1]} ${direct[-1]}" | awk '{ printf "%.2f", $1 / $2 }')")
  echo "round $r: direct pipe ${direct[-1]} MB/s, pgvault run (masking) ${masked[-1]} MB/s, ratio ${ratios[-1]}x"
done
d=$(median "${direct[@]}") m=$(median "${masked[@]}")
# The machine's load moves both figures between rounds: the median of the per-round ratios
# (each round runs both, one after the other) is the steadier figure.
echo "median: direct pipe $d MB/s, pgvault run masking $m MB/s; median of the rounds' ratios $(median "${ratios[@]}")x (target >= 0.5x)"
