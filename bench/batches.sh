#!/usr/bin/env bash
# Key rotation of a large table: one transaction (vault.rotate_key()) against batches
# (rotate_key(reencrypt => false) + CALL vault.reencrypt_in_batches()), issue 16 / SPEC §10.
# For each: total time, peak memory of the rotating backend (VmHWM), WAL written, and the
# latency of a concurrent writer (update_secret on random secrets, WRITER_RATE per second):
# p50 / p99 / max. Each rotation runs twice: alone (time, memory, WAL), then under the writer.
# Not part of the tests. Needs root; installs a release build into PG_CONFIG's server unless
# NO_INSTALL is set.
#
#   bench/batches.sh                       # 1,000,000 secrets, batches of 1,000
#   N=100000 BATCH=500 PG_CONFIG=... bench/batches.sh
set -u
. "$(dirname "$0")/lib.sh"
N=${N:-1000000}
BATCH=${BATCH:-1000}
WRITER_RATE=${WRITER_RATE:-50}
cluster_init
install_release || exit 1
new_cluster bench "max_wal_size = 8GB" "checkpoint_timeout = 30min"
start bench || { cat "$(logfile bench)"; exit 1; }
must() { sql bench "$1" >/dev/null || { echo "benchmark statement failed: $1" >&2; sql bench "$1" >&2; exit 1; }; }
must "CREATE EXTENSION vault_ext"
echo "# creating $N secrets"
for ((done = 0; done < N; done += 100000)); do
  n=$((N - done < 100000 ? N - done : 100000))
  must "INSERT INTO vault.secrets (name, secret) SELECT 's' || i, 'sk-live-' || md5(i::text) FROM generate_series($done + 1, $done + $n) i"
done
must "VACUUM ANALYZE vault.secrets"
must "CHECKPOINT"

# rotate SQL: prints "ms kib wal_bytes" for one rotation in its own session.
rotate() {
  local out
  out=$("$PG_BINDIR/psql" -h "$WORK" -p "$(port bench)" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 2>&1 <<SQL
SELECT pg_current_wal_lsn() AS lsn0, clock_timestamp() AS t0 \gset
$1;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000) || '|' ||
       substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s+(\d+) kB') || '|' ||
       pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0');
SQL
)
  grep -E '^[0-9]+\|[0-9]+\|[0-9]+$' <<<"$out" | tail -1 | tr '|' ' '
  grep -qE '^[0-9]+\|[0-9]+\|[0-9]+$' <<<"$out" || { echo "rotation failed: $out" >&2; exit 1; }
}
ONE="SELECT vault.rotate_key()"
BATCHED="SELECT vault.rotate_key(reencrypt => false)"
BATCHED2="CALL vault.reencrypt_in_batches(batch_size => $BATCH)"

# writer_during SQL...: run the rotation while pgbench updates random secrets; prints latencies.
writer_during() {
  local logdir=$WORK/wlog.$RANDOM f=$WORK/writer.sql secs
  mkdir -p "$logdir" && chown postgres: "$logdir"
  { echo "\\set i random(1, $N)"; echo "SELECT vault.update_secret(id, 'rotated-under-writer') FROM vault.secrets WHERE name = 's' || :i;"; } >"$f"
  secs=$(( ${2%%.*} / 1000 + 5 ))
  (cd "$logdir" && as_pg "$PG_BINDIR/pgbench" -h "$WORK" -p "$(port bench)" -U postgres -n -c 1 -T "$secs" -R "$WRITER_RATE" -l -f "$f" postgres >"$logdir/out" 2>&1) &
  local pgb=$!
  sleep 1
  for q in "${@:3}"; do rotate "$q" >/dev/null; done
  wait "$pgb"
  python3 - "$logdir" <<'PY'
import glob, statistics, sys
lat = []
for f in glob.glob(sys.argv[1] + "/pgbench_log.*"):
    for line in open(f):
        parts = line.split()
        if len(parts) >= 3 and parts[2].isdigit():
            lat.append(int(parts[2]) / 1000.0)
lat.sort()
if not lat:
    print("no writer transactions"); sys.exit()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{len(lat)} {q(0.5):.1f} {q(0.99):.1f} {lat[-1]:.1f}")
PY
}

echo "# one transaction: vault.rotate_key()"
read -r one_ms one_kib one_wal < <(rotate "$ONE")
echo "# batched: rotate_key(reencrypt => false) + reencrypt_in_batches(batch_size => $BATCH)"
read -r b1_ms _ b1_wal < <(rotate "$BATCHED")
read -r b2_ms b_kib b2_wal < <(rotate "$BATCHED2")
echo "# under a writer ($WRITER_RATE update_secret/s)"
read -r one_n one_p50 one_p99 one_max < <(writer_during one "$one_ms" "$ONE")
read -r b_n b_p50 b_p99 b_max < <(writer_during batched "$((b1_ms + b2_ms))" "$BATCHED" "$BATCHED2")
stop bench

python3 - "$N" "$BATCH" "$one_ms" "$one_kib" "$one_wal" "$b1_ms" "$b2_ms" "$b_kib" "$b1_wal" "$b2_wal" \
  "$one_n" "$one_p50" "$one_p99" "$one_max" "$b_n" "$b_p50" "$b_p99" "$b_max" <<'PY'
import sys
(n, batch, one_ms, one_kib, one_wal, b1_ms, b2_ms, b_kib, b1_wal, b2_wal,
 one_n, one_p50, one_p99, one_max, b_n, b_p50, b_p99, b_max) = sys.argv[1:]
b_ms = float(b1_ms) + float(b2_ms)
b_wal = float(b1_wal) + float(b2_wal)
mib = lambda x: float(x) / 1048576
print(f"rotation of {int(n):,} secrets (release build), batches of {batch}")
print(f"{'':<34} {'one transaction':>16} {'batched':>12} {'ratio':>7}")
print(f"{'total time':<34} {float(one_ms)/1000:>14.1f} s {b_ms/1000:>10.1f} s {b_ms/float(one_ms):>6.2f}x  target <= 1.5x")
print(f"{'peak memory of the backend (VmHWM)':<34} {float(one_kib)/1024:>12.1f} MiB {float(b_kib)/1024:>8.1f} MiB")
print(f"{'WAL written':<34} {mib(one_wal):>12.1f} MiB {mib(b_wal):>8.1f} MiB")
print(f"concurrent writer, update_secret: transactions {one_n} / {b_n}")
print(f"{'  p50 latency':<34} {float(one_p50):>13.1f} ms {float(b_p50):>9.1f} ms")
print(f"{'  p99 latency':<34} {float(one_p99):>13.1f} ms {float(b_p99):>9.1f} ms   target batched < 100 ms")
print(f"{'  max latency':<34} {float(one_max):>13.1f} ms {float(b_max):>9.1f} ms")
PY
