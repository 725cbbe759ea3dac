#!/usr/bin/env bash
# Tier 4: cluster tests. Start, restart and break real servers and check what a user sees.
# Needs root (clusters run as the postgres OS user) and vault_ext installed into the server
# whose bin directory is PG_BINDIR (default: pg_config --bindir).
set -u
. "$(dirname "$0")/lib.sh"
cluster_init

fingerprint_of() {
  python3 -c 'import hashlib,sys; print(hashlib.blake2b(b"vault_ext root key fingerprint", key=bytes.fromhex(sys.argv[1]), digest_size=32).hexdigest()[:16])' "$1"
}
random_hex() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }

echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version)"

# --- A fresh cluster generates its key file and keeps using it across restarts ---------------
new_cluster main "log_error_verbosity = verbose"
MAIN=$(datadir main)
start main || { cat "$(logfile main)"; exit 1; }
check "key file generated on first start" "yes" "$([ -f "$MAIN/vault_root.key" ] && echo yes)"
check "key file mode 0600, owned by postgres" "600 postgres" "$(stat -c '%a %U' "$MAIN/vault_root.key")"
KEY=$(tr -d '[:space:]' <"$MAIN/vault_root.key")
check "key file holds 64 hex characters" "64" "$(printf %s "$KEY" | grep -cE '^[0-9a-f]{64}$' | sed 's/^1$/64/')"
check_contains "log announces the generated key and its fingerprint" \
  "generated a new root key in \"$MAIN/vault_root.key\" (fingerprint $(fingerprint_of "$KEY"))" "$(cat "$(logfile main)")"
check_absent "log does not contain the key" "$KEY" "$(cat "$(logfile main)")"
sql main "CREATE EXTENSION vault_ext" >/dev/null
check "root_key_fingerprint() = BLAKE2b-256(msg, key) computed independently" \
  "$(fingerprint_of "$KEY")" "$(sql main "SELECT vault.root_key_fingerprint()")"

sql main "SELECT vault.create_secret('s3cr3t-value', 'api_key', 'first')" >/dev/null
sql main "INSERT INTO vault.secrets (name, secret) VALUES ('utf8', 'pässwörd ✓ 鍵 🔑'), ('empty', '')" >/dev/null
sql main "SELECT vault.create_secret(repeat('0123456789abcdef', 65536), 'mib')" >/dev/null
BEFORE=$(sql main "SELECT string_agg(name || '=' || md5(decrypted_secret), ',' ORDER BY name) FROM vault.decrypted_secrets")
check "secrets round-trip (1 MiB, UTF-8, empty)" \
  "api_key=$(printf %s 's3cr3t-value' | md5sum | cut -d' ' -f1)" "$(echo "$BEFORE" | tr ',' '\n' | grep '^api_key=')"
check "1 MiB secret decrypts to its full length" "1048576" \
  "$(sql main "SELECT length(decrypted_secret) FROM vault.decrypted_secrets WHERE name = 'mib'")"
check "multi-byte UTF-8 secret round-trips" "pässwörd ✓ 鍵 🔑|" \
  "$(sql main "SELECT decrypted_secret || '|' || (SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'empty') FROM vault.decrypted_secrets WHERE name = 'utf8'")"
restart main
check "after restart the same key file is used" "$KEY" "$(tr -d '[:space:]' <"$MAIN/vault_root.key")"
check "after restart every secret still decrypts" "$BEFORE" \
  "$(sql main "SELECT string_agg(name || '=' || md5(decrypted_secret), ',' ORDER BY name) FROM vault.decrypted_secrets")"

# --- Fresh nonces: 1,000 secrets in one statement ---------------------------------------------
sql main "SELECT vault.create_secret('bulk ' || i, 'bulk' || i) FROM generate_series(1, 1000) i" >/dev/null
check "1,000 secrets in one statement get 1,000 distinct nonces" "1000" \
  "$(sql main "SELECT count(DISTINCT nonce) FROM vault.secrets WHERE name LIKE 'bulk%'")"

