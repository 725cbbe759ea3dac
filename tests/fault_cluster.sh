#!/usr/bin/env bash
# Tier 4: faults and load on real servers. kill -9 of the postmaster under writers, a streaming
# replica (read, promote, write), logical replication of ciphertext, a 4-client soak, and a
# custom-format dump restored under the same and under a different root key.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
SOAK_SECONDS=${SOAK_SECONDS:-60}

echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version)"
psql_to() { # NAME: psql arguments for that cluster
  echo "-h $WORK -p $(port "$1") -U postgres -XAtq -v ON_ERROR_STOP=1"
}
# "<secrets> secrets, <n> NULL: <md5 of every name=value>"; a NULL read is counted, not skipped.
DIGEST="SELECT count(*) || ' secrets, ' || count(*) FILTER (WHERE decrypted_secret IS NULL) || ' NULL: ' ||
  md5(coalesce(string_agg(name || '=' || coalesce(decrypted_secret, '<NULL>'), ',' ORDER BY name), '')) FROM vault.decrypted_secrets"

# Every current value and kept version verifies: "0 bad, all verified" (a literal the checks
# compare with, so a server that is down cannot pass).
VERIFIED="SELECT count(*) FILTER (WHERE status <> 'ok') || ' bad, ' ||
  CASE WHEN count(*) FILTER (WHERE status = 'ok') = (SELECT count(*) FROM vault.secrets) + (SELECT count(*) FROM vault.secret_versions)
       THEN 'all verified' ELSE count(*) FILTER (WHERE status = 'ok') || ' verified of ' ||
            (SELECT count(*) FROM vault.secrets) + (SELECT count(*) FROM vault.secret_versions) END
  FROM vault.verify_secrets()"

new_cluster prim "wal_level = logical" "max_wal_senders = 10" "log_error_verbosity = verbose"
PRIM=$(datadir prim)
start prim || { cat "$(logfile prim)"; exit 1; }
sql prim "CREATE EXTENSION vault_ext" >/dev/null

# --- kill -9 of the postmaster while two clients create and update secrets -------------------
# Each client logs an operation as "sent" before and "acked" after psql returns success: an
# acked write is committed and must survive; a sent-but-not-acked one may or may not have.
writer() { # CLIENT
  local c=$1 i=0 name value
  while :; do
    i=$((i + 1)); name="crash_${c}_$(((i + 1) / 2))"; value="plainmarker-$c-$i-$RANDOM"
    echo "sent $name $value" >>"$WORK/ops_$c"
    if [ $((i % 2)) -eq 1 ]; then
      "$PG_BINDIR/psql" $(psql_to prim) -c "SELECT vault.create_secret('$value', '$name')" >/dev/null 2>&1 || break
    else
      "$PG_BINDIR/psql" $(psql_to prim) -c "SELECT vault.update_secret(id, '$value') FROM vault.secrets WHERE name = '$name'" \
        >/dev/null 2>&1 || break
    fi
    echo "acked $name $value" >>"$WORK/ops_$c"
  done
}
writer 1 & W1=$!
writer 2 & W2=$!
BOOTED=$(sql prim "SELECT pg_postmaster_start_time()")
sleep 4
KILLED=$(head -1 "$PRIM/postmaster.pid")
kill -9 "$KILLED"
wait "$W1" "$W2" 2>/dev/null
# Gone, or a zombie nobody reaps (a container's init may not).
check "the killed postmaster is gone" "gone" "$(ps -o stat= -p "$KILLED" | grep -qv '^Z' && echo alive || echo gone)"
# Orphaned backends leave when they notice the postmaster is gone; then it can start again.
for _ in $(seq 30); do start prim && break; sleep 1; done
# postmaster.pid survives a kill -9: only a query says the server is back (a new one, started
# after the one we killed).
check "server restarts after kill -9 of the postmaster and answers a query" "t" \
  "$(sql prim "SELECT pg_postmaster_start_time() > '$BOOTED'::timestamptz")"
ACKED=$(cat "$WORK"/ops_* | grep -c '^acked')
echo "# writers acknowledged $ACKED operations before the kill"
check "writers got some work done before the kill" "yes" "$([ "$ACKED" -ge 20 ] && echo yes)"
# The query must succeed: an error would leave error lines in the file, not rows.
"$PG_BINDIR/psql" $(psql_to prim) -F ' ' -c "SELECT name, coalesce(decrypted_secret, '<NULL>')
  FROM vault.decrypted_secrets WHERE name LIKE 'crash_%'" >"$WORK/final" 2>"$WORK/final.err"
