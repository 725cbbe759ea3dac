#!/usr/bin/env bash
# Tier 4: leak paths closed (issue 14): per-secret grants that hold in every database of the
# cluster and for replayed ciphertext, no backend abort on huge arguments, ciphertext checked
# when it arrives with a nonce, a bounded data-key cache. Needs root, like the other cluster
# tests.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version)"

new_cluster leak
start leak || { cat "$(logfile leak)"; exit 1; }
for db in a b; do sql leak "CREATE DATABASE $db" >/dev/null; sql leak "CREATE EXTENSION vault_ext" "$db" >/dev/null; done
sql leak "CREATE ROLE r_in LOGIN IN ROLE vault_reader; CREATE ROLE r_out LOGIN IN ROLE vault_reader;
          CREATE ROLE r_view LOGIN IN ROLE vault_viewer; CREATE ROLE r_admin LOGIN IN ROLE vault_admin" >/dev/null
as_role() { PGUSER_AS=$1 sql leak "$2" "$3"; } # ROLE SQL DB

# --- 1. Per-secret grants hold everywhere --------------------------------------------------------
VALUE="grant-protected-$(date +%s%N)"
OPEN="open-value-$(date +%s%N)"
sql leak "SELECT vault.create_secret('$VALUE', 'guarded'); SELECT vault.create_secret('$OPEN', 'open');
          SELECT vault.grant_secret(id, 'r_in') FROM vault.secrets WHERE name = 'guarded'" a >/dev/null
check "granted reader reads the guarded secret" "$VALUE" \
  "$(as_role r_in "SELECT vault.read_secret('guarded')" a)"
check "excluded reader gets NULL from the view" "t" \
  "$(as_role r_out "SELECT decrypted_secret IS NULL FROM vault.decrypted_secrets WHERE name = 'guarded'" a)"
# What the excluded reader can see: the ciphertext columns of both secrets.
row() { as_role r_out "SELECT format('%L::uuid, %L, %L::bytea, %L::uuid', id, secret, nonce, key_id) FROM vault.decrypted_secrets WHERE name = '$1'" a; }
GUARDED=$(row guarded)
OPENROW=$(row open)
check "control: an open secret's ciphertext decrypts in another database of the cluster" "$OPEN" \
  "$(as_role r_out "SELECT vault._decrypt($OPENROW)" b)"
check "excluded reader replaying the guarded ciphertext in another database gets NULL" "t" \
  "$(as_role r_out "SELECT vault._decrypt($GUARDED) IS NULL" b)"
check "... and so does the granted reader there (no grant in that database)" "t" \
  "$(as_role r_in "SELECT vault._decrypt($GUARDED) IS NULL" b)"
check "... and through the mask function a viewer sees only ****" "****" \
  "$(as_role r_view "SELECT vault._mask_secret($GUARDED)" b)"
check "a vault_admin may still decrypt it there (admins read every secret)" "$VALUE" \
  "$(as_role r_admin "SELECT vault._decrypt($GUARDED)" b)"
# Same database, after the id changes: the grants follow the new id, the old id has none.
sql leak "UPDATE vault.secrets SET id = gen_random_uuid() WHERE name = 'guarded'" a >/dev/null
check "after an id change the granted reader still reads it" "$VALUE" \
  "$(as_role r_in "SELECT vault.read_secret('guarded')" a)"
check "after an id change the old ciphertext under the old id gives NULL" "t" \
  "$(as_role r_out "SELECT vault._decrypt($GUARDED) IS NULL" a)"
GUARDED2=$(row guarded)
sql leak "DELETE FROM vault.secrets WHERE name = 'guarded'" a >/dev/null
check "after the secret is deleted its saved ciphertext gives NULL" "t" \
  "$(as_role r_out "SELECT vault._decrypt($GUARDED2) IS NULL" a)"
check "control: the saved open ciphertext still decrypts in its database" "$OPEN" \
  "$(as_role r_out "SELECT vault._decrypt($OPENROW)" a)"
# Revoking the last grant opens the secret to every reader again.
sql leak "SELECT vault.create_secret('$VALUE', 'guarded'); SELECT vault.grant_secret(id, 'r_in') FROM vault.secrets WHERE name = 'guarded'" a >/dev/null
check "a new guarded secret: excluded reader gets NULL" "t" \
  "$(as_role r_out "SELECT decrypted_secret IS NULL FROM vault.decrypted_secrets WHERE name = 'guarded'" a)"
