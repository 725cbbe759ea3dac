#!/usr/bin/env bash
# vault_ext against a plain table and pgcrypto, in one run on one cluster (issue 5's benchmark).
# Each figure is the median of ROUNDS (default 3) repetitions; ratios are to the plain table in
# the same run. Not part of the tests. Needs root, like the cluster tests; installs a release
# build into the server of PG_CONFIG (skip with NO_INSTALL=1).
#
#   bench/compare.sh                 # PostgreSQL 15, the figures in the README
#   ROUNDS=5 LOOKUP_SECONDS=15 PG_CONFIG=... bench/compare.sh
set -u
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
WRITE_N=${WRITE_N:-20000}
SCAN_N=${SCAN_N:-100000}
LOOKUP_SECONDS=${LOOKUP_SECONDS:-15}
cluster_init
install_release || exit 1
new_cluster bench
start bench || { cat "$(logfile bench)"; exit 1; }
sql bench "CREATE EXTENSION vault_ext; CREATE EXTENSION pgcrypto" >/dev/null

# The same columns as vault.secrets' user-visible ones; pgcrypto variants keep bytea ciphertext.
for t in plain pgp raw; do
  typ=text; [ "$t" = plain ] || typ=bytea
  sql bench "CREATE TABLE bench_$t (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text UNIQUE,
             description text NOT NULL DEFAULT '', secret $typ NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())" >/dev/null
done
PASS="'bench passphrase'"
AESKEY="'\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea"
VALUE="'sk-live-' || md5(i::text)" # a 40-character API key
NAME="'secret_' || i"

# Writes of N secrets in one statement, per variant.
write_sql() { # VARIANT N
  local gs="FROM generate_series(1, $2) i"
  case $1 in
    plain) echo "INSERT INTO bench_plain (name, secret) SELECT $NAME, $VALUE $gs" ;;
    create_secret) echo "SELECT count(vault.create_secret($VALUE, $NAME)) $gs" ;;
    insert) echo "INSERT INTO vault.secrets (name, secret) SELECT $NAME, $VALUE $gs" ;;
    pgp) echo "INSERT INTO bench_pgp (name, secret) SELECT $NAME, pgp_sym_encrypt($VALUE, $PASS) $gs" ;;
    raw) echo "INSERT INTO bench_raw (name, secret) SELECT $NAME, encrypt(convert_to($VALUE, 'UTF8'), $AESKEY, 'aes') $gs" ;;
  esac
}
table_of() { case $1 in create_secret | insert) echo vault.secrets ;; *) echo "bench_$1" ;; esac; }
scan_sql() {
  case $1 in
    plain) echo "SELECT sum(length(secret)) FROM bench_plain" ;;
    vault) echo "SELECT sum(length(decrypted_secret)) FROM vault.decrypted_secrets" ;;
    pgp) echo "SELECT sum(length(pgp_sym_decrypt(secret, $PASS))) FROM bench_pgp" ;;
    raw) echo "SELECT sum(length(convert_from(decrypt(secret, $AESKEY, 'aes'), 'UTF8'))) FROM bench_raw" ;;
  esac
}
lookup_sql() {
  case $1 in
    plain) echo "SELECT secret FROM bench_plain WHERE name = 'secret_' || :i" ;;
    vault) echo "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'secret_' || :i" ;;
    read_secret) echo "SELECT vault.read_secret('secret_' || :i)" ;;
    pgp) echo "SELECT pgp_sym_decrypt(secret, $PASS) FROM bench_pgp WHERE name = 'secret_' || :i" ;;
    raw) echo "SELECT convert_from(decrypt(secret, $AESKEY, 'aes'), 'UTF8') FROM bench_raw WHERE name = 'secret_' || :i" ;;
  esac
}

# Time of one statement in ms (psql \timing), on a fresh connection. A failure stops the run.
timed() {
  local out
  out=$("$PG_BINDIR/psql" -h "$WORK" -p "$(port bench)" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 \
    -c '\timing on' -c "$1" 2>&1)
  if ! grep -qE '^Time: ' <<<"$out"; then
    echo "benchmark statement failed: $1"$'\n'"$out" >&2
    kill -TERM $$
  fi
  sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' <<<"$out" | tail -1
}
must() { # run SQL, stop the run when it fails
  local out
  out=$(sql bench "$1") || { echo "benchmark statement failed: $1"$'\n'"$out" >&2; exit 1; }
}
reset() { must "TRUNCATE vault.secret_acl, vault.secret_versions, vault.secrets, vault.audit_log, bench_plain, bench_pgp, bench_raw; CHECKPOINT"; }

declare -A R
record() { R[$1]="${R[$1]:-} $2"; }

