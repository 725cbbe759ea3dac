#!/usr/bin/env bash
# Tier 4: HashiCorp Vault's KV v2 API on `pgvault serve` (issue 29, SPEC §12) against a real
# server: hvac (PyPI) and node-vault (npm), run unchanged (tests/vault_clients/), and curl for
# the exact statuses, headers and shapes; tokens act as their role through a NOINHERIT
# authenticator (grants hold, writes audited with the token's role); missing, unknown, expired
# and revoked tokens get 403; no cookie is read on /v1/; no token in the server's output or the
# database log (log_statement = all). PGVAULT=path/to/pgvault (default: target/debug/pgvault).
set -u
. "$(dirname "$0")/lib.sh"
PGVAULT=${PGVAULT:-$REPO/target/debug/pgvault}
CLIENTS=$REPO/tests/vault_clients
[ -x "$PGVAULT" ] || { echo "no pgvault binary at $PGVAULT (cargo build -p pgvault)"; exit 1; }
for tool in curl jq openssl python3 node; do
  command -v $tool >/dev/null || { echo "vault api tests need $tool (scripts/setup.sh installs it)"; exit 1; }
done
python3 -c 'import hvac' 2>/dev/null || { echo "vault api tests need hvac (scripts/setup.sh installs it)"; exit 1; }
[ -d "$CLIENTS/node/node_modules/node-vault" ] || { echo "vault api tests need node-vault (scripts/setup.sh: npm ci in $CLIENTS/node)"; exit 1; }
cluster_init
trap servers_cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

PW=Pw-$RANDOM-$RANDOM-x
new_cluster kv "password_encryption = 'scram-sha-256'" "log_statement = 'all'" \
  "log_min_duration_statement = 0" "log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
  "log_min_error_statement = error"