rc=$?
check "the query reading the crash secrets back succeeds" "0:" "$rc:$(cat "$WORK/final.err")"
# Every name with an acknowledged write must be there with its last acknowledged value (or a
# later value whose acknowledgement the kill swallowed); a create sent but never acknowledged
# may be there with its value, or not; nothing else may be there.
verdict=$(python3 - "$WORK" <<'EOF'
import glob, re, sys
work = sys.argv[1]
final, malformed = {}, 0
for line in open(f"{work}/final").read().splitlines():
    m = re.fullmatch(r"(crash_[12]_[0-9]+) (.*)", line)
    if m:
        final[m[1]] = m[2]
    else:
        malformed += 1
missing, wrong, acked_names, sent = [], [], set(), set()
for f in glob.glob(f"{work}/ops_*"):
    last_acked, pending = {}, {}
    for line in open(f).read().splitlines():
        kind, name, value = line.split(" ", 2)
        sent.add(name)
        if kind == "acked":
            last_acked[name] = value
            pending.pop(name, None)
        else:
            pending[name] = value
    acked_names |= set(last_acked)
    for name, value in last_acked.items():
        if name not in final:
            missing.append(name)
        elif final[name] not in (value, pending.get(name)):
            wrong.append(name)
    for name, value in pending.items():
        if name not in last_acked and name in final and final[name] != value:
            wrong.append(name)
unknown = [n for n in final if n not in sent]
print(f"{len(final)} rows, at least the {len(acked_names)} acknowledged names: {len(final) >= len(acked_names) > 0}; "
      f"missing {len(missing)}, wrong value {len(wrong)}, never written {len(unknown)}, malformed lines {malformed}")
EOF
)
NFINAL=$(grep -c . "$WORK/final")
NACKED=$(grep -h '^acked' "$WORK"/ops_* | cut -d' ' -f2 | sort -u | wc -l)
check "every acknowledged write survived with its last acknowledged value" \
  "$NFINAL rows, at least the $NACKED acknowledged names: True; missing 0, wrong value 0, never written 0, malformed lines 0" \
  "$verdict"
check "every secret and kept version decrypts after the crash" "$NFINAL crash secrets, 0 bad, all verified" \
  "$(sql prim "SELECT (SELECT count(*) FROM vault.secrets WHERE name LIKE 'crash_%') || ' crash secrets, ' || ($VERIFIED)")"
check "no row holds plaintext" "0" "$(sql prim "SELECT count(*) FROM vault.secrets WHERE secret LIKE '%plainmarker%'")"
# Positive control: a value in a plain table is found in the data files and, separately, in the
# WAL, so the search below would see plaintext in either.
CONTROL="plaincontrol-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
sql prim "CREATE TABLE plain_control (v text); INSERT INTO plain_control VALUES ('$CONTROL')" >/dev/null
sql prim "CHECKPOINT" >/dev/null
check "control: a plain-table value is found in base/" "found" "$(grep_data "$CONTROL" "$PRIM/base")"
check "control: ... and in pg_wal/" "found" "$(grep_data "$CONTROL" "$PRIM/pg_wal")"
check "no plaintext in the data files or WAL" "absent" "$(grep_data plainmarker- "$PRIM/base" "$PRIM/pg_wal")"
sql prim "DROP TABLE plain_control" >/dev/null

# --- Streaming replica from pg_basebackup -----------------------------------------------------
sql prim "SELECT vault.create_secret('replicated-' || g, 'rep' || g) FROM generate_series(1, 200) g;
          SELECT vault.create_secret('on-second-key', 'rep_k2', '', vault.create_key('k2', 'aead-ietf'))" >/dev/null
