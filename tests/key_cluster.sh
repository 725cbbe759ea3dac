#!/usr/bin/env bash
# Tier 4: root key rotation end to end, following the README procedure on a real server:
# previous key configured beside a new one, vault.rotate_root_key(), restart without the old
# key; refusals; a REPEATABLE READ writer racing a rotation; verify_secrets against a root key
# the server does not have.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init

echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version)"
new_cluster rk "log_error_verbosity = default"
DIR=$(datadir rk)
start rk || { cat "$(logfile rk)"; exit 1; }
sql rk "CREATE EXTENSION vault_ext" >/dev/null
FP_A=$(sql rk "SELECT vault.root_key_fingerprint()")

# Secrets on several keys under root key A: the compatibility key (then rotated away from), an
# aead-ietf key, an expired key that still holds a secret, and the default after rotate_key.
sql rk "SELECT vault.create_secret('compat-' || g, 'compat' || g) FROM generate_series(1, 500) g" >/dev/null
sql rk "SELECT vault.create_secret('ietf-value', 'ietf', '', vault.create_key('ietf', 'aead-ietf'))" >/dev/null
# Two kept versions on the aead-ietf key: root key rotation must carry them too.
sql rk "SELECT vault.update_secret(id, 'ietf-value-2') FROM vault.secrets WHERE name = 'ietf'" >/dev/null
sql rk "SELECT vault.update_secret(id, 'ietf-value-3') FROM vault.secrets WHERE name = 'ietf'" >/dev/null
sql rk "SELECT vault.rotate_key()" >/dev/null
sql rk "SELECT vault.create_secret('on-expired', 'expired_one', '', vault.create_key('soon_expired'))" >/dev/null
sql rk "UPDATE vault.keys SET status = 'expired' WHERE name = 'soon_expired'" >/dev/null
sql rk "SELECT vault.create_secret('after-' || g, 'after' || g) FROM generate_series(1, 1500) g" >/dev/null
DIGEST="SELECT count(*) || ':' || md5(string_agg(name || '=' || decrypted_secret, ',' ORDER BY name)) FROM vault.decrypted_secrets"
BEFORE=$(sql rk "$DIGEST")
check "2002 secrets written under root key A" "2002" "${BEFORE%%:*}"
sql rk "CREATE TABLE old_nonces AS SELECT id, nonce, secret FROM vault.secrets" >/dev/null
KEYS_A=$(sql rk "SELECT count(*) FROM vault.keys WHERE root_key_fingerprint = '$FP_A'")

# --- Step 1-2: keep the old key as the previous one, start with a new key ---------------------
stop rk
mv "$DIR/vault_root.key" "$DIR/vault_root.key.old"
echo "vault.previous_root_key_file = 'vault_root.key.old'" >>"$DIR/postgresql.conf"
start rk || { cat "$(logfile rk)"; exit 1; }
FP_B=$(sql rk "SELECT vault.root_key_fingerprint()")
check "a new root key was generated" "yes" "$([ "$FP_A" != "$FP_B" ] && [ -f "$DIR/vault_root.key" ] && echo yes)"
check_contains "log names the previous root key and what to do" \
  "previous root key loaded from \"$DIR/vault_root.key.old\" (fingerprint $FP_A); run SELECT vault.rotate_root_key()" \
  "$(cat "$(logfile rk)")"
check "every secret decrypts through the previous root key" "$BEFORE" "$(sql rk "$DIGEST")"
check "key_status shows the keys on the previous root key" "$KEYS_A previous" \
  "$(sql rk "SELECT count(*) || ' ' || min(root_key) FROM vault.key_status WHERE root_key_fingerprint = '$FP_A'")"
check "verify_secrets: ok, pointing at rotate_root_key (2002 secrets, 2 versions)" "2004 ok under the previous root key: run vault.rotate_root_key()" \
  "$(sql rk "SELECT count(*) || ' ' || min(status) || ' ' || min(detail) FROM vault.verify_secrets()")"
sql rk "SELECT vault.create_secret('written-in-window', 'window')" >/dev/null
check "a write before the rotation lands under the previous root key and decrypts" "written-in-window" \
  "$(sql rk "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'window'")"
BEFORE=$(sql rk "$DIGEST")

# A cancelled rotation changes nothing.
out=$(sql rk "SET statement_timeout = '5ms'; SELECT vault.rotate_root_key()")
check_contains "a cancelled rotate_root_key reports 57014" "57014" "$out"
check "after the cancel every key is still on the previous root key" "$KEYS_A" \
  "$(sql rk "SELECT count(*) FROM vault.key_status WHERE root_key = 'previous'")"
check "after the cancel every secret decrypts" "$BEFORE" "$(sql rk "$DIGEST")"

# A REPEATABLE READ writer whose snapshot predates the rotation must not write under the old
# root key: it gets a serialization failure and can retry.
RR_OUT=$WORK/rr.out
sql rk "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM vault.keys; SELECT pg_sleep(3);
        SELECT vault.create_secret('rr-value', 'rr'); COMMIT" >"$RR_OUT" 2>&1 &