scram_only kv
echo 'local replication postgres trust' >>"$(datadir kv)/pg_hba.conf" # for the standby's pg_basebackup
start kv || { cat "$(logfile kv)"; exit 1; }
out=$(sql kv "CREATE EXTENSION vault_ext;
  CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '$PW';
  GRANT USAGE ON SCHEMA vault TO authenticator;
  CREATE ROLE kv_reader NOLOGIN IN ROLE vault_reader;
  CREATE ROLE kv_billing NOLOGIN IN ROLE vault_reader;
  CREATE ROLE kv_viewer NOLOGIN IN ROLE vault_viewer;
  CREATE ROLE kv_admin NOLOGIN IN ROLE vault_admin;
  GRANT kv_reader, kv_billing, kv_viewer, kv_admin TO authenticator;
  CREATE ROLE web_admin LOGIN PASSWORD '$PW' IN ROLE vault_admin;
  SELECT vault.create_secret('made-in-sql', 'sql_made');
  SELECT vault.create_secret('sk-shared-0123456789abcdef', 'shared_key');
  SELECT vault.create_secret('sk-billing-0123456789abcdef', 'billing_key');
  SELECT vault.grant_secret(id, 'kv_billing') FROM vault.secrets WHERE name = 'billing_key';") \
  || { echo "setup failed: $out"; exit 1; }
test_certificate || exit 1

unset PGUSER PGPASSWORD PGHOST PGPORT DATABASE_URL PGSERVICE PGVAULT_URL PGVAULT_TOKEN PGVAULT_CACERT VAULT_TOKEN
dsn() { echo "host=$WORK port=${3:-$(port "$1")} dbname=postgres user=${2:-postgres}"; }
pv() { "$PGVAULT" --dsn "$(dsn kv)" "$@"; }
WPORT=$((PORT_NEXT + 100))
# serve_bg NAME PORT [serve options...]: pgvault serve as authenticator; output in $WORK/NAME.out.
serve_bg() {
  local name=$1 p=$2; shift 2
  PGPASSWORD=$PW "$PGVAULT" --dsn "${SERVE_DSN:-$(dsn kv authenticator)}" serve --listen "127.0.0.1:$p" \
    --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" "$@" >"$WORK/$name.out" 2>&1 &
  SERVERS+=($!)
  wait_https "$name" "$p"
}
# vreq TOKEN METHOD PATH [JSON] [curl args...]: a Vault request with X-Vault-Token to
# ${URL:-the main server}; sets CODE, $WORK/body and $WORK/hdrs.
vreq() {
  local token=$1 method=$2 path=$3 data=${4-}
  shift 3; [ $# -gt 0 ] && shift
  local args=(-s --cacert "$WORK/ca.pem" -X "$method" -o "$WORK/body" -D "$WORK/hdrs" -w '%{http_code}')
  [ -n "$token" ] && args+=(-H "X-Vault-Token: $token")
  [ -n "$data" ] && args+=(-H "Content-Type: ${CT:-application/json}" --data-binary "$data")
  CODE=$(curl "${args[@]}" "$@" "${URL:-https://127.0.0.1:$WPORT}$path")
}
body() { cat "$WORK/body"; }
ctype() { grep -i '^content-type:' "$WORK/hdrs" | cut -d' ' -f2- | tr -d '\r'; }
# client NAME CMD...: runs a client script; its ok / not ok lines count here.
client() {
  local name=$1; shift
  "$@" >"$WORK/$name.client" 2>&1
  local rc=$?
  cat "$WORK/$name.client"
  PASSED=$((PASSED + $(grep -c '^ok - ' "$WORK/$name.client")))
  local f; f=$(grep -c '^not ok - ' "$WORK/$name.client")
  FAILED=$((FAILED + f))
  [ "$f" -gt 0 ] && FAILURES+=("$name: $f checks")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then not_ok "$name exited $rc without a counted failure" "$(tail -20 "$WORK/$name.client")"; fi
}

mk() { pv token create "$@" 2>/dev/null; }
T_ADMIN=$(mk kv-admin --role kv_admin)
T_READER=$(mk kv-reader --role kv_reader --expires 30d)
T_BILLING=$(mk kv-billing --role kv_billing)
T_VIEWER=$(mk kv-viewer --role kv_viewer)
T_REVOKED=$(mk kv-revoked --role kv_reader)
T_EXPIRED=$(mk kv-expired --role kv_reader --expires 1h)
TOKENS=("$T_ADMIN" "$T_READER" "$T_BILLING" "$T_VIEWER" "$T_REVOKED" "$T_EXPIRED")
check "six tokens made" 6 "$(printf '%s\n' "${TOKENS[@]}" | grep -cE '^pgv_')"
pv token revoke kv-revoked 2>/dev/null
sql kv "UPDATE vault.api_token_hashes SET expires_at = now() - interval '1 second' WHERE name = 'kv-expired'" >/dev/null

serve_bg main $WPORT || exit 1

# --- health, envelope, content type ---
vreq "" GET /v1/sys/health
check "sys/health without a token: 200, flat, initialized, unsealed, not a standby" "200 true false false" \
  "$CODE $(body | jq -r '"\(.initialized) \(.sealed) \(.standby)"')"
check "... Content-Type exactly application/json" "application/json" "$(ctype)"
check "... no envelope (flat as in Vault)" "null" "$(body | jq -c .data)"
vreq "$T_ADMIN" GET /v1/sys/internal/ui/mounts/secret/app/db
check "ui mounts preflight: the mount, kv version 2" '200 secret/ kv 2' \
  "$CODE $(body | jq -r '"\(.data.path) \(.data.type) \(.data.options.version)"')"
check "... in Vault's envelope" '"" false 0 null null' \
  "$(body | jq -c '.lease_id, .renewable, .lease_duration, .wrap_info, .warnings' | tr '\n' ' ' | sed 's/ $//')"
vreq "$T_ADMIN" GET /v1/sys/internal/ui/mounts/other/x
check "ui mounts preflight for another mount: 404 {\"errors\":[]}" '404 {"errors":[]}' "$CODE $(body)"

# --- tokens: missing, unknown, revoked, expired: 403 permission denied ---
DENIED='{"errors":["permission denied"]}'
vreq "" GET /v1/secret/data/shared_key
check "no token: 403 permission denied" "403 $DENIED" "$CODE $(body)"
check "... Content-Type exactly application/json" "application/json" "$(ctype)"
printf '{"data": {"value": "%s"}}' "$(head -c 300000 /dev/zero | tr '\0' x)" >"$WORK/big.json"
vreq "" POST /v1/secret/data/no_token_write "@$WORK/big.json"
check "a write with no token (and a large body): 403, nothing created" "403 $DENIED 0" \
  "$CODE $(body) $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'no_token_write'")"
vreq "pgv_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | cut -c1-43)" GET /v1/secret/data/shared_key
check "an unknown token: 403 with the same body" "403 $DENIED" "$CODE $(body)"
vreq "$T_REVOKED" GET /v1/secret/data/shared_key
check "a revoked token: 403 with the same body" "403 $DENIED" "$CODE $(body)"
vreq "$T_EXPIRED" GET /v1/secret/data/shared_key
check "an expired token: 403 with the same body" "403 $DENIED" "$CODE $(body)"
vreq "" GET /v1/secret/data/shared_key "" -H "Authorization: Bearer $T_READER"
check "Authorization: Bearer works as X-Vault-Token" "200 sk-shared-0123456789abcdef" "$CODE $(body | jq -r .data.data.value)"
vreq "$T_READER" GET /v1/secret/data/shared_key "" -H "X-Vault-Token: $T_ADMIN"
check "two X-Vault-Token headers: 403" 403 "$CODE"
rm -f "$WORK/jar"
curl -s --cacert "$WORK/ca.pem" -c "$WORK/jar" -o /dev/null -H 'Content-Type: application/json' \
  --data-binary "$(jq -nc --arg p "$PW" '{user: "web_admin", password: $p}')" "https://127.0.0.1:$WPORT/api/v1/session"
check "control: the console login gave a session cookie" 1 "$(grep -c pgvault_session "$WORK/jar")"
vreq "" GET /v1/secret/data/shared_key "" -b "$WORK/jar"
check "a session cookie alone on /v1/: 403 (no cookies here)" "403 $DENIED" "$CODE $(body)"
vreq "$T_READER" GET /v1/secret/data/shared_key "" -b "$WORK/jar"
check "a cookie beside a token is ignored: 200 as the token" 200 "$CODE"
vreq "$T_READER" GET /v1/secret/data/shared_key "" -H "X-Vault-Namespace: team1"
check "X-Vault-Namespace set: 400 namespaces are not supported" "400 1" "$CODE $(body | jq -r '.errors[0]' | grep -c namespaces)"
vreq "$T_READER" GET /v1/secret/data/shared_key "" -H "X-Vault-Namespace;"
check "an empty X-Vault-Namespace: 200" 200 "$CODE"

# --- data: read, write, versions, cas, patch, delete ---
vreq "$T_READER" GET /v1/secret/data/sql_made
check "a secret made in SQL reads as {value}" '200 {"value":"made-in-sql"}' "$CODE $(body | jq -c .data.data)"
check "... with Vault's read metadata" '"" false null' "$(body | jq -c '.data.metadata | .deletion_time, .destroyed, .custom_metadata' | tr '\n' ' ' | sed 's/ $//')"
check "... Content-Type exactly application/json, Cache-Control no-store" "application/json no-store" \
  "$(ctype) $(grep -i '^cache-control:' "$WORK/hdrs" | cut -d' ' -f2- | tr -d '\r')"
vreq "$T_READER" GET /v1/secret/data/no/such
check "a missing secret: 404 {\"errors\":[]}" '404 {"errors":[]}' "$CODE $(body)"
vreq "$T_READER" GET /v1/secret/data/billing_key
check "a secret granted only to another role: 403" 403 "$CODE"
check_absent "... with no value" "sk-billing" "$(body)"
vreq "$T_BILLING" GET /v1/secret/data/billing_key
check "the granted role's token reads it" "200 sk-billing-0123456789abcdef" "$CODE $(body | jq -r .data.data.value)"
vreq "$T_VIEWER" GET /v1/secret/data/shared_key
check "a viewer token gets no value: 403" 403 "$CODE"
# A non-exportable secret (issue 28) is used inside the server only: /v1/ reads it as /api/v1/ does.
sql kv "SELECT vault.create_secret('sk-noexport-0123456789abcdef', 'noexport', '', NULL, NULL, false)" >/dev/null
vreq "$T_ADMIN" GET /v1/secret/data/noexport
check "a non-exportable secret, even with an admin token: 403, no value" "403 0" "$CODE $(body | grep -c sk-noexport)"
curl -s --cacert "$WORK/ca.pem" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T_ADMIN" \
  "https://127.0.0.1:$WPORT/api/v1/secrets/noexport" >"$WORK/code"
check "... as from /api/v1/" 403 "$(cat "$WORK/code")"
CT=application/merge-patch+json vreq "$T_ADMIN" PATCH /v1/secret/data/noexport '{"data": {"a": 1}}'
check "... PATCH (which must read it first): 403, unchanged" "403 1" "$CODE $(sql kv "SELECT version FROM vault.secrets WHERE name = 'noexport'")"
vreq "$T_ADMIN" LIST /v1/secret/metadata/
check "... listed by name" 1 "$(body | jq '[.data.keys[] | select(. == "noexport")] | length')"
vreq "$T_READER" POST /v1/secret/data/reader_write '{"data": {"value": "x"}}'
check "a reader token cannot write: 403, nothing created" "403 0" "$CODE $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'reader_write'")"