PRIM_DIGEST=$(sql prim "$DIGEST")
REPL=$WORK/repl
as_pg "$PG_BINDIR/pg_basebackup" -h "$WORK" -p "$(port prim)" -U postgres -D "$REPL" -R -X stream >/dev/null 2>&1
PORT_repl=$PORT_NEXT; PORT_NEXT=$((PORT_NEXT + 1)); STARTED+=("$REPL")
echo "port = $PORT_repl" >>"$REPL/postgresql.conf"
# -R writes every libpq option pg_basebackup's libpq knows; the relocatable servers' walreceiver
# may load an older system libpq that rejects some (sslnegotiation): keep the ones that matter.
echo "primary_conninfo = 'host=$WORK port=$(port prim) user=postgres'" >>"$REPL/postgresql.auto.conf"
check "pg_basebackup copied the key file with its mode (the replica's key source)" "600" \
  "$(stat -c '%a' "$REPL/vault_root.key" 2>&1)"
start repl || cat "$WORK/repl.log"
check "replica is in recovery" "t" "$(sql repl "SELECT pg_is_in_recovery()")"
check "replica loaded the same root key" "$(sql prim "SELECT vault.root_key_fingerprint()")" \
  "$(sql repl "SELECT vault.root_key_fingerprint()")"
sql prim "SELECT vault.create_secret('after-backup', 'rep_late')" >/dev/null
# Wait (up to 60 s) until the replica has replayed everything the primary committed.
PRIM_DIGEST=$(sql prim "$DIGEST")
check_contains "primary: every secret reads back (none NULL)" " 0 NULL: " "$PRIM_DIGEST"
for _ in $(seq 120); do [ "$(sql repl "$DIGEST")" = "$PRIM_DIGEST" ] && break; sleep 0.5; done
check "replica reads every secret, including one streamed after the backup" "$PRIM_DIGEST" "$(sql repl "$DIGEST")"
check_contains "writing on the replica: read-only transaction (25006)" "25006" \
  "$(sql repl "SELECT vault.create_secret('x', 'on_standby')")"
as_pg "$PG_BINDIR/pg_ctl" -D "$REPL" -w promote >/dev/null 2>&1
check "promoted replica is writable" "f" "$(sql repl "SELECT pg_is_in_recovery()")"
sql repl "SELECT vault.create_secret('after-promotion', 'promoted')" >/dev/null
check "promoted replica writes and reads new secrets" "after-promotion" \
  "$(sql repl "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'promoted'")"
check "promoted replica: all 203 secrets and kept versions verify" "203 secrets, 0 bad, all verified" \
  "$(sql repl "SELECT (SELECT count(*) FROM vault.secrets WHERE name LIKE 'rep%' OR name = 'promoted') || ' secrets, ' || ($VERIFIED)")"
stop repl

# --- Logical replication to a subscriber with the same root key -------------------------------
new_cluster sub
write_key "$(datadir sub)/vault_root.key" "$(tr -d '[:space:]' <"$PRIM/vault_root.key")"
start sub || cat "$(logfile sub)"
sql sub "CREATE EXTENSION vault_ext" >/dev/null
# The compatibility key exists on both sides already; publish the keys users created.
sql prim "CREATE PUBLICATION vault_pub FOR TABLE vault.secrets,
          vault.keys WHERE (id <> '00000000-0000-0000-0000-000000000000')" >/dev/null
sql sub "CREATE SUBSCRIPTION vault_sub CONNECTION 'host=$WORK port=$(port prim) user=postgres dbname=postgres'
         PUBLICATION vault_pub" >/dev/null
sql prim "SELECT vault.create_secret('streamed-logically', 'logical1')" >/dev/null
sql prim "SELECT vault.update_secret(id, 'updated-logically') FROM vault.secrets WHERE name = 'rep1'" >/dev/null
sql prim "DELETE FROM vault.secrets WHERE name = 'rep2'" >/dev/null
CIPHER="SELECT md5(string_agg(id || secret || encode(nonce, 'hex'), ',' ORDER BY id)) FROM vault.secrets"
for _ in $(seq 60); do [ "$(sql sub "$CIPHER")" = "$(sql prim "$CIPHER")" ] && break; sleep 0.5; done
check "subscriber holds the same ciphertext (not re-encrypted on apply)" "$(sql prim "$CIPHER")" "$(sql sub "$CIPHER")"
check "subscriber decrypts every replicated secret" "$(sql prim "$DIGEST")" "$(sql sub "$DIGEST")"
check "an UPDATE replicates and decrypts" "updated-logically" \
  "$(sql sub "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'rep1'")"
