#!/usr/bin/env bash
# Tier 4: root key rotation end to end, following the README procedure on a real server:
# previous key configured beside a new one, vault.rotate_root_key(), restart without the old
# key; refusals; a REPEATABLE READ writer racing a rotation; verify_secrets against a root key
# the server does not have. Sessions that must meet wait for locks, never for time.
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
check "four keys under root key A: compatibility, aead-ietf, rotate_key's default, expired" "4" "$KEYS_A"

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

# A cancelled rotation changes nothing. Locks, not timing: this script holds a row lock on one
# secret in the middle of the default key's 2,000, so the rotation (which has already moved the
# keys it visited before) waits for that row inside its UPDATE; the cancel lands there.
bg_sql rk rk_row_holder "BEGIN; SELECT 1 FROM vault.secrets WHERE name = 'after750' FOR UPDATE; SELECT pg_sleep(600)" \
  >"$WORK/row_holder.out" &
HOLDER=$!
wait_for_backend rk rk_row_holder "wait_event = 'PgSleep'" >/dev/null
bg_sql rk rk_rotation "SELECT vault.rotate_root_key()" >"$WORK/cancelled.out" &
ROT=$!
WAITING=$(wait_for_backend rk rk_rotation "wait_event_type = 'Lock'")
check "the rotation waits for the locked row (a row lock: it is inside its UPDATE of vault.secrets)" \
  "Lock:transactionid" "${WAITING#* }"
[ -n "$WAITING" ] && sql rk "SELECT pg_cancel_backend(${WAITING%% *})" >/dev/null
# Let the cancel act while the row is still locked (the rotation leaves its lock wait).
for _ in $(seq 100); do
  [ "$(sql rk "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rk_rotation' AND wait_event_type = 'Lock'")" = 0 ] && break
  sleep 0.1
done
sql rk "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rk_row_holder'" >/dev/null
wait "$ROT" "$HOLDER"
check_contains "a cancelled rotate_root_key reports 57014" "ERROR:  57014: canceling statement due to user request" \
  "$(cat "$WORK/cancelled.out")"
check "after the cancel every key is still on the previous root key" "4" \
  "$(sql rk "SELECT count(*) FROM vault.key_status WHERE root_key = 'previous'")"
check "after the cancel every secret decrypts" "$BEFORE" "$(sql rk "$DIGEST")"

# A REPEATABLE READ writer whose snapshot predates the rotation must not write under the old
# root key: it gets a serialization failure and can retry. It takes its snapshot, then waits
# for an advisory lock this script holds until the rotation has committed.
bg_sql rk rk_lock_holder "SELECT pg_advisory_lock(77); SELECT pg_sleep(600)" >"$WORK/lock_holder.out" &
HOLDER=$!
wait_for_backend rk rk_lock_holder "wait_event = 'PgSleep'" >/dev/null
bg_sql rk rk_rr "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM vault.keys; SELECT pg_advisory_lock(77);
        SELECT vault.create_secret('rr-value', 'rr'); COMMIT" >"$WORK/rr.out" &
RR_PID=$!
check "the REPEATABLE READ writer has its snapshot and waits" "Lock:advisory" \
  "$(wait_for_backend rk rk_rr "wait_event_type = 'Lock'" | cut -d' ' -f2)"

# --- Step 3: rotate ---------------------------------------------------------------------------
# Under a search path that puts planted operators and functions before pg_catalog (as
# tests/pg_regress/sql/hijack.sql does for everything else): none of them may run.
PLANT=$(cat <<'SQL'
CREATE TABLE public.hijacked (what text);
DO $$
DECLARE o record;
BEGIN
  FOR o IN SELECT op, t FROM unnest(ARRAY['=', '<>']) op, unnest(ARRAY['text', 'uuid', 'bytea', 'integer', 'bigint']) t LOOP
    EXECUTE format('CREATE FUNCTION public.%I(%s, %s) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN '
                   'INSERT INTO public.hijacked VALUES (%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END $f$',
                   format('evil_%s_%s', md5(o.op), o.t), o.t, o.t, format('%s %s', o.t, o.op), o.op);
    EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.%I)',
                   o.op, o.t, o.t, format('evil_%s_%s', md5(o.op), o.t));
  END LOOP;