vreq "$T_ADMIN" POST /v1/secret/data/app/db '{"data": {"value": "pg-password-1"}}'
check "POST data: 200, version 1" "200 1" "$CODE $(body | jq -r .data.version)"
check "a {value} object is stored as the bare text (vault.read_secret)" "pg-password-1" "$(sql kv "SELECT vault.read_secret('app/db')")"
check "the write is audited with the token's role (session: the server's)" "kv_admin|authenticator" \
  "$(sql kv "SELECT \"current_role\", session_role FROM vault.audit_log WHERE action = 'create' AND secret_name = 'app/db'")"
vreq "$T_ADMIN" PUT /v1/secret/data/app/db '{"data": {"user": "app", "port": 5432, "tls": true}, "options": {"cas": 1}}'
check "PUT data with cas = current: version 2" "200 2" "$CODE $(body | jq -r .data.version)"
check "an object is stored as its JSON text (SQL reads JSON), tagged kv:json" "t|t" \
  "$(sql kv "SELECT vault.read_secret('app/db')::jsonb = '{\"user\": \"app\", \"port\": 5432, \"tls\": true}'::jsonb, 'kv:json' = ANY(tags) FROM vault.secrets WHERE name = 'app/db'")"
check "the update is audited with the token's role" "kv_admin" \
  "$(sql kv "SELECT \"current_role\" FROM vault.audit_log WHERE action = 'update' AND secret_name = 'app/db'")"
