#!/usr/bin/env bash
# Using a secret without reading it (issue 28): what not reading the key costs.
# 1. vault.hmac and vault.verify_webhook (github) per second against pgcrypto's hmac() with the
#    key passed in, through pgbench (one call per statement, CLIENTS clients, SECS seconds each,
#    as a vault_user-only role), alternating sides, median of 3 rounds. Target >= 0.8x.
# 2. vault.encrypt and vault.decrypt of N rows (one statement each, per-row context) against
#    pgcrypto's encrypt()/decrypt() ('aes', the key passed in), median of 3. Target >= 1.0x.
set -u
. "$(dirname "$0")/lib.sh"
N=${N:-100000}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-2}
cluster_init
install_release || exit 1
new_cluster bench
start bench || { cat "$(logfile bench)"; exit 1; }
echo "# $("$PG_BINDIR/postgres" --version); pgbench ${SECS}s x $CLIENTS clients per run; $N rows"
KEY="whsec_bench_$(date +%s%N)"
AESKEY="\\x$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PAYLOAD='{"id":"evt_1","type":"payment_intent.succeeded","amount":4200}'
out=$(sql bench "CREATE EXTENSION vault_ext; CREATE EXTENSION pgcrypto;
  SELECT vault.create_secret('$KEY', 'hook'); SELECT vault.create_encryption_key('pii');
  CREATE ROLE bench_app LOGIN IN ROLE vault_user;
  CREATE TABLE enc_v (id int, c text); CREATE TABLE enc_p (id int, c bytea);
  GRANT SELECT, INSERT, TRUNCATE ON enc_v, enc_p TO bench_app" 2>&1) || { echo "$out"; exit 1; }
SIG=$(sql bench "SELECT encode(hmac('$PAYLOAD', '$KEY', 'sha256'), 'hex')")
printf '\\set i random(1, 1000000)\nSELECT hmac('"'"'payload '"'"' || :i, '"'"'%s'"'"', '"'"'sha256'"'"');\n' "$KEY" >"$WORK/pgc_hmac.sql"
printf '\\set i random(1, 1000000)\nSELECT vault.hmac('"'"'hook'"'"', '"'"'payload '"'"' || :i);\n' >"$WORK/vault_hmac.sql"
printf "SELECT encode(hmac('%s', '%s', 'sha256'), 'hex') = '%s';\n" "$PAYLOAD" "$KEY" "$SIG" >"$WORK/pgc_hook.sql"
printf "SELECT vault.verify_webhook('github', 'hook', '%s', '{\"X-Hub-Signature-256\": \"sha256=%s\"}');\n" "$PAYLOAD" "$SIG" >"$WORK/vault_hook.sql"
check "control: the webhook check passes" "t" "$(PGUSER_AS=bench_app sql bench "$(cat "$WORK/vault_hook.sql")")"
check "control: the pgcrypto check passes" "t" "$(PGUSER_AS=bench_app sql bench "$(cat "$WORK/pgc_hook.sql")")"
chmod 644 "$WORK"/*.sql
tps() { # tps SCRIPT
  "$PG_BINDIR/pgbench" -h "$WORK" -p "$(port bench)" -U bench_app -n -M prepared -c "$CLIENTS" -j "$CLIENTS" \
    -T "$SECS" -f "$1" postgres 2>&1 | sed -nE 's/^tps = ([0-9.]+) .*/\1/p' | cut -d. -f1
}
ms() { local t0 t1; t0=$(date +%s%N); PGUSER_AS=bench_app sql bench "$1" >/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
declare -a ph vh pw vw pe ve pd vd
for round in 1 2 3; do
  ph+=("$(tps "$WORK/pgc_hmac.sql")"); vh+=("$(tps "$WORK/vault_hmac.sql")")
  pw+=("$(tps "$WORK/pgc_hook.sql")"); vw+=("$(tps "$WORK/vault_hook.sql")")
  PGUSER_AS=bench_app sql bench "TRUNCATE enc_v, enc_p" >/dev/null
  pe+=("$(ms "INSERT INTO enc_p SELECT g, encrypt(convert_to('ssn-' || g, 'UTF8'), '$AESKEY'::bytea, 'aes') FROM generate_series(1, $N) g")")
  ve+=("$(ms "INSERT INTO enc_v SELECT g, vault.encrypt('pii', 'ssn-' || g, 'user:' || g) FROM generate_series(1, $N) g")")
  pd+=("$(ms "SELECT count(decrypt(c, '$AESKEY'::bytea, 'aes')) FROM enc_p")")
  vd+=("$(ms "SELECT count(vault.decrypt('pii', c, 'user:' || id)) FROM enc_v")")
done
check "every row decrypts" "$N" "$(PGUSER_AS=bench_app sql bench "SELECT count(*) FROM enc_v WHERE vault.decrypt_text('pii', c, 'user:' || id) = 'ssn-' || id")"
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}x')" "$1" "$2"; }
echo "pgcrypto hmac() with the key passed in: ${ph[*]} tps (median $(median "${ph[@]}"))"
echo "vault.hmac:                             ${vh[*]} tps (median $(median "${vh[@]}")) -> $(ratio "$(median "${vh[@]}")" "$(median "${ph[@]}")") (target >= 0.8x)"
echo "pgcrypto hmac() = signature (github):   ${pw[*]} tps (median $(median "${pw[@]}"))"
echo "vault.verify_webhook('github', ...):    ${vw[*]} tps (median $(median "${vw[@]}")) -> $(ratio "$(median "${vw[@]}")" "$(median "${pw[@]}")") (target >= 0.8x)"
echo "pgcrypto encrypt() of $N rows:      ${pe[*]} ms (median $(median "${pe[@]}"))"
echo "vault.encrypt of $N rows:           ${ve[*]} ms (median $(median "${ve[@]}")) -> $(ratio "$(median "${pe[@]}")" "$(median "${ve[@]}")") the speed of pgcrypto (target >= 1.0x)"
echo "pgcrypto decrypt() of $N rows:      ${pd[*]} ms (median $(median "${pd[@]}"))"
echo "vault.decrypt of $N rows:           ${vd[*]} ms (median $(median "${vd[@]}")) -> $(ratio "$(median "${pd[@]}")" "$(median "${vd[@]}")") the speed of pgcrypto (target >= 1.0x)"
stop bench