# --- Plaintext never reaches the data files or WAL --------------------------------------------
MARKER="PLAINTEXT-MARKER-$(random_hex | cut -c1-20)"
CONTROL="CONTROL-MARKER-$(random_hex | cut -c1-20)"
sql main "SELECT vault.create_secret('$MARKER via create_secret', 'm1')" >/dev/null
sql main "INSERT INTO vault.secrets (name, secret) VALUES ('m2', '$MARKER via insert')" >/dev/null
sql main "SELECT vault.update_secret(id, '$MARKER via update') FROM vault.secrets WHERE name = 'm1'" >/dev/null
sql main "UPDATE vault.secrets SET secret = '$MARKER via direct update' WHERE name = 'm2'" >/dev/null
sql main "SELECT vault.create_secret('$MARKER in a failed insert', 'm1')" >/dev/null # unique violation
sql main "CREATE TABLE control_plain (v text); INSERT INTO control_plain VALUES ('$CONTROL')" >/dev/null
sql main "CHECKPOINT" >/dev/null
# The control must be found in each place on its own: a search that only reached pg_wal/ would
# otherwise pass it.
check "control: a value stored in a plain table is found in base/" "found" "$(grep_data "$CONTROL" "$MAIN/base")"
check "control: ... and in pg_wal/" "found" "$(grep_data "$CONTROL" "$MAIN/pg_wal")"
check "no plaintext marker in base/ or pg_wal/" "absent" "$(grep_data "$MARKER" "$MAIN/base" "$MAIN/pg_wal")"
check "the marked secrets decrypt" "2" \
  "$(sql main "SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret LIKE '$MARKER%update'")"

# --- kill -9 of a backend in the middle of a key rotation --------------------------------------
# A barrier, not a sleep: a BEFORE UPDATE trigger (it fires after vault's own, alphabetically)
# counts the rows the rotation has re-encrypted; at row 15,000 it logs that and waits for an
# advisory lock this script holds. The kill lands while the rotation's transaction sits there,
# half done.
sql main "CREATE DATABASE rot" >/dev/null
sql main "CREATE EXTENSION vault_ext; SELECT vault.create_secret('rot value ' || i, 'rot' || i) FROM generate_series(1, 30000) i" rot >/dev/null
sql main "CREATE SEQUENCE public.rot_progress;
  CREATE FUNCTION public.rot_barrier() RETURNS trigger LANGUAGE plpgsql AS \$\$
  BEGIN
    IF nextval('public.rot_progress') = 15000 THEN
      RAISE LOG 'rotation barrier: 14999 secrets re-encrypted, waiting';
      PERFORM pg_advisory_lock(4242);
    END IF;
    RETURN NEW;
  END \$\$;
  CREATE TRIGGER zz_rot_barrier BEFORE UPDATE ON vault.secrets FOR EACH ROW EXECUTE FUNCTION public.rot_barrier()" rot >/dev/null
bg_sql main rot_lock_holder "SELECT pg_advisory_lock(4242); SELECT pg_sleep(600)" rot >"$WORK/rot_holder.out" &
HOLDER_CLIENT=$!
wait_for_backend main rot_lock_holder "wait_event = 'PgSleep'" >/dev/null
bg_sql main rot_rotation "SELECT vault.rotate_key()" rot >"$WORK/rot_client.out" &
ROT_CLIENT=$!
WAITING=$(wait_for_backend main rot_rotation "wait_event_type = 'Lock' AND wait_event = 'advisory'")
ROT_PID=${WAITING%% *}
check "the rotation stopped at the barrier, waiting for the advisory lock" "Lock:advisory" "${WAITING#* }"
check_contains "server log: the barrier was reached half way through the rotation" \
  "rotation barrier: 14999 secrets re-encrypted, waiting" "$(cat "$(logfile main)")"
[ -n "$ROT_PID" ] && kill -9 "$ROT_PID"
# The crash ends every session, the holder's too; without a kill the holder is ended here.
[ -n "$ROT_PID" ] || sql main "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rot_lock_holder'" >/dev/null
wait "$ROT_CLIENT"
ROT_RC=$?
wait "$HOLDER_CLIENT"
for _ in $(seq 1 60); do sql main "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
check "the rotation's client saw its server process die (not an earlier error)" \
  "2:server closed the connection unexpectedly" \
  "$ROT_RC:$(grep -o 'server closed the connection unexpectedly' "$WORK/rot_client.out")"