sql leak "SELECT vault.revoke_secret(id, 'r_in') FROM vault.secrets WHERE name = 'guarded'" a >/dev/null
check "after the last grant is revoked every reader reads it" "$VALUE" \
  "$(as_role r_out "SELECT vault.read_secret('guarded')" a)"
check "... and its ciphertext is open again (decrypts in the other database)" "$VALUE" \
  "$(as_role r_out "SELECT vault._decrypt($(row guarded))" b)"
# A pg_dump/restore keeps the grants and the binding.
sql leak "SELECT vault.grant_secret(id, 'r_in') FROM vault.secrets WHERE name = 'guarded'" a >/dev/null
as_pg "$PG_BINDIR/pg_dump" -h "$WORK" -p "$(port leak)" -U postgres -Fc -f "$WORK/a.dump" a
sql leak "CREATE DATABASE c" >/dev/null
out=$(as_pg "$PG_BINDIR/pg_restore" -h "$WORK" -p "$(port leak)" -U postgres -d c "$WORK/a.dump" 2>&1)
check "restore of a database with grants succeeds" "" "$out"
check "restored: the granted reader reads the guarded secret" "$VALUE" "$(as_role r_in "SELECT vault.read_secret('guarded')" c)"
check "restored: the excluded reader gets NULL" "t" \
  "$(as_role r_out "SELECT decrypted_secret IS NULL FROM vault.decrypted_secrets WHERE name = 'guarded'" c)"

# A writer that waited for the row lock of a transaction that granted the secret must see that
# grant (not a grant list cached before it committed) and store the new value restricted.
sql leak "SELECT vault.create_secret('race value 0', 'race')" a >/dev/null
bg_sql leak ctl "SELECT pg_advisory_lock(77); SELECT pg_sleep(120)" a >/dev/null &
wait_for_backend leak ctl "state = 'active' AND wait_event = 'PgSleep'" >/dev/null
bg_sql leak granter "BEGIN; SELECT vault.grant_secret(id, 'r_in') FROM vault.secrets WHERE name = 'race';
                     SELECT pg_advisory_lock_shared(77); COMMIT;" a >"$WORK/granter.out" &
GRANTER=$!
check "the granting transaction waits on the advisory lock after granting" "Lock:advisory" \
  "$(wait_for_backend leak granter "wait_event_type = 'Lock' AND wait_event = 'advisory'" | sed 's/^[0-9]* //')"
bg_sql leak writer "BEGIN; SELECT count(decrypted_secret) FROM vault.decrypted_secrets;
                    UPDATE vault.secrets SET secret = '$VALUE-race' WHERE name = 'race'; COMMIT;" a >"$WORK/writer.out" &
WRITER=$!
check "the writer waits for the granting transaction's row lock" "transactionid" \
  "$(wait_for_backend leak writer "wait_event = 'transactionid'" | sed 's/.*://')"
sql leak "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ctl'" >/dev/null
wait "$GRANTER" "$WRITER"
check "the granted reader reads the value written after the grant" "$VALUE-race" "$(as_role r_in "SELECT vault.read_secret('race')" a)"
check "the excluded reader replaying that ciphertext in another database gets NULL" "t" \
  "$(as_role r_out "SELECT vault._decrypt($(row race)) IS NULL" b)"

# --- 8. API tokens: only hashes are kept, in the data directory and in a dump ------------------------
sql leak "CREATE ROLE tok_svc NOLOGIN IN ROLE vault_reader; CREATE ROLE tok_gone NOLOGIN IN ROLE vault_reader" >/dev/null
TOK=$(sql leak "SELECT vault.create_api_token('svc', 'tok_svc')" a)
GONE=$(sql leak "SELECT vault.create_api_token('gone', 'tok_gone')" a)
check "a token acts as its role" "tok_svc" "$(sql leak "SELECT vault.api_token_role('$TOK')" a)"
sql leak "DROP ROLE tok_gone" >/dev/null
check "... and not once its role is dropped" "t" "$(sql leak "SELECT vault.api_token_role('$GONE') IS NULL" a)"
as_pg "$PG_BINDIR/pg_dump" -h "$WORK" -p "$(port leak)" -U postgres -Fp -f "$WORK/tokens.sql" a
check "a plain pg_dump holds neither token" "absent absent" "$(grep_data "$TOK" "$WORK/tokens.sql") $(grep_data "$GONE" "$WORK/tokens.sql")"
check "... but their hashes (dumped with the extension's tables)" "found" \
  "$(grep_data "$(sql leak "SELECT encode(sha256(convert_to('$TOK', 'UTF8')), 'hex')" a)" "$WORK/tokens.sql")"