vreq "$T_ADMIN" POST /v1/secret/data/app/db '{"data": {"value": "late"}, "options": {"cas": 1}}'
check "a cas mismatch: 400 check-and-set" "400 check-and-set parameter did not match the current version" "$CODE $(body | jq -r '.errors[0]')"
check "... nothing changed (still version 2)" 2 "$(sql kv "SELECT version FROM vault.secrets WHERE name = 'app/db'")"
vreq "$T_ADMIN" POST /v1/secret/data/app/db '{"data": {"value": "x"}, "options": {"cas": 0}}'
check "cas 0 on an existing secret: 400" 400 "$CODE"
vreq "$T_ADMIN" POST /v1/secret/data/app/fresh '{"data": {"value": "x"}, "options": {"cas": 3}}'
check "cas 3 on a missing secret: 400, nothing created" "400 0" "$CODE $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'app/fresh'")"
vreq "$T_ADMIN" GET '/v1/secret/data/app/db?version=1'
check "?version=1: the first value" '200 {"value":"pg-password-1"} 1' "$CODE $(body | jq -c .data.data) $(body | jq -r .data.metadata.version)"
vreq "$T_ADMIN" GET /v1/secret/data/app/db
check "the latest: the object, version 2" '200 {"port":5432,"tls":true,"user":"app"} 2' "$CODE $(body | jq -cS .data.data) $(body | jq -r .data.metadata.version)"
vreq "$T_ADMIN" GET '/v1/secret/data/app/db?version=9'
check "?version=9 (never written): 404" 404 "$CODE"
vreq "$T_READER" GET '/v1/secret/data/app/db?version=1'
check "an earlier version with a reader token: 403" 403 "$CODE"
CT=application/merge-patch+json vreq "$T_ADMIN" PATCH /v1/secret/data/app/db '{"data": {"port": 6432, "tls": null}}'
check "PATCH (merge-patch+json): version 3" "200 3" "$CODE $(body | jq -r .data.version)"
vreq "$T_ADMIN" GET /v1/secret/data/app/db
check "... merged: port changed, tls removed" '{"port":6432,"user":"app"}' "$(body | jq -cS .data.data)"
vreq "$T_ADMIN" PATCH /v1/secret/data/app/db '{"data": {"port": 1}}'
check "PATCH with application/json: 415, nothing changed" "415 3" "$CODE $(sql kv "SELECT version FROM vault.secrets WHERE name = 'app/db'")"
CT=application/merge-patch+json vreq "$T_ADMIN" PATCH /v1/secret/data/app/none '{"data": {"a": 1}}'
check "PATCH of a missing secret: 404" 404 "$CODE"
vreq "$T_ADMIN" POST /v1/secret/data/app/bad '{"nodata": 1}'
check "a write without data: 400" 400 "$CODE"
vreq "$T_ADMIN" POST /v1/secret/data/app/nul '{"data": {"value": "a\u0000b"}}'
check "a value with a NUL: 400, nothing created" "400 0" "$CODE $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'app/nul'")"