check_contains "server log: the rotation's backend was killed by signal 9" \
  "(PID ${ROT_PID:-none}) was terminated by signal 9" "$(cat "$(logfile main)")"
sql main "DROP TRIGGER zz_rot_barrier ON vault.secrets; DROP FUNCTION public.rot_barrier(); DROP SEQUENCE public.rot_progress" rot >/dev/null
check "after the crash no secret is half-rotated: all still on the old key" "30000|0" \
  "$(sql main "SELECT count(*) FILTER (WHERE key_id IS NULL) || '|' || count(*) FILTER (WHERE key_id IS NOT NULL) FROM vault.secrets" rot)"
check "after the crash every secret decrypts" "30000" \
  "$(sql main "SELECT count(*) FROM vault.decrypted_secrets WHERE decrypted_secret = 'rot value ' || substr(name, 4)" rot)"
check "after the crash the old key is still the default" "default|default" \
  "$(sql main "SELECT string_agg(name || '|' || status, ',') FROM vault.keys WHERE status = 'default'" rot)"
sql main "SELECT vault.rotate_key()" rot >/dev/null
check "a rotation after the crash completes" "0|30000" \
  "$(sql main "SELECT count(*) FILTER (WHERE key_id IS NULL) || '|' || count(*) FILTER (WHERE d.decrypted_secret = 'rot value ' || substr(d.name, 4)) FROM vault.decrypted_secrets d" rot)"

# --- pg_dump, restore into another cluster with the same key file ------------------------------
sql main "CREATE DATABASE app" >/dev/null
sql main "CREATE EXTENSION vault_ext; SELECT vault.create_key('second');
          SELECT vault.create_secret('app value ' || i, 'app' || i, 'd', CASE WHEN i % 2 = 0 THEN (SELECT id FROM vault.keys WHERE name = 'second') END)
          FROM generate_series(1, 20) i" app >/dev/null
# Create rows under the compatibility key carry a constant detail, the others jsonb_build_object's.
check "create audit rows: the detail jsonb_build_object would make, for both kinds of key" "20|10" \
  "$(sql main "SELECT count(*) FILTER (WHERE a.detail = jsonb_build_object('key_id', s.key_id, 'version', 1)) || '|' ||
               count(*) FILTER (WHERE s.key_id IS NULL)
          FROM vault.audit_log a JOIN vault.secrets s ON s.id = a.secret_id WHERE a.action = 'create'" app)"
sql main "CREATE ROLE app_team NOLOGIN; SELECT vault.grant_secret(id, 'app_team') FROM vault.secrets WHERE name = 'app3'" app >/dev/null
sql main "SELECT vault.update_secret(id, 'app value 3b') FROM vault.secrets WHERE name = 'app3'" app >/dev/null
sql main "SELECT vault.rotate_key()" app >/dev/null # the dump then holds a default key of its own
APP_BEFORE=$(sql main "SELECT string_agg(name || '=' || decrypted_secret || '/' || (key_id IS NULL), ',' ORDER BY name) FROM vault.decrypted_secrets" app)
HISTORY_SQL="SELECT (SELECT string_agg(name || ':' || version || ':' || decrypted_secret || ':' || created_by || ':' || created_at, ',')
                       FROM vault.decrypted_secret_versions) || '|' ||
                    (SELECT string_agg(secret_name || ':' || grantee || ':' || granted_by || ':' || granted_at, ',') FROM vault.secret_grants)"
HISTORY_BEFORE=$(sql main "$HISTORY_SQL" app)
new_cluster copy
write_key "$(datadir copy)/vault_root.key" "$KEY"
start copy || cat "$(logfile copy)"
"$PG_BINDIR/pg_dump" -h "$WORK" -p "$(port main)" -U postgres -Fc -f "$WORK/app.dump" app
sql copy "CREATE DATABASE app" >/dev/null
sql copy "CREATE ROLE app_team NOLOGIN" >/dev/null # roles are global: pg_dump does not carry them
RESTORE=$("$PG_BINDIR/pg_restore" -h "$WORK" -p "$(port copy)" -U postgres -d app --exit-on-error "$WORK/app.dump" 2>&1)
check "pg_restore succeeds" "" "$RESTORE"
check "restored secrets all decrypt under the same key file" "$APP_BEFORE" \
  "$(sql copy "SELECT string_agg(name || '=' || decrypted_secret || '/' || (key_id IS NULL), ',' ORDER BY name) FROM vault.decrypted_secrets" app)"