sql leak "CREATE DATABASE t" >/dev/null
out=$(as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$(port leak)" -U postgres -d t -f "$WORK/tokens.sql" 2>&1 >/dev/null)
check "the dump restores" "" "$out"
check "restored: the live token acts as its role" "tok_svc" "$(sql leak "SELECT vault.api_token_role('$TOK')" t)"
check "restored: the dropped role's token stays dead" "t" "$(sql leak "SELECT vault.api_token_role('$GONE') IS NULL" t)"
sql leak "SELECT vault.revoke_api_token('svc')" a >/dev/null
check "revoked in one database, the restored copy is its own" "f t" \
  "$(sql leak "SELECT vault.api_token_role('$TOK') IS NULL" t) $(sql leak "SELECT vault.api_token_role('$TOK') IS NULL" a)"
sql leak "CHECKPOINT" >/dev/null
check "after CHECKPOINT neither token is anywhere in the data directory (WAL included)" "absent absent" \
  "$(grep_data "$TOK" "$(datadir leak)") $(grep_data "$GONE" "$(datadir leak)")"
rm -f "$WORK/tokens.sql"

# --- 9. Used, never read: non-exportable values, plaintexts given to vault.encrypt, tokens -------
# None of them reaches the data directory (WAL included) or a dump; a restore keeps the keys
# working and the secrets non-exportable.
NE="never-exported-$(date +%s%N)"
PLAIN="column-plaintext-$(date +%s%N)"
sql leak "CREATE ROLE u_app LOGIN IN ROLE vault_user;
          SELECT vault.create_secret('$NE', 'ne', new_exportable => false);
          SELECT vault.create_encryption_key('pii'); SELECT vault.create_signing_key('sig')" a >/dev/null
sql leak "CREATE TABLE customers (id int, ssn text); GRANT ALL ON customers TO u_app" a >/dev/null
as_role u_app "INSERT INTO customers SELECT 1, vault.encrypt('pii', '$PLAIN', 'user:1')" a >/dev/null
JWT=$(as_role u_app "SELECT vault.sign_jwt('ne', '{\"sub\":\"1\"}')" a)
MAC=$(as_role u_app "SELECT encode(vault.hmac('ne', 'm'), 'hex')" a)
check "a vault_user computes with the non-exportable secret" "64" "${#MAC}"
check "a vault_admin cannot read it (NULL in the view)" "t" \
  "$(as_role r_admin "SELECT decrypted_secret IS NULL FROM vault.decrypted_secrets WHERE name = 'ne'" a)"
check_contains "... nor through read_secret (42501)" "42501" "$(as_role r_admin "SELECT vault.read_secret('ne')" a)"
NEROW=$(as_role r_admin "SELECT format('%L::uuid, %L, %L::bytea, %L::uuid', id, secret, nonce, key_id) FROM vault.decrypted_secrets WHERE name = 'ne'" a)
check "... nor by calling _decrypt with its row, in this database" "t" "$(as_role r_admin "SELECT vault._decrypt($NEROW) IS NULL" a)"
check "... nor in another database of the cluster (its ciphertext is sealed)" "t" \
  "$(as_role r_admin "SELECT vault._decrypt($NEROW) IS NULL" b)"
# A backend that keeps the decrypted key sees a new value written by another session at once.
out=$(as_pg "$PG_BINDIR/psql" -h "$WORK" -p "$(port leak)" -U u_app -d a -XAtq \
  -c "SELECT encode(vault.hmac('ne', 'm'), 'hex')" \
  -c "\\! '$PG_BINDIR/psql' -h '$WORK' -p $(port leak) -U postgres -d a -Xq -c \"SELECT vault.update_secret(id, 'key') FROM vault.secrets WHERE name = 'ne'\" >/dev/null" \
  -c "SELECT encode(vault.hmac('ne', 'The quick brown fox jumps over the lazy dog'), 'hex')" 2>&1)
check "a kept key is dropped when another session writes the secret" \
  "$MAC f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" "$(echo $out)"
MAC=$(as_role u_app "SELECT encode(vault.hmac('ne', 'm'), 'hex')" a)
sql leak "CHECKPOINT" >/dev/null
check "after CHECKPOINT no non-exportable value, column plaintext or token is in the data directory" "absent absent absent" \
  "$(grep_data "$NE" "$(datadir leak)") $(grep_data "$PLAIN" "$(datadir leak)") $(grep_data "$JWT" "$(datadir leak)")"
as_pg "$PG_BINDIR/pg_dump" -h "$WORK" -p "$(port leak)" -U postgres -Fp -f "$WORK/use.sql" a
check "a plain pg_dump holds neither the value nor the column plaintext" "absent absent" \
  "$(grep_data "$NE" "$WORK/use.sql") $(grep_data "$PLAIN" "$WORK/use.sql")"
sql leak "CREATE DATABASE u" >/dev/null
out=$(as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$(port leak)" -U postgres -d u -f "$WORK/use.sql" 2>&1 >/dev/null)
check "the dump restores" "" "$out"
check "restored: the same HMAC" "$MAC" "$(as_role u_app "SELECT encode(vault.hmac('ne', 'm'), 'hex')" u)"
check "restored: the column decrypts" "$PLAIN" "$(as_role u_app "SELECT vault.decrypt_text('pii', ssn, 'user:1') FROM customers" u)"
check "restored: the signing key signs for its public key" "t" \
  "$(as_role u_app "SELECT vault.verify_signature(vault.public_key('sig'), 'x', vault.sign('sig', 'x'))" u)"
check "restored: still not exportable" "f t" \
  "$(sql leak "SELECT exportable FROM vault.secrets WHERE name = 'ne'" u) $(as_role r_admin "SELECT decrypted_secret IS NULL FROM vault.decrypted_secrets WHERE name = 'ne'" u)"
# A dump edited to say exportable (the row's ciphertext as it was) does not restore the row.
sql leak "CREATE DATABASE v" >/dev/null
sed -E "s/^([0-9a-f-]{36}\tne\t.*\t)f$/\1t/" "$WORK/use.sql" >"$WORK/use_edited.sql"
check "the edit changed the row" "1" "$(diff "$WORK/use.sql" "$WORK/use_edited.sql" | grep -c '^>')"
out=$(as_pg "$PG_BINDIR/psql" -X -q -h "$WORK" -p "$(port leak)" -U postgres -d v -f "$WORK/use_edited.sql" 2>&1 >/dev/null)
check "an edited dump (exportable = true) restores the row only as non-exportable, or not at all" "t" \
  "$(sql leak "SELECT coalesce(bool_and(decrypted_secret IS NULL), true) FROM vault.decrypted_secrets WHERE name = 'ne'" v)"
rm -f "$WORK/use.sql" "$WORK/use_edited.sql"

# --- 5. Ciphertext arriving with a nonce is checked ----------------------------------------------
out=$(sql leak "INSERT INTO vault.secrets (name, secret, nonce) VALUES ('fake', encode(convert_to('$VALUE', 'UTF8'), 'base64'), '\\x00112233445566778899aabbccddeeff')" a)
check_contains "a base64 plaintext with a made-up nonce is refused (22023)" "22023" "$out"
check_absent "... and the message does not quote it" "$(printf %s "$VALUE" | base64)" "$out"
check "... and nothing was stored" "0" "$(sql leak "SELECT count(*) FROM vault.secrets WHERE name = 'fake'" a)"

# --- 7. The data-key cache is bounded --------------------------------------------------------------
# Every data key holds guarded (mlock'd, guard-paged) memory: thousands of keys in one backend
# used to exhaust the process's mappings. KEYS distinct keys, one secret each, read in one scan.
KEYS=${LEAK_KEYS:-12000}
sql leak "CREATE DATABASE k" >/dev/null
sql leak "CREATE EXTENSION vault_ext" k >/dev/null
sql leak "SELECT vault.create_secret('v' || i, 'k' || i, '', vault.create_key('key' || i)) FROM generate_series(1, $KEYS) i" k >/dev/null
check "$KEYS secrets under $KEYS distinct keys all decrypt in one backend" "$KEYS" \
  "$(sql leak "SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret = 'v' || substr(name, 2)" k)"
check "... and the backend can still derive a key afterwards" "fresh" \
  "$(sql leak "SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret = 'v' || substr(name, 2); SELECT vault.read_secret('k1') = 'v1' AND vault.create_secret('fresh', 'fresh', '', vault.create_key('one more')) IS NOT NULL; SELECT vault.read_secret('fresh')" k | tail -1)"
stop leak

# --- 2. No backend abort on allocation failure ----------------------------------------------------
# A server whose allocations can fail (ulimit -v): huge arguments from low-privileged roles end in
# a clean ERROR, never in an abort and crash recovery.
new_cluster small "shared_buffers = 16MB"
start_limited() { as_pg bash -c "ulimit -v ${LEAK_ULIMIT_KB:-1600000} && '$PG_BINDIR/pg_ctl' -D '$(datadir small)' -l '$(logfile small)' -w -t 60 start" >/dev/null 2>&1; }
start_limited || { cat "$(logfile small)"; exit 1; }
sql small "CREATE EXTENSION vault_ext; CREATE ROLE v_view LOGIN IN ROLE vault_viewer; CREATE ROLE v_read LOGIN IN ROLE vault_reader" >/dev/null
sql small "SELECT vault.create_secret('small value', 'small')" >/dev/null
# Volatile, so the planner does not fold (and copy) the 1 GB constant: the server needs 1 GB for
# the argument, vault_ext would need 750 MB more to decode it, and the limit allows only one.
HUGE="repeat('A', ${LEAK_HUGE:-1000000000} + (random() * 0)::int)"
huge_call() { # ROLE SQL: ERROR lines of the call
  PGUSER_AS=$1 sql small "$2" | grep -E 'ERROR|server closed|terminated' | head -2
}
for call in "v_view|SELECT vault._mask_secret(gen_random_uuid(), $HUGE, NULL, NULL)" \
            "v_read|SELECT vault._decrypt(gen_random_uuid(), $HUGE, NULL, NULL)" \
            "v_read|SELECT vault._decrypt(gen_random_uuid(), $HUGE, '\\x00112233445566778899aabbccddeeff'::bytea, NULL)"; do
  role=${call%%|*}; q=${call#*|}
  out=$(huge_call "$role" "$q")
  check_contains "$role: ${q:0:40}... with a 1 GB argument: clean out-of-memory ERROR (53200)" "ERROR:  53200: out of memory" "$out"
done
out=$(PGUSER_AS=v_read sql small "SELECT vault.read_secret(repeat('A', 100000000 + (random() * 0)::int))" | head -3)
check_contains "read_secret with a 100 MB name: not found (P0002), no abort" "P0002" "$out"
check_contains "... the name in the message is cut to 64 characters" "\"$(printf 'A%.0s' $(seq 64))...\"" "$out"
# (pg_postmaster_start_time() survives crash recovery: the postmaster stays; the log says it.)
# Any role may send a huge statement that mentions the vault: the log hook must not copy it.
sql small "CREATE ROLE v_none LOGIN; ALTER ROLE v_none SET log_statement = 'all'" >/dev/null
python3 -c "print(\"SELECT length('\" + 'a' * 600_000_000 + \"') AS vault;\")" >"$WORK/big.sql"
chmod 644 "$WORK/big.sql"
out=$("$PG_BINDIR/psql" -h "$WORK" -p "$(port small)" -U v_none -d postgres -XAtq -f "$WORK/big.sql" 2>&1 | cut -c1-200 | head -3)
case "$out" in
  *ERROR* | 600000000) ok "a role without vault rights sends a 600 MB statement naming the vault: a result or an ERROR" ;;
  *) not_ok "a role without vault rights sends a 600 MB statement naming the vault: a result or an ERROR" "$out" ;;
esac
check_contains "... and the log hook withholds it instead of copying it" "(text of more than 1 MiB withheld by vault_ext)" "$(cat "$(logfile small)")"
rm -f "$WORK/big.sql"
check_absent "the server never went through crash recovery" "server processes terminated; reinitializing" "$(cat "$(logfile small)")"
check_absent "no backend aborted" "terminated by signal" "$(cat "$(logfile small)")"
check_absent "... and Rust's allocator never gave up" "memory allocation of" "$(cat "$(logfile small)")"
check "the secret still reads afterwards" "small value" "$(PGUSER_AS=v_read sql small "SELECT vault.read_secret('small')")"

summary "leak tests"