sql sub "DROP SUBSCRIPTION vault_sub" >/dev/null
sql prim "DROP PUBLICATION vault_pub" >/dev/null
stop sub

# --- Caches across transactions: another session's committed change is seen at once ----------
# Session A keeps one backend (its key metadata and grants caches live across transactions);
# session B changes grants and key status. A must see each change in its next transaction.
sql prim "CREATE ROLE cache_reader IN ROLE vault_reader; CREATE ROLE cache_other;
          SELECT vault.create_secret('cached-value', 'cached', '', vault.create_key('cache_key'))" >/dev/null
B="$PG_BINDIR/psql $(psql_to prim)"
READ_A="SELECT 'A: ' || coalesce(decrypted_secret, '<null>') FROM vault.decrypted_secrets WHERE name = 'cached';"
# One psql session (one backend) for A; its \! lines run session B's statements in between.
OUT=$("$PG_BINDIR/psql" $(psql_to prim) -v ON_ERROR_STOP=0 -v VERBOSITY=verbose 2>&1 <<EOF
SET ROLE cache_reader;
$READ_A
\! $B -c "SELECT vault.grant_secret(id, 'cache_other') FROM vault.secrets WHERE name = 'cached'" >/dev/null
$READ_A
\! $B -c "SELECT vault.revoke_secret(id, 'cache_other') FROM vault.secrets WHERE name = 'cached'" >/dev/null
$READ_A
\! $B -c "UPDATE vault.keys SET status = 'invalid' WHERE name = 'cache_key'" >/dev/null
$READ_A
\! $B -c "UPDATE vault.keys SET status = 'valid' WHERE name = 'cache_key'" >/dev/null
$READ_A
\! $B -c "BEGIN; SELECT vault.grant_secret(id, 'cache_other') FROM vault.secrets WHERE name = 'cached'; ROLLBACK" >/dev/null
$READ_A
EOF
)
reads=$(echo "$OUT" | grep -E '^A: |22023' | sed -E 's/^ERROR:  22023.*/A: 22023/' | tr '\n' ',')
check "one session A sees each committed change of session B in its next statement" \
  "A: cached-value,A: <null>,A: cached-value,A: 22023,A: cached-value,A: cached-value," "$reads"
sql prim "DELETE FROM vault.secrets WHERE name = 'cached'" >/dev/null

# --- Soak: 4 clients, create/update/read/delete on 40 shared names ----------------------------
# Every transaction logs its operation in the same transaction, so the log counts exactly the
# committed work; a read that sees a value not written by a client, or NULL, logs 'bad_read'. The upsert
# repeats the plaintext in DO UPDATE (EXCLUDED.secret is already ciphertext: see the README).
sql prim "CREATE TABLE soak_log (op text NOT NULL)" >/dev/null
cat >"$WORK/soak.sql" <<'EOF'
\set n random(1, 40)
\set op random(1, 4)
BEGIN;
\if :op = 1
WITH v AS (SELECT 'soakvalue-' || :client_id || '-' || random() AS value)
INSERT INTO vault.secrets (name, secret) SELECT 'soak' || :n, value FROM v
  ON CONFLICT (name) WHERE name IS NOT NULL
  DO UPDATE SET secret = (SELECT value FROM v), nonce = NULL, updated_at = now();
INSERT INTO soak_log VALUES ('upsert');
\elif :op = 2
SELECT vault.update_secret(id, 'soakvalue-' || :client_id || '-u' || random())
  FROM (SELECT id FROM vault.secrets WHERE name = 'soak' || :n FOR UPDATE) locked;
INSERT INTO soak_log VALUES ('update');
\elif :op = 3
INSERT INTO soak_log SELECT 'bad_read' FROM vault.decrypted_secrets
 WHERE name = 'soak' || :n AND NOT coalesce(decrypted_secret ~ '^soakvalue-[0-9]+-u?[0-9.e-]+$', false);
INSERT INTO soak_log VALUES ('read');
\else
DELETE FROM vault.secrets WHERE name = 'soak' || :n;
INSERT INTO soak_log VALUES ('delete');
\endif
COMMIT;
EOF
SOAK=$(as_pg "$PG_BINDIR/pgbench" -h "$WORK" -p "$(port prim)" -U postgres -n -c 4 -j 2 -T "$SOAK_SECONDS" \
  -f "$WORK/soak.sql" postgres 2>&1)