RR_PID=$!
sleep 1

# --- Step 3: rotate ---------------------------------------------------------------------------
check "rotate_root_key re-encrypts every secret" "2003" "$(sql rk "SELECT vault.rotate_root_key()")"
wait "$RR_PID"
check_contains "the racing REPEATABLE READ writer gets 40001" "40001" "$(cat "$RR_OUT")"
check "the racing writer left no row" "0" "$(sql rk "SELECT count(*) FROM vault.secrets WHERE name = 'rr'")"
check "every key is on the new root key" "$KEYS_A current $FP_B" \
  "$(sql rk "SELECT count(*) || ' ' || min(root_key) || ' ' || min(root_key_fingerprint) FROM vault.key_status")"
check "every secret still decrypts to the same value" "$BEFORE" "$(sql rk "$DIGEST")"
check "every nonce and ciphertext changed" "0" \
  "$(sql rk "SELECT count(*) FROM vault.secrets s JOIN old_nonces o USING (id) WHERE s.nonce = o.nonce OR s.secret = o.secret")"
check "secrets stayed on their keys" "0" \
  "$(sql rk "SELECT count(*) FROM vault.secrets s JOIN vault.decrypted_secrets d USING (id) WHERE s.key_id IS DISTINCT FROM d.key_id")"
check "a second rotate_root_key has nothing to do" "0" "$(sql rk "SELECT vault.rotate_root_key()")"

# --- Step 4: restart without the previous key -------------------------------------------------
stop rk
sed -i '/^vault.previous_root_key_file/d' "$DIR/postgresql.conf"
start rk || { cat "$(logfile rk)"; exit 1; }
check "after a restart without the previous key every secret decrypts" "$BEFORE" "$(sql rk "$DIGEST")"
check "... and so do the kept versions" "ietf-value,ietf-value-2" \
  "$(sql rk "SELECT string_agg(decrypted_secret, ',' ORDER BY version) FROM vault.decrypted_secret_versions WHERE name = 'ietf'")"
check "verify_secrets: all ok (2003 secrets, 2 versions)" "2005 ok" "$(sql rk "SELECT count(*) || ' ' || min(status) FROM vault.verify_secrets()")"
check "the same SQL written to the old key file no longer matters" "$FP_B" "$(sql rk "SELECT vault.root_key_fingerprint()")"
out=$(sql rk "SELECT vault.rotate_root_key()")
check_contains "rotate_root_key without a previous key: 55000" "55000" "$out"
check_contains "... with a hint naming the setting" "vault.previous_root_key_file" "$out"

# A previous key that cannot be loaded stops the server, like a bad current key.
stop rk
echo "vault.previous_root_key_file = 'no_such.key'" >>"$DIR/postgresql.conf"
start rk
check "a missing previous key file stops the server" "no" "$([ -f "$DIR/postmaster.pid" ] && echo yes || echo no)"
check_contains "... with a FATAL naming the file" "FATAL:  vault_ext previous root key file \"$DIR/no_such.key\" does not exist" \
  "$(cat "$(logfile rk)")"
sed -i '/^vault.previous_root_key_file/d' "$DIR/postgresql.conf"

# --- verify_secrets under a root key the server does not have ---------------------------------
mv "$DIR/vault_root.key" "$DIR/vault_root.key.b"
start rk || { cat "$(logfile rk)"; exit 1; }
FP_C=$(sql rk "SELECT vault.root_key_fingerprint()")
out=$(sql rk "SELECT vault.create_secret('x', 'on_b_default')")
check_contains "writing to a key of an unloaded root key is refused (22023)" "22023" "$out"
check_contains "... naming that root key" "belongs to root key $FP_B" "$out"
NEWKEY=$(sql rk "SELECT vault.create_key('under_c')")
sql rk "SELECT vault.create_secret('c-one', 'c1', '', '$NEWKEY')" >/dev/null
sql rk "SELECT vault.create_secret('c-two', 'c2', '', '$NEWKEY')" >/dev/null
sql rk "UPDATE vault.secrets t SET secret = o.secret, nonce = o.nonce FROM vault.secrets o
        WHERE t.name = 'c2' AND o.name = 'c1'" >/dev/null
check "verify_secrets: tampered row, rows under an unknown root key, the rest ok" \
  "ok:1,root_key_mismatch:2005,tampered:1" \
  "$(sql rk "SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM (SELECT status, count(*) n FROM vault.verify_secrets() GROUP BY status) v")"
check_contains "mismatch detail names both fingerprints" "key created under root key $FP_B, server has $FP_C" \
  "$(sql rk "SELECT detail FROM vault.verify_secrets() WHERE status = 'root_key_mismatch' LIMIT 1")"
check "the tampered row is c2" "c2" "$(sql rk "SELECT name FROM vault.verify_secrets() WHERE status = 'tampered'")"
check_absent "server log holds no key" "$(tr -d '[:space:]' <"$DIR/vault_root.key.old")" "$(cat "$(logfile rk)")"

summary "root key rotation tests"