for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  for v in plain create_secret insert pgp raw; do
    reset
    record "write_$v" "$(timed "$(write_sql "$v" "$WRITE_N")")"
  done
  reset
  for v in plain insert pgp raw; do
    must "$(write_sql "$v" "$SCAN_N")"
  done
  must "VACUUM ANALYZE"
  for v in plain insert pgp raw; do
    record "size_$v" "$(sql bench "SELECT pg_total_relation_size('$(table_of "$v")')")"
  done
  for v in plain vault pgp raw; do
    timed "$(scan_sql "$v")" >/dev/null # warm the cache and this backend's keys
    record "scan_$v" "$(timed "$(scan_sql "$v")")"
  done
  for v in plain vault read_secret pgp raw; do
    f=$WORK/lookup_$v.sql
    { echo "\\set i random(1, $SCAN_N)"; lookup_sql "$v"; } >"$f"
    tps=$(as_pg "$PG_BINDIR/pgbench" -h "$WORK" -p "$(port bench)" -U postgres -n -c 2 -j 2 -T "$LOOKUP_SECONDS" -f "$f" postgres 2>&1 |
      sed -nE 's/^tps = ([0-9.]+).*/\1/p' | head -1)
    record "lookup_$v" "${tps:-0}"
  done
  # The same lookups as prepared statements (how most drivers run a repeated query): no parse,
  # rewrite or plan per query, so what is left is the executor and the decryption.
  for v in plain vault; do
    tps=$(as_pg "$PG_BINDIR/pgbench" -M prepared -h "$WORK" -p "$(port bench)" -U postgres -n -c 2 -j 2 -T "$LOOKUP_SECONDS" \
      -f "$WORK/lookup_$v.sql" postgres 2>&1 | sed -nE 's/^tps = ([0-9.]+).*/\1/p' | head -1)
    record "lookupP_$v" "${tps:-0}"
  done
  sql bench "CHECKPOINT" >/dev/null
  record "rotate" "$(timed "SELECT vault.rotate_key()")"
  reset
  record "create100k" "$(timed "$(write_sql create_secret "$SCAN_N")")"
done
stop bench

python3 - "$ROUNDS" "$WRITE_N" "$SCAN_N" "$LOOKUP_SECONDS" <<EOF
import statistics, sys
rounds, wn, sn, secs = sys.argv[1:]
R = {k: [float(x) for x in v.split()] for k, v in {$(for k in "${!R[@]}"; do printf '"%s": "%s", ' "$k" "${R[$k]}"; done)}.items()}
med = {k: statistics.median(v) for k, v in R.items()}
def row(label, key, plain, unit, fmt="{:.1f}", higher_better=False, target=None):
    m, p = med[key], med[plain]
    ratio = m / p if p else float("nan")
    t = "" if target is None else f"  target {target}"
    runs = " / ".join(fmt.format(x) for x in R[key])
    print(f"{label:<44} {fmt.format(m):>12} {unit:<4} {ratio:>7.2f}x   ({runs}){t}")
print(f"vault_ext vs plain table vs pgcrypto: median of {rounds} rounds; ratios to plain in this run")
print(f"{'':<44} {'median':>12} {'':<4} {'ratio':>8}")
print(f"write {wn} secrets in one statement")
row("  plain INSERT", "write_plain", "write_plain", "ms")
row("  vault.create_secret", "write_create_secret", "write_plain", "ms", target="<= 2.5x")
row("  INSERT INTO vault.secrets", "write_insert", "write_plain", "ms", target="<= 1.5x")
row("  pgcrypto pgp_sym_encrypt", "write_pgp", "write_plain", "ms")
row("  pgcrypto encrypt(aes)", "write_raw", "write_plain", "ms")
print(f"scan + decrypt {sn} secrets (sum of lengths)")
row("  plain", "scan_plain", "scan_plain", "ms")
row("  vault.decrypted_secrets", "scan_vault", "scan_plain", "ms", target="<= 4x")
row("  pgcrypto pgp_sym_decrypt", "scan_pgp", "scan_plain", "ms")
row("  pgcrypto decrypt(aes)", "scan_raw", "scan_plain", "ms")
print(f"lookup by name, pgbench 2 clients, {secs} s")
row("  plain", "lookup_plain", "lookup_plain", "TPS", "{:.0f}")
row("  vault.decrypted_secrets", "lookup_vault", "lookup_plain", "TPS", "{:.0f}", target=">= 0.9x")
row("  vault.read_secret(name)", "lookup_read_secret", "lookup_plain", "TPS", "{:.0f}", target=">= 0.9x")
row("  pgcrypto pgp_sym_decrypt", "lookup_pgp", "lookup_plain", "TPS", "{:.0f}")
row("  pgcrypto decrypt(aes)", "lookup_raw", "lookup_plain", "TPS", "{:.0f}")
print(f"lookup by name, prepared statements (pgbench -M prepared), {secs} s")
row("  plain", "lookupP_plain", "lookupP_plain", "TPS", "{:.0f}")
row("  vault.decrypted_secrets", "lookupP_vault", "lookupP_plain", "TPS", "{:.0f}")
print(f"total relation size after {sn} inserts")
for k in ("plain", "insert", "pgp", "raw"):
    R["mib_" + k] = [x / 1048576 for x in R["size_" + k]]
    med["mib_" + k] = med["size_" + k] / 1048576
row("  plain", "mib_plain", "mib_plain", "MiB")
row("  vault.secrets", "mib_insert", "mib_plain", "MiB", target="<= 1.15x")
row("  pgcrypto pgp_sym_encrypt", "mib_pgp", "mib_plain", "MiB")
row("  pgcrypto encrypt(aes)", "mib_raw", "mib_plain", "MiB")
print(f"key rotation of {sn} secrets")
row("  create_secret x " + sn, "create100k", "create100k", "ms")
row("  vault.rotate_key() (ratio to creating)", "rotate", "create100k", "ms")
EOF