# --- metadata and lists ---
vreq "$T_ADMIN" GET /v1/secret/metadata/app/db
check "metadata: current_version 3, versions 1-3" '200 3 ["1","2","3"]' "$CODE $(body | jq -r .data.current_version) $(body | jq -c '.data.versions | keys')"
check "... with Vault's fields" '10 false "0s" "" false' \
  "$(body | jq -c '.data | .max_versions, .cas_required, .delete_version_after, .versions["3"].deletion_time, .versions["3"].destroyed' | tr '\n' ' ' | sed 's/ $//')"
vreq "$T_ADMIN" GET /v1/secret/metadata/no/such
check "metadata of a missing secret: 404" 404 "$CODE"
sql kv "SELECT vault.create_secret('x', 'app/api/key'); SELECT vault.create_secret('x', 'app/api/other'); SELECT vault.create_secret('x', 'apple')" >/dev/null
vreq "$T_VIEWER" LIST /v1/secret/metadata/app
check "LIST (viewer token): the next segments, folders with /, sorted" '200 ["api/","db"]' "$CODE $(body | jq -c .data.keys)"
vreq "$T_VIEWER" LIST /v1/secret/metadata/app/
a=$(body | jq -c .data.keys)
vreq "$T_VIEWER" GET '/v1/secret/metadata/app?list=true'
check "a prefix with or without /, LIST or ?list=true: the same" '["api/","db"] ["api/","db"]' "$a $(body | jq -c .data.keys)"
vreq "$T_VIEWER" LIST /v1/secret/metadata
a=$(body | jq -c .data.keys)
vreq "$T_VIEWER" LIST /v1/secret/metadata/
check "the mount root with or without /: the same folders" "$a" "$(body | jq -c .data.keys)"
check "... holding app/, apple and sql_made" '["app/","apple","billing_key","noexport","shared_key","sql_made"]' "$a"
vreq "$T_VIEWER" LIST /v1/secret/metadata/nothing
check "LIST of an empty folder: 404 {\"errors\":[]}" '404 {"errors":[]}' "$CODE $(body)"
vreq "$T_ADMIN" POST /v1/secret/config '{}'
check "an unsupported path of the mount: 404" 404 "$CODE"
vreq "$T_ADMIN" PUT /v1/secret/metadata/app/db '{}'
check "an unsupported method (metadata write): 405" 405 "$CODE"