check "restore keeps the keys and their statuses after a rotation" "default:expired,second:valid,-:default" \
  "$(sql copy "SELECT string_agg(COALESCE(name, '-') || ':' || status, ',' ORDER BY key_id) FROM vault.keys" app)"
check "restore keeps per-secret grants" "app3:app_team" \
  "$(sql copy "SELECT secret_name || ':' || grantee FROM vault.secret_grants" app)"
check "restore keeps kept versions and grants with their authors and times" "$HISTORY_BEFORE" "$(sql copy "$HISTORY_SQL" app)"
check_contains "... (which were there to keep)" "app3:1:app value 3:postgres:" "$HISTORY_BEFORE"
stop copy

# --- A different root key: decryption fails with XX001 naming both fingerprints ----------------
stop main
OTHER=$(random_hex)
cp "$MAIN/vault_root.key" "$WORK/original.key"
write_key "$MAIN/vault_root.key" "$OTHER"
start main
OUT=$(sql main "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'api_key'")
check_contains "wrong root key: XX001" "ERROR:  XX001: could not decrypt secret" "$OUT"
check_contains "wrong root key: message says the root key changed" "is not the one this secret was written under" "$OUT"
check_contains "wrong root key: detail gives both fingerprints" \
  "root key fingerprint $(fingerprint_of "$KEY"); the server loaded root key fingerprint $(fingerprint_of "$OTHER")" "$OUT"
check_absent "wrong root key: the error does not contain the secret" "s3cr3t" "$OUT"
stop main
cp "$WORK/original.key" "$MAIN/vault_root.key"
start main
check "original key back: secrets decrypt again" "s3cr3t-value" \
  "$(sql main "SELECT vault.read_secret('api_key')")"
stop main

