#!/usr/bin/env bash
# Key rotation cost: time to create N secrets (one statement of vault.create_secret) and time for
# vault.rotate_key() to re-encrypt all of them, median of 3 rounds, and their ratio.
set -u
. "$(dirname "$0")/lib.sh"
N=${N:-100000}
cluster_init
install_release || exit 1
new_cluster bench
start bench || { cat "$(logfile bench)"; exit 1; }
sql bench "CREATE EXTENSION vault_ext" >/dev/null
ms() { local t0 t1; t0=$(date +%s%N); sql bench "$1" >/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
creates=(); rotations=()
for round in 1 2 3; do
  sql bench "TRUNCATE vault.secret_acl, vault.secret_versions, vault.secrets" >/dev/null
  creates+=("$(ms "SELECT count(vault.create_secret('secret value number ' || i, 'r$round-' || i)) FROM generate_series(1, $N) i")")
  sql bench "VACUUM ANALYZE vault.secrets" >/dev/null
  rotations+=("$(ms "SELECT vault.rotate_key()")")
done
c=$(median "${creates[@]}"); r=$(median "${rotations[@]}")
echo "create $N secrets: ${creates[*]} ms (median $c); rotate_key over them: ${rotations[*]} ms (median $r)"
python3 -c "import sys; print(f'rotation / creation: {int(sys.argv[2]) / int(sys.argv[1]):.2f}x')" "$c" "$r"
stop bench