# --- delete ---
vreq "$T_ADMIN" DELETE /v1/secret/data/app/api/key
check "DELETE data: 204, the secret and its versions gone" "204 0" "$CODE $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'app/api/key'")"
check "... audited with the token's role" kv_admin "$(sql kv "SELECT \"current_role\" FROM vault.audit_log WHERE action = 'delete' AND secret_name = 'app/api/key'")"
id=$(sql kv "SELECT id FROM vault.secrets WHERE name = 'app/db'")
vreq "$T_ADMIN" DELETE /v1/secret/metadata/app/db
check "DELETE metadata: 204, no versions left" "204 0 0" "$CODE $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'app/db'") $(sql kv "SELECT count(*) FROM vault.secret_versions WHERE secret_id = '$id'")"
vreq "$T_ADMIN" DELETE /v1/secret/metadata/app/db
check "DELETE of a path that no longer exists: 204" 204 "$CODE"
vreq "$T_READER" DELETE /v1/secret/data/shared_key
check "a reader token cannot delete: 403, still there" "403 1" "$CODE $(sql kv "SELECT count(*) FROM vault.secrets WHERE name = 'shared_key'")"

# --- token self ---
vreq "$T_READER" GET /v1/auth/token/lookup-self
check "lookup-self: the role as the policy, service, not renewable" '200 ["kv_reader"] service false' \
  "$CODE $(body | jq -c .data.policies) $(body | jq -r .data.type) $(body | jq -r .data.renewable)"
check_absent "... and never the token" "$T_READER" "$(body)"
check "... its name, seconds left (30 days) and expiry (vault.api_token_self)" "token-kv-reader true true" \
  "$(body | jq -r '"\(.data.display_name) \(.data.ttl > 2591000 and .data.ttl <= 2592000) \(.data.expire_time | test("^20[0-9-]+T[0-9:.]+Z$"))"')"
vreq "$T_ADMIN" GET /v1/auth/token/lookup-self
check "lookup-self of a token without expiry: ttl 0, expire_time null" '200 0 null ["kv_admin"]' \
  "$CODE $(body | jq -r .data.ttl) $(body | jq -r .data.expire_time) $(body | jq -c .data.policies)"
before=$(sql kv "SELECT expires_at FROM vault.api_tokens WHERE name = 'kv-reader' AND revoked_at IS NULL")
vreq "$T_READER" POST /v1/auth/token/renew-self '{}'
check "renew-self: 200 with an auth block, not renewable" '200 ["kv_reader"] false' "$CODE $(body | jq -c .auth.policies) $(body | jq -r .auth.renewable)"
check_absent "... never the token" "$T_READER" "$(body)"
check "... and the token's expiry unchanged" "$before" "$(sql kv "SELECT expires_at FROM vault.api_tokens WHERE name = 'kv-reader' AND revoked_at IS NULL")"
vreq "$T_REVOKED" GET /v1/auth/token/lookup-self
check "lookup-self with a revoked token: 403" 403 "$CODE"

# --- the real clients ---
export VAULT_ADDR="https://127.0.0.1:$WPORT" VAULT_CACERT="$WORK/ca.pem" ADMIN_TOKEN="$T_ADMIN" READER_TOKEN="$T_READER" \
  REVOKED_TOKEN="$T_REVOKED" ADMIN_ROLE=kv_admin
client hvac python3 "$CLIENTS/hvac_test.py"
check "a value written by hvac is read by vault.read_secret" "plain-from-hvac" "$(sql kv "SELECT vault.read_secret('hvac/plain')")"
check "hvac's writes are audited with the token's role" "0" \
  "$(sql kv "SELECT count(*) FROM vault.audit_log WHERE secret_name LIKE 'hvac/%' AND \"current_role\" <> 'kv_admin'")"