# --- Refusals at start: FATAL F0000 naming path and problem, never key bytes ------------------
new_cluster bad "log_error_verbosity = verbose" "include_if_exists = 'vault_test.conf'"
BAD=$(datadir bad)
# expect_refusal NAME EXPECTED-TEXT SECRET-TEXT: the server must not start; the log must say
# EXPECTED-TEXT with F0000 and a hint, and must not contain SECRET-TEXT.
# Only what this start wrote is read: pg_ctl appends to the log, so the checks read the log
# from the size it had before (an earlier refusal's lines cannot satisfy them).
expect_refusal() {
  local from log
  from=$(stat -c %s "$(logfile bad)" 2>/dev/null || echo 0)
  if start bad; then
    not_ok "$1: server refused to start" "it started"
    stop bad
    return
  fi
  log=$(tail -c +$((from + 1)) "$(logfile bad)")
  check_contains "$1: FATAL F0000" "FATAL:  F0000:" "$log"
  check_contains "$1: log explains" "$2" "$log"
  check_contains "$1: log has a hint" "HINT:" "$log"
  [ -n "$3" ] && check_absent "$1: log contains no key bytes" "$3" "$log"
}
GOOD=$(random_hex)
write_key "$BAD/vault_root.key" "$GOOD"
chmod 640 "$BAD/vault_root.key"
expect_refusal "group-readable key file" "\"$BAD/vault_root.key\" has group or world access (mode 0640)" "$GOOD"
write_key "$WORK/elsewhere.key" "$GOOD"
chmod 600 "$BAD/vault_root.key"; rm -f "$BAD/vault_root.key"
ln -s "$WORK/elsewhere.key" "$BAD/vault_root.key"
expect_refusal "symlinked key file" "\"$BAD/vault_root.key\" is a symbolic link" "$GOOD"
rm -f "$BAD/vault_root.key"
write_key "$BAD/vault_root.key" "$GOOD"
chown root: "$BAD/vault_root.key"
expect_refusal "key file owned by another user" "\"$BAD/vault_root.key\" is not owned by the server's OS user" "$GOOD"
rm -f "$BAD/vault_root.key"
write_key "$BAD/vault_root.key" "${GOOD:0:63}"
expect_refusal "63-character key" "\"$BAD/vault_root.key\" holds 63 characters instead of 64 hex characters" "${GOOD:0:40}"
write_key "$BAD/vault_root.key" "${GOOD:0:60}zzzz"
expect_refusal "non-hex key" "\"$BAD/vault_root.key\" is not all hex characters" "${GOOD:0:40}"
rm -f "$BAD/vault_root.key"
echo "vault.root_key_autogenerate = off" >"$BAD/vault_test.conf"; chown postgres: "$BAD/vault_test.conf"
expect_refusal "missing key file with autogenerate off" "\"$BAD/vault_root.key\" does not exist" ""
printf '#!/bin/sh\necho %s\necho "script diagnostics" >&2\nexit 3\n' "$GOOD" >"$WORK/fail.sh"
printf '#!/bin/sh\necho 0123456789\n' >"$WORK/short.sh"
printf '#!/bin/sh\necho %s\n' "$GOOD" >"$WORK/noexec.sh"
chmod 755 "$WORK/fail.sh" "$WORK/short.sh"; chmod 644 "$WORK/noexec.sh"
echo "vault.getkey_script = '$WORK/fail.sh'" >"$BAD/vault_test.conf"
expect_refusal "failing getkey script" "getkey script \"$WORK/fail.sh\" failed (exit status: 3)" "$GOOD"
check_absent "failing getkey script: its stderr stays out of the log" "script diagnostics" "$(cat "$(logfile bad)")"
echo "vault.getkey_script = '$WORK/short.sh'" >"$BAD/vault_test.conf"
expect_refusal "getkey script printing a short key" "printed 10 characters on its first line instead of 64 hex characters" "0123456789"
# A script that floods its output: read up to 4 KiB, then refused (no hang, no flood in the log).
printf '#!/bin/sh\nhead -c 1000000 /dev/zero | tr "\\\\0" a\n' >"$WORK/flood.sh"; chmod 755 "$WORK/flood.sh"
echo "vault.getkey_script = '$WORK/flood.sh'" >"$BAD/vault_test.conf"
expect_refusal "getkey script flooding its output" "getkey script \"$WORK/flood.sh\" printed more than 4096 bytes" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
echo "vault.getkey_script = '$WORK/missing.sh'" >"$BAD/vault_test.conf"
expect_refusal "missing getkey script" "getkey script \"$WORK/missing.sh\" cannot be used" ""
echo "vault.getkey_script = '$WORK/noexec.sh'" >"$BAD/vault_test.conf"
expect_refusal "non-executable getkey script" "getkey script \"$WORK/noexec.sh\" is not an executable file" "$GOOD"

# --- A getkey script wins over the key file; supabase_vault rows decrypt under its key --------
VKEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_key_hex"])' "$VECTORS")
new_cluster vec "vault.getkey_script = '$WORK/vec_key.sh'"
printf '#!/bin/sh\necho %s\n' "$VKEY" >"$WORK/vec_key.sh"; chmod 755 "$WORK/vec_key.sh"
write_key "$(datadir vec)/vault_root.key" "$(random_hex)"
start vec || cat "$(logfile vec)"
check_contains "log says the key came from the getkey script" "root key loaded from getkey script \"$WORK/vec_key.sh\"" "$(cat "$(logfile vec)")"
sql vec "CREATE EXTENSION vault_ext" >/dev/null
check "getkey script wins over the key file" "$(fingerprint_of "$VKEY")" "$(sql vec "SELECT vault.root_key_fingerprint()")"
python3 - "$VECTORS" >"$WORK/vectors.sql" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
q = lambda s: "NULL" if s is None else "'" + s.replace("'", "''") + "'"
print("CREATE TABLE expected (id uuid PRIMARY KEY, plaintext text);")
for v in j["vectors"]:
    # As pg_dump writes them: every column, nonce present, key_id NULL.
    print("INSERT INTO vault.secrets (id, name, description, secret, key_id, nonce, created_at, updated_at) VALUES "
          f"({q(v['id'])}, {q(v['name'])}, {q(v['description'])}, {q(v['secret'])}, NULL, '\\x{v['nonce']}', "
          f"{q(v['created_at'])}, {q(v['updated_at'])});")
    print(f"INSERT INTO expected VALUES ({q(v['id'])}, {q(v['plaintext'])});")