END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.hijacked VALUES ('now()'); RETURN pg_catalog.now(); END $$;
SQL
)
sql rk "$PLANT" >/dev/null
check "rotate_root_key re-encrypts every secret" "2003" \
  "$(sql rk "SET search_path = public, pg_temp, pg_catalog; SELECT vault.rotate_root_key()")"
check "... and no planted operator or function ran" "0" "$(sql rk "SELECT count(*) FROM public.hijacked")"
# Control: the same search path reaches each plant (11: ten operators and now()).
sql rk "SET search_path = public, pg_temp, pg_catalog;
  SELECT NULL::text = NULL::text, NULL::text <> NULL::text, NULL::uuid = NULL::uuid, NULL::uuid <> NULL::uuid,
         NULL::bytea = NULL::bytea, NULL::bytea <> NULL::bytea, NULL::integer = NULL::integer,
         NULL::integer <> NULL::integer, NULL::bigint = NULL::bigint, NULL::bigint <> NULL::bigint, now()" >/dev/null
check "control: under that search path each planted object is picked" "11 11" \
  "$(sql rk "SELECT count(DISTINCT what) || ' ' || count(*) FROM public.hijacked")"
sql rk "DROP TABLE public.hijacked; DROP FUNCTION public.now();
  DO \$\$ DECLARE f regprocedure; BEGIN
    FOR f IN SELECT oid FROM pg_proc WHERE proname LIKE 'evil\\_%' AND pronamespace = 'public'::regnamespace LOOP
      EXECUTE format('DROP FUNCTION %s CASCADE', f);
    END LOOP; END \$\$" >/dev/null
sql rk "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rk_lock_holder'" >/dev/null
wait "$HOLDER"
wait "$RR_PID"
check_contains "the racing REPEATABLE READ writer gets 40001" "40001" "$(cat "$WORK/rr.out")"
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
# Another row's ciphertext is refused when written (22023: it does not decrypt for c2's id) ...
check_contains "copying c1's ciphertext into c2 is refused (22023)" "22023" \
  "$(sql rk "UPDATE vault.secrets t SET secret = o.secret, nonce = o.nonce FROM vault.secrets o
             WHERE t.name = 'c2' AND o.name = 'c1'")"
# ... so put it there past the trigger, as damaged storage would, for verify_secrets to find.
sql rk "ALTER TABLE vault.secrets DISABLE TRIGGER secrets_encrypt;
        UPDATE vault.secrets t SET secret = o.secret, nonce = o.nonce FROM vault.secrets o
         WHERE t.name = 'c2' AND o.name = 'c1';
        ALTER TABLE vault.secrets ENABLE TRIGGER secrets_encrypt" >/dev/null
# ok: c1, and c2's replaced value, which the archive trigger kept as a version.
check "verify_secrets: tampered row, rows under an unknown root key, the rest ok" \
  "ok:2,root_key_mismatch:2005,tampered:1" \
  "$(sql rk "SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM (SELECT status, count(*) n FROM vault.verify_secrets() GROUP BY status) v")"
check_contains "mismatch detail names both fingerprints" "key created under root key $FP_B, server has $FP_C" \
  "$(sql rk "SELECT detail FROM vault.verify_secrets() WHERE status = 'root_key_mismatch' LIMIT 1")"
check "the tampered row is c2" "c2" "$(sql rk "SELECT name FROM vault.verify_secrets() WHERE status = 'tampered'")"
check_absent "server log holds no key" "$(tr -d '[:space:]' <"$DIR/vault_root.key.old")" "$(cat "$(logfile rk)")"

summary "root key rotation tests"