check "... and there are some" "t" "$(sql kv "SELECT count(*) >= 8 FROM vault.audit_log WHERE secret_name LIKE 'hvac/%'")"
client node-vault node "$CLIENTS/node_test.js"
check "a value written by node-vault is read by vault.read_secret" "plain-from-node" "$(sql kv "SELECT vault.read_secret('node/plain')")"
unset VAULT_ADDR VAULT_CACERT ADMIN_TOKEN READER_TOKEN REVOKED_TOKEN ADMIN_ROLE

# --- another mount; health of an unreachable database ---
serve_bg mount $((WPORT + 1)) --kv-mount kv/team || exit 1
URL=https://127.0.0.1:$((WPORT + 1)) vreq "$T_READER" GET /v1/kv/team/data/shared_key
check "--kv-mount kv/team: /v1/kv/team/data/NAME reads" "200 sk-shared-0123456789abcdef" "$CODE $(body | jq -r .data.data.value)"
URL=https://127.0.0.1:$((WPORT + 1)) vreq "$T_READER" GET /v1/secret/data/shared_key
check "... and secret/ is not mounted there: 404" 404 "$CODE"
"$PGVAULT" --dsn "$(dsn kv authenticator)" serve --kv-mount sys --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" >/dev/null 2>"$WORK/err"
check "--kv-mount sys: exit 2" "2 1" "$? $(grep -c 'kv-mount' "$WORK/err")"
SERVE_DSN="$(dsn kv authenticator $((PORT_NEXT + 50)))" serve_bg down $((WPORT + 2)) || exit 1
URL=https://127.0.0.1:$((WPORT + 2)) vreq "" GET /v1/sys/health
check "sys/health with the database unreachable: 503, application/json" "503 application/json" "$CODE $(ctype)"

# --- a standby: sys/health says so, and tokens read there ---
REPL=$WORK/repl
as_pg "$PG_BINDIR/pg_basebackup" -h "$WORK" -p "$(port kv)" -U postgres -D "$REPL" -R -X stream >/dev/null 2>&1
PORT_repl=$PORT_NEXT; PORT_NEXT=$((PORT_NEXT + 1)); STARTED+=("$REPL")
echo "port = $PORT_repl" >>"$REPL/postgresql.conf"
echo "primary_conninfo = 'host=$WORK port=$(port kv) user=postgres'" >>"$REPL/postgresql.auto.conf"
start repl || cat "$WORK/repl.log"
check "control: the replica is in recovery" t "$(sql repl "SELECT pg_is_in_recovery()")"
SERVE_DSN="$(dsn repl authenticator)" serve_bg standby $((WPORT + 3)) || exit 1
URL=https://127.0.0.1:$((WPORT + 3)) vreq "" GET /v1/sys/health
check "sys/health on a standby's server: 200, standby true" "200 true false" "$CODE $(body | jq -r '"\(.standby) \(.sealed)"')"
URL=https://127.0.0.1:$((WPORT + 3)) vreq "$T_READER" GET /v1/secret/data/shared_key
check "a reader token reads through the standby" "200 sk-shared-0123456789abcdef" "$CODE $(body | jq -r .data.data.value)"

# --- the access log; no token anywhere ---
check_contains "the access log names the token's role" "GET /v1/secret/data/shared_key 200 role=kv_reader (token)" "$(cat "$WORK/main.out")"
sql kv "CHECKPOINT" >/dev/null
check_contains "control: the database log has the statements (log_statement = all)" "api_token_role" "$(cat "$(logfile kv)")"
for t in "${TOKENS[@]}"; do
  check_absent "token ${t:0:8}... is not in the database logs" "$t" "$(cat "$(logfile kv)" "$WORK/repl.log")"
  check_absent "... nor in pgvault serve's output" "$t" "$(cat "$WORK"/main.out "$WORK"/mount.out "$WORK"/down.out "$WORK"/standby.out)"
  check "... nor in the data directory" absent "$(grep_data "$t" "$(datadir kv)")"
done

summary "vault api tests"