PY
"$PG_BINDIR/psql" -h "$WORK" -p "$(port vec)" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 -f "$WORK/vectors.sql" >/dev/null 2>&1
check "supabase_vault rows keep their ciphertext byte for byte" "35" \
  "$(sql vec "SELECT count(*) FROM vault.secrets")"
check "all 35 supabase_vault vectors decrypt to their plaintexts" "35" \
  "$(sql vec "SELECT count(*) FROM vault.decrypted_secrets d JOIN expected e USING (id) WHERE d.decrypted_secret = e.plaintext")"
# The migration commands the README gives: \copy out with nonces, \copy back in.
PSQL_VEC=("$PG_BINDIR/psql" -h "$WORK" -p "$(port vec)" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1)
"${PSQL_VEC[@]}" -c "\copy (SELECT id, name, description, secret, nonce, created_at, updated_at FROM vault.secrets) TO '$WORK/secrets.copy'"
sql vec "DELETE FROM vault.secrets" >/dev/null
"${PSQL_VEC[@]}" -c "\copy vault.secrets (id, name, description, secret, nonce, created_at, updated_at) FROM '$WORK/secrets.copy'"
check "README migration: rows copied back with \\copy all decrypt" "35" \
  "$(sql vec "SELECT count(*) FROM vault.decrypted_secrets d JOIN expected e USING (id) WHERE d.decrypted_secret = e.plaintext")"
# vault.migrate_from (issue 26, finding 11): supabase_vault's table restored under another name,
# holding its 35 ciphertext rows and rows a plain INSERT (its README's first example) stored as
# plaintext with a nonce from the column default (supabase_vault has no trigger).
python3 - "$VECTORS" >"$WORK/import.sql" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
q = lambda s: "NULL" if s is None else "'" + s.replace("'", "''") + "'"
print("""CREATE SCHEMA supabase_vault_import;
CREATE TABLE supabase_vault_import.secrets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text, description text NOT NULL DEFAULT '',
  secret text NOT NULL, key_id uuid, nonce bytea DEFAULT decode(md5(random()::text), 'hex'),
  created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP);""")
for v in j["vectors"]:
    print("INSERT INTO supabase_vault_import.secrets (id, name, description, secret, key_id, nonce, created_at, updated_at) VALUES "
          f"({q(v['id'])}, {q(v['name'])}, {q(v['description'])}, {q(v['secret'])}, NULL, '\\x{v['nonce']}', "
          f"{q(v['created_at'])}, {q(v['updated_at'])});")