SOAK_RC=$?
DONE=$(echo "$SOAK" | sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p')
echo "# soak: ${DONE:-?} transactions in ${SOAK_SECONDS} s"
echo "$SOAK" | grep -E "ERROR|abort" | head -5
check "soak: pgbench exits 0" "0" "$SOAK_RC"
check "soak: pgbench ran transactions" "yes" "$([ "${DONE:-0}" -gt 0 ] && echo yes)"
check "soak: pgbench counts no failed transaction" "0" \
  "$(echo "$SOAK" | sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p')"
check_absent "soak: no client aborted" "aborted" "$SOAK"
check_absent "soak: no errors" "ERROR" "$SOAK"
check "soak: committed transactions = what pgbench reports" "${DONE:-none}" \
  "$(sql prim "SELECT count(*) FROM soak_log WHERE op <> 'bad_read'")"
check "soak: every read saw a value a client wrote" "0" "$(sql prim "SELECT count(*) FROM soak_log WHERE op = 'bad_read'")"
check "soak: every remaining secret and kept version decrypts" "0 bad, all verified" "$(sql prim "$VERIFIED")"
check "soak: no row holds plaintext" "0" "$(sql prim "SELECT count(*) FROM vault.secrets WHERE secret LIKE 'soakvalue%'")"

# --- pg_dump -Fc restored under the same and under a different root key -----------------------
"$PG_BINDIR/pg_dump" -h "$WORK" -p "$(port prim)" -U postgres -Fc -f "$WORK/prim.dump" postgres
restore_into() { # NAME KEYHEX: output in $WORK/NAME.restore
  new_cluster "$1"
  write_key "$(datadir "$1")/vault_root.key" "$2"
  start "$1" || cat "$(logfile "$1")"
  sql "$1" "CREATE DATABASE restored" >/dev/null
  "$PG_BINDIR/pg_restore" -h "$WORK" -p "$(port "$1")" -U postgres -d restored --exit-on-error "$WORK/prim.dump" \
    >"$WORK/$1.restore" 2>&1
  echo "exit $?" >>"$WORK/$1.restore"
}
restore_into same "$(tr -d '[:space:]' <"$PRIM/vault_root.key")"
out=$(cat "$WORK/same.restore")
check "restore with the same key succeeds, every ciphertext checked without a warning" "exit 0" "$out"
check "... and every secret decrypts" "$(sql prim "$DIGEST")" "$(sql same "$DIGEST" restored)"
stop same
restore_into other "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
out=$(cat "$WORK/other.restore")
PRIM_FP=$(sql prim "SELECT vault.root_key_fingerprint()")
check "restore with a different key succeeds" "exit 0" "$(tail -1 <<<"$out")"
# Ciphertext under a root key the server has not loaded cannot be checked: stored as is, and
# said once per key (not per row), naming the root key it needs. pg_restore shows notices only
# with -v: the server log has them.
check "... warning that ciphertext under each key could not be checked" \
  "$(sql prim "SELECT count(DISTINCT coalesce(key_id::text, 'compat')) FROM vault.secrets")" \
  "$(grep -c "WARNING: .*stored ciphertext under key .* without checking it: the key belongs to root key $PRIM_FP, which this server has not loaded" "$(logfile other)")"
check "... and pg_restore printed nothing else" "exit 0" "$out"
N=$(sql prim "SELECT (SELECT count(*) FROM vault.secrets) + (SELECT count(*) FROM vault.secret_versions)")
check "verify_secrets: every secret and version (compatibility key included) is root_key_mismatch" "$N root_key_mismatch" \
  "$(sql other "SELECT count(*) || ' ' || string_agg(DISTINCT status, ',') FROM vault.verify_secrets()" restored)"
out=$(sql other "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'rep3'" restored)
check_contains "decrypting says the root key is not the one (XX001)" "XX001" "$out"
check_contains "... with the fingerprint the secrets need" "$(sql prim "SELECT vault.root_key_fingerprint()")" "$out"
check "key_status marks the restored keys 'not loaded'" "not loaded" \
  "$(sql other "SELECT string_agg(DISTINCT root_key, ',') FROM vault.key_status" restored)"
stop other
stop prim

summary "fault tests"
