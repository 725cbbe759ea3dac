#!/usr/bin/env bash
# Tier 3: pg_regress against a cluster started here with vault_ext preloaded.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
TESTS=(api privileges functions hijack grants rotation manager versions audit audit_guard batches tokens use)
new_cluster regress
start regress || { cat "$(logfile regress)"; exit 1; }
sql regress "CREATE DATABASE vault_regress" >/dev/null
PG_REGRESS=${PG_REGRESS:-$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress}
OUT=$WORK/regress_out
mkdir -p "$OUT"
"$PG_REGRESS" --use-existing --bindir="$PG_BINDIR" --host="$WORK" --port="$(port regress)" --user=postgres --dbname=vault_regress \
  --inputdir="$REPO/tests/pg_regress" --outputdir="$OUT" "${TESTS[@]}"
rc=$?
if [ $rc -ne 0 ]; then
  cat "$OUT/regression.diffs"
  [ -n "${REGRESS_SAVE:-}" ] && cp "$OUT"/results/*.out "$REGRESS_SAVE"/
fi
exit $rc