PY
"${PSQL_VEC[@]}" -f "$WORK/import.sql" >/dev/null 2>&1
PLAIN=PLAINROW$RANDOM
sql vec "INSERT INTO supabase_vault_import.secrets (secret, name) VALUES
           ('$PLAIN-ascii', 'plain_ascii'), ('', 'plain_empty'), ('aGVsbG8=', 'plain_short_base64'),
           (repeat('ab', 32) || '$RANDOM', 'plain_hex'), (repeat('ab', 32), 'plain_hex64'),
           ('$PLAIN-ünï
line two', 'plain_utf8');
         CREATE TABLE expected_import AS SELECT id, secret AS plaintext, nonce FROM supabase_vault_import.secrets WHERE name LIKE 'plain%'
           UNION ALL SELECT e.id, e.plaintext, NULL FROM expected e;
         DELETE FROM vault.secrets" >/dev/null
check "the README's \\copy stops at the first plaintext row (22023)" "22023" \
  "$("${PSQL_VEC[@]}" -v VERBOSITY=verbose -c "\copy (SELECT id, name, description, secret, nonce, created_at, updated_at FROM supabase_vault_import.secrets) TO '$WORK/plain.copy'" \
     -c "\copy vault.secrets (id, name, description, secret, nonce, created_at, updated_at) FROM '$WORK/plain.copy'" 2>&1 | grep -o 22023 | head -1)"
MARK=$(sql vec "SELECT clock_timestamp()")
check "migrate_from: ciphertext kept, plaintext encrypted, counts reported" "35|6|0|0" \
  "$(sql vec "SELECT concat_ws('|', kept_ciphertext, encrypted_plaintext, already_present, skipped) FROM vault.migrate_from('supabase_vault_import.secrets')")"
check "... every row decrypts to its value (41)" "41" \
  "$(sql vec "SELECT count(*) FROM vault.decrypted_secrets d JOIN expected_import e USING (id) WHERE d.decrypted_secret = e.plaintext")"
check "... the ciphertext rows byte for byte, with their nonces, names and times" "35" \
  "$(sql vec "SELECT count(*) FROM vault.secrets s JOIN supabase_vault_import.secrets i USING (id)
              WHERE s.secret = i.secret AND s.nonce = i.nonce AND s.name IS NOT DISTINCT FROM i.name
                AND s.description = i.description AND s.created_at = i.created_at AND s.updated_at = i.updated_at")"
check "... the plaintext rows under a fresh nonce, no plaintext stored" "6" \
  "$(sql vec "SELECT count(*) FROM vault.secrets s JOIN expected_import e USING (id)
              WHERE e.nonce IS NOT NULL AND s.nonce <> e.nonce AND s.secret <> e.plaintext AND position('$PLAIN' in s.secret) = 0")"
check "... audited as creates" "41" "$(sql vec "SELECT count(*) FROM vault.audit_log WHERE action = 'create' AND at >= '$MARK' AND secret_id IN (SELECT id FROM expected_import)")"
check "migrate_from twice: nothing copied again" "0|0|41|0" \
  "$(sql vec "SELECT concat_ws('|', kept_ciphertext, encrypted_plaintext, already_present, skipped) FROM vault.migrate_from('supabase_vault_import.secrets')")"
check "... and nothing changed" "41" "$(sql vec "SELECT count(*) FROM vault.decrypted_secrets d JOIN expected_import e USING (id) WHERE d.decrypted_secret = e.plaintext")"
# Rows that look like ciphertext but do not decrypt, with no row that does (a wrong root key?):
# an error by default, skipped or taken as plaintext on request.
sql vec "CREATE TABLE supabase_vault_import.only_b64 (LIKE supabase_vault_import.secrets INCLUDING DEFAULTS);
         INSERT INTO supabase_vault_import.only_b64 (secret, name) VALUES (repeat('cd', 32), 'b64_only')" >/dev/null
check_contains "ambiguous rows alone: 22023 naming the root key" "22023" \
  "$("${PSQL_VEC[@]}" -v VERBOSITY=verbose -c "SELECT * FROM vault.migrate_from('supabase_vault_import.only_b64')" 2>&1)"
check "... skipped on request" "0|0|0|1" \
  "$(sql vec "SET client_min_messages = warning;
              SELECT concat_ws('|', kept_ciphertext, encrypted_plaintext, already_present, skipped) FROM vault.migrate_from('supabase_vault_import.only_b64', ambiguous_as_plaintext => false)")"
check "... taken as plaintext on request" "0|1|0|0" \
  "$(sql vec "SELECT concat_ws('|', kept_ciphertext, encrypted_plaintext, already_present, skipped) FROM vault.migrate_from('supabase_vault_import.only_b64', ambiguous_as_plaintext => true)")"
check "... and it decrypts to the value" "$(printf 'cd%.0s' $(seq 32))" "$(sql vec "SELECT vault.read_secret('b64_only')")"
stop vec

# --- Not preloaded: CREATE EXTENSION works, key use raises 55000 with a hint --------------------
new_cluster nopre "shared_preload_libraries = ''"
start nopre || cat "$(logfile nopre)"
check "CREATE EXTENSION without preloading" "" "$(sql nopre "CREATE EXTENSION vault_ext")"
OUT=$(sql nopre "SELECT vault.create_secret('x')")
check_contains "not preloaded: 55000" "ERROR:  55000: vault_ext has no root key: the library was not preloaded" "$OUT"
check_contains "not preloaded: hint" "HINT:  Add vault_ext to shared_preload_libraries in postgresql.conf and restart the server." "$OUT"
check_contains "not preloaded: root_key_fingerprint() 55000" "55000" "$(sql nopre "SELECT vault.root_key_fingerprint()")"
check "not preloaded: nothing was stored" "0" "$(sql nopre "SELECT count(*) FROM vault.secrets")"
stop nopre

summary "cluster tests"
