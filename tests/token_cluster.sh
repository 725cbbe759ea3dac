#!/usr/bin/env bash
# Tier 4: service tokens (issue 18, SPEC §9) against real servers: `pgvault token
# create/list/revoke`, `Authorization: Bearer` on `pgvault serve` through a NOINHERIT
# authenticator role (exactly the token role's rights, per-secret grants included; expired,
# revoked, unknown: 401; a role the server may not become: 403), no token in the data
# directory, WAL, server log (log_statement = all) or pgvault's output, two clusters' tokens
# independent, and `pgvault get/run/export` over HTTPS giving what they give over SQL.
# PGVAULT=path/to/pgvault (default: target/debug/pgvault).
set -u
. "$(dirname "$0")/lib.sh"
PGVAULT=${PGVAULT:-$REPO/target/debug/pgvault}
[ -x "$PGVAULT" ] || { echo "no pgvault binary at $PGVAULT (cargo build -p pgvault)"; exit 1; }
for tool in curl jq openssl; do
  command -v $tool >/dev/null || { echo "token tests need $tool (scripts/setup.sh installs it)"; exit 1; }
done
cluster_init
trap servers_cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

PW=Pw-$RANDOM-$RANDOM-x
# new_tok_cluster NAME: scram for everyone but the superuser's socket, every statement logged.
new_tok_cluster() {
  new_cluster "$1" "password_encryption = 'scram-sha-256'" "log_statement = 'all'" \
    "log_min_duration_statement = 0" "log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
    "log_min_error_statement = error"
  scram_only "$1"
  start "$1" || { cat "$(logfile "$1")"; exit 1; }
  # authenticator: the server's own login role, no rights of its own (NOINHERIT), a member of
  # the roles its tokens act as. It needs USAGE on schema vault to call vault.api_token_role.
  local out
  out=$(sql "$1" "CREATE EXTENSION vault_ext;
    CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '$PW';
    GRANT USAGE ON SCHEMA vault TO authenticator;
    CREATE ROLE tok_reader NOLOGIN IN ROLE vault_reader;
    CREATE ROLE tok_billing NOLOGIN IN ROLE vault_reader;
    CREATE ROLE tok_viewer NOLOGIN IN ROLE vault_viewer;
    CREATE ROLE tok_admin NOLOGIN IN ROLE vault_admin;
    CREATE ROLE tok_outside NOLOGIN IN ROLE vault_reader;
    GRANT tok_reader, tok_billing, tok_viewer, tok_admin TO authenticator;
    CREATE ROLE web_reader LOGIN PASSWORD '$PW' IN ROLE vault_reader;
    CREATE ROLE web_admin LOGIN PASSWORD '$PW' IN ROLE vault_admin") || { echo "setup of $1 failed: $out"; exit 1; }
}
new_tok_cluster tok
new_tok_cluster other

test_certificate || exit 1

unset PGUSER PGPASSWORD PGHOST PGPORT DATABASE_URL PGSERVICE PGVAULT_URL PGVAULT_TOKEN PGVAULT_CACERT
dsn() { echo "host=$WORK port=$(port "$1") dbname=postgres user=${2:-postgres}"; }
pv() { "$PGVAULT" --dsn "$(dsn tok)" "$@"; }
WPORT=$((PORT_NEXT + 100))

# serve_bg NAME CLUSTER PORT USER: pgvault serve for CLUSTER as USER (its password from
# PGPASSWORD), output in $WORK/NAME.out; waits until it answers.
serve_bg() {
  PGPASSWORD=$PW "$PGVAULT" --dsn "$(dsn "$2" "$4")" serve --listen "127.0.0.1:$3" \
    --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" >"$WORK/$1.out" 2>&1 &
  SERVERS+=($!)
  wait_https "$1" "$3"
}
# breq TOKEN METHOD PATH [JSON] [curl args...]: a Bearer request (no cookie, no CSRF token) to
# ${URL:-the main server}; sets CODE and $WORK/body.
breq() {
  local token=$1 method=$2 path=$3 data=${4-}
  shift 3; [ $# -gt 0 ] && shift
  local args=(-s --cacert "$WORK/ca.pem" -X "$method" -o "$WORK/body" -D "$WORK/hdrs" -w '%{http_code}')
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
  CODE=$(curl "${args[@]}" "$@" "${URL:-https://127.0.0.1:$WPORT}$path")
}
body() { cat "$WORK/body"; }
TOKENS=() # every token made, for the leak checks at the end

# --- the secrets ---
out=$(sql tok "SELECT vault.create_secret('sk-shared-0123456789abcdef', 'shared_key', '', NULL, '{prod}');
  SELECT vault.create_secret('sk-billing-0123456789abcdef', 'billing_key', '', NULL, '{prod}');
  SELECT vault.create_secret('postgres://db.internal/app', 'db.url-prod', '', NULL, '{prod}');
  SELECT vault.create_secret('/evil/bin', 'path', '', NULL, '{prod}');
  SELECT vault.create_secret('old-value-0123', 'old_key', '', NULL, '{prod}');
  UPDATE vault.secrets SET expires_at = now() - interval '1 day' WHERE name = 'old_key';
  SELECT vault.create_secret('sk-dev-0123456789abcdef', 'dev_key', '', NULL, '{dev}');
  SELECT vault.grant_secret(id, 'tok_billing') FROM vault.secrets WHERE name = 'billing_key';") \
  || { echo "secrets failed: $out"; exit 1; }

# --- pgvault token create / list / revoke ---
mk() { # mk NAME --role ROLE [--expires WHEN]: prints the new token
  pv token create "$@" 2>>"$WORK/create.err"
}
T_READER=$(mk ci-reader --role tok_reader --expires 30d)
check "token create: exit 0, one pgv_ token of 47 characters on stdout" 1 \
  "$(printf '%s\n' "$T_READER" | grep -cE '^pgv_[A-Za-z0-9_-]{43}$')"
check_contains "with a note on stderr that it is shown once" "shown this once" "$(cat "$WORK/create.err")"
check_absent "the note does not repeat the token" "$T_READER" "$(cat "$WORK/create.err")"
T_BILLING=$(mk billing --role tok_billing)
T_VIEWER=$(mk viewer --role tok_viewer)
T_ADMIN=$(mk admin --role tok_admin)
T_OUTSIDE=$(mk outside --role tok_outside)
# Long enough to be used before it expires on a loaded machine; the test then waits it out.
T_SHORT=$(mk short --role tok_reader --expires 15s)
T_REVOKED=$(mk to-revoke --role tok_reader)
T_UNUSED=$(mk viewer-unused --role tok_viewer)
TOKENS=("$T_READER" "$T_BILLING" "$T_VIEWER" "$T_ADMIN" "$T_OUTSIDE" "$T_SHORT" "$T_REVOKED" "$T_UNUSED")
check "every token is distinct and has the shape" 8 "$(printf '%s\n' "${TOKENS[@]}" | sort -u | grep -cE '^pgv_[A-Za-z0-9_-]{43}$')"
pv token create ci-reader --role tok_reader >/dev/null 2>"$WORK/err"
check "a second active token with the same name: exit 7" 7 $?
pv token create ghost --role no_such_role >/dev/null 2>"$WORK/err"
check "a token for an unknown role: exit 7" 7 $?
pv token create su --role postgres >/dev/null 2>"$WORK/err"
check "a token for a superuser: exit 4" 4 $?
pv token create past --role tok_reader --expires 2000-01-01 >"$WORK/out" 2>"$WORK/err"
check "an expiry in the past: exit 7, no token printed" "7 0" "$? $(grep -c pgv_ "$WORK/out")"
pv token create later --role tok_reader --expires soonish >/dev/null 2>"$WORK/err"
check "a bad --expires: exit 2 saying why" "2 --expires" "$? $(grep -o -- '--expires' "$WORK/err" | head -1)"
PGPASSWORD=$PW "$PGVAULT" --dsn "$(dsn tok web_reader)" token create mine --role tok_reader >"$WORK/out" 2>"$WORK/err"
check "token create by a role without vault_admin: exit 4, no token printed" "4 0" "$? $(grep -c pgv_ "$WORK/out")"
sql tok 'CREATE ROLE U&"tok_\001B[31m" NOLOGIN' >/dev/null
T_ESC=$(mk esc --role $'"tok_\e[31m"')
TOKENS+=("$T_ESC")
pv token list >"$WORK/list" 2>&1
check "token list: exit 0, one row per token" "0 9" "$? $(grep -cE '^(ci-reader|billing|viewer|admin|outside|short|to-revoke|viewer-unused|esc) ' "$WORK/list")"
check_contains "with name, role and state" "ci-reader" "$(grep '^ci-reader ' "$WORK/list" | grep tok_reader | grep active)"
check "control characters in a role name are escaped in the table" 0 "$(grep -c $'\e' "$WORK/list")"
for t in "${TOKENS[@]}"; do check_absent "token list never shows a token (${t:0:8}...)" "$t" "$(cat "$WORK/list")"; done
check "token list --json: the same tokens, states and roles" "admin:tok_admin:active,billing:tok_billing:active,ci-reader:tok_reader:active" \
  "$(pv token list --json | jq -r '[.[] | select(.name == "admin" or .name == "billing" or .name == "ci-reader") | "\(.name):\(.role):\(.state)"] | join(",")')"
check "a token for a role with an escape character in its name" 1 "$(printf '%s\n' "$T_ESC" | grep -c '^pgv_')"
check "token list --json escapes the control character" '1 0' "$(pv token list --json | grep -c 'tok_\\u001b\[31m') $(pv token list --json | grep -c $'\e')"
pv token revoke to-revoke 2>"$WORK/err"
check "token revoke: exit 0" 0 $?
check "and it is listed as revoked" revoked "$(pv token list --json | jq -r '.[] | select(.name == "to-revoke") | .state')"
pv token revoke to-revoke 2>"$WORK/err"
check "revoking it again: exit 3 (no active token of that name)" 3 $?
check "creation and revocation are in the audit log" "1|1" \
  "$(sql tok "SELECT count(*) FILTER (WHERE action = 'create_token' AND detail->>'token' = 'ci-reader'), count(*) FILTER (WHERE action = 'revoke_token' AND detail->>'token' = 'to-revoke') FROM vault.audit_log")"

# --- the server: its own role is authenticator ---
serve_bg main tok $WPORT authenticator || exit 1
check_contains "the server says tokens act through authenticator" 'Bearer tokens act through role "authenticator"' "$(cat "$WORK/main.out")"

breq "$T_READER" GET /api/v1/secrets/billing_key
check "a secret granted only to another role: 403 42501" "403 42501" "$CODE $(body | jq -r .sqlstate)"
check_absent "with no value in the refusal" "sk-billing" "$(body)"
breq "$T_BILLING" GET /api/v1/secrets/billing_key
check "the granted role's token reads it: 200" "200 sk-billing-0123456789abcdef" "$CODE $(body | jq -r .value)"

# --- refusals (the rest, and every route of a token by role, are in cli/tests/api.rs) ---
breq "pgv_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | cut -c1-43)" GET /api/v1/secrets
unknown_body=$(body)
breq "$T_SHORT" GET /api/v1/secrets/shared_key
check "a token before its expiry: 200" 200 "$CODE"
sleep "$(sql tok "SELECT greatest(0, extract(epoch FROM expires_at - clock_timestamp()))::numeric(8, 1) + 0.5
                  FROM vault.api_tokens WHERE name = 'short'")"
breq "$T_SHORT" GET /api/v1/secrets/shared_key
check "the same token after its expiry: 401 with the same body" "401 $unknown_body" "$CODE $(body)"

# --- last_used_at: set on use, not rewritten within a minute ---
lu() { sql tok "SELECT coalesce(last_used_at::text, 'never') FROM vault.api_tokens WHERE name = '$1' AND revoked_at IS NULL"; }
check "a token never used has no last_used_at" never "$(lu viewer-unused)"
first=$(lu billing)
check "a used token has last_used_at" 1 "$(printf '%s' "$first" | grep -c '^20')"
uses_xmin() { sql tok "SELECT u.xmin FROM vault.api_token_uses u JOIN vault.api_token_hashes t ON t.id = u.token_id WHERE t.name = '$1' AND t.revoked_at IS NULL"; }
xmin1=$(uses_xmin billing)
sleep 1.1
for _ in 1 2 3; do breq "$T_BILLING" GET /api/v1/secrets/billing_key; done
check "used again within the minute: last_used_at unchanged and the row not rewritten" "$first $xmin1" \
  "$(lu billing) $(uses_xmin billing)"

# --- the server's own connections: a bounded pool ---
curl -s --cacert "$WORK/ca.pem" -H "Authorization: Bearer $T_READER" --parallel --parallel-max 24 \
  "https://127.0.0.1:$WPORT/api/v1/secrets/shared_key?i=[1-96]" >"$WORK/par"
check "96 requests, 24 at a time: every one answered with the value" 96 "$(grep -o 'sk-shared-0123456789abcdef' "$WORK/par" | wc -l)"
check "on at most 4 connections of the server's role (--token-connections)" "yes" \
  "$(n=$(sql tok "SELECT count(*) FROM pg_stat_activity WHERE usename = 'authenticator'"); [ "$n" -ge 1 ] && [ "$n" -le 4 ] && echo yes || echo "no: $n")"

# --- isolation: nothing a token role (or a member of it) creates runs inside a request ---
# A schema per role (the PostgreSQL docs' pattern) is on the default search_path as "$user". An
# operator planted there would run inside a viewer token's request, on the authenticator's
# connection, where SET ROLE to any other token role is allowed; and a session-level setting
# made there would stay on the pooled connection for the next request.
out=$(sql tok "CREATE SCHEMA tok_viewer AUTHORIZATION tok_viewer;
  CREATE TABLE public.loot (who text, what text); GRANT INSERT, SELECT ON public.loot TO PUBLIC;
  SET ROLE tok_viewer;
  CREATE FUNCTION tok_viewer.grab(a text[], b text[]) RETURNS boolean LANGUAGE plpgsql AS \$f\$
  BEGIN
    INSERT INTO public.loot VALUES (current_user, 'ran');
    PERFORM pg_catalog.set_config('search_path', 'tok_viewer, public', false);
    RETURN a OPERATOR(pg_catalog.@>) b;
  END \$f\$;
  CREATE OPERATOR tok_viewer.@> (LEFTARG = text[], RIGHTARG = text[], FUNCTION = tok_viewer.grab);
  RESET ROLE") || { echo "planting failed: $out"; exit 1; }
check "control: the planted operator runs for the role's own queries" t \
  "$(sql tok "SET ROLE tok_viewer; SET search_path = \"\$user\", public; SELECT count(*) FROM vault.masked_secrets WHERE tags @> '{prod}'::text[]; RESET ROLE; SELECT count(*) > 0 FROM public.loot" | tail -1)"
sql tok "TRUNCATE public.loot" >/dev/null
breq "$T_VIEWER" GET '/api/v1/secrets?tag=prod'
check "a viewer token lists by tag: 200" 200 "$CODE"
for _ in 1 2 3 4 5; do breq "$T_READER" GET '/api/v1/secrets?tag=prod'; done
check "no planted operator ran in any request (search_path pinned to pg_catalog)" 0 "$(sql tok "SELECT count(*) FROM public.loot")"
sql tok "DROP SCHEMA tok_viewer CASCADE; DROP TABLE public.loot" >/dev/null
# The server's role made a superuser after its connections were opened: refused per request.
sql tok "ALTER ROLE authenticator SUPERUSER" >/dev/null
breq "$T_READER" GET /api/v1/secrets/shared_key
check "the server's role became a superuser after connecting: 503, no value" "503 null" "$CODE $(body | jq -r .value)"
sql tok "ALTER ROLE authenticator NOSUPERUSER" >/dev/null
breq "$T_READER" GET /api/v1/secrets/shared_key
check "... and 200 again once it is not" 200 "$CODE"
# Two Authorization headers: refused (a proxy in front may have read the other one).
breq "$T_READER" GET /api/v1/secrets/shared_key "" -H "Authorization: Bearer ${T_REVOKED}"
check "two Authorization headers: 401" 401 "$CODE"
# The database restarts under the server: the stale pooled connections are replaced, not failed.
pids=()
for _ in 1 2 3 4; do breq "$T_READER" GET /api/v1/secrets/shared_key & pids+=($!); done
wait "${pids[@]}"
restart tok || { cat "$(logfile tok)"; exit 1; }
codes=""
for _ in 1 2 3 4 5; do breq "$T_READER" GET /api/v1/secrets/shared_key; codes="$codes$CODE "; done
check "after a database restart every token request succeeds" "200 200 200 200 200 " "$codes"
# New pooled connections check the server's role before the per-request pin: a search_path
# set for the database (ALTER DATABASE ... SET, by its owner) must not reach that check either.
out=$(sql tok "CREATE TABLE public.loot2 (who text); GRANT INSERT ON public.loot2 TO PUBLIC;
  CREATE FUNCTION public.name_eq(a name, b name) RETURNS boolean LANGUAGE plpgsql AS \$f\$
  BEGIN INSERT INTO public.loot2 VALUES (session_user); RETURN a::text OPERATOR(pg_catalog.=) b::text; END \$f\$;
  CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.name_eq);
  ALTER DATABASE postgres SET search_path = public, pg_catalog") || { echo "planting failed: $out"; exit 1; }
serve_bg pinned tok $((WPORT + 5)) authenticator || exit 1
URL=https://127.0.0.1:$((WPORT + 5)) breq "$T_READER" GET /api/v1/secrets/shared_key
check "with a database search_path of public first: the token request works" 200 "$CODE"
check "... and no planted operator ran in the server's connection checks" 0 "$(sql tok "SELECT count(*) FROM public.loot2")"
sql tok "ALTER DATABASE postgres RESET search_path; DROP OPERATOR public.= (name, name); DROP FUNCTION public.name_eq(name, name); DROP TABLE public.loot2" >/dev/null
# Stopping the server with pooled connections open: a clean exit, no panic.
serve_bg stopping tok $((WPORT + 4)) authenticator || exit 1
URL=https://127.0.0.1:$((WPORT + 4)) breq "$T_READER" GET /api/v1/secrets/shared_key
kill -TERM "${SERVERS[-1]}"; wait "${SERVERS[-1]}"; rc=$?
check "SIGTERM with pooled connections: exit 0, no panic" "0 0" "$rc $(grep -ci panic "$WORK/stopping.out")"

# --- a server role without USAGE on schema vault cannot check tokens: says so ---
sql tok "CREATE ROLE auth_nousage LOGIN NOINHERIT PASSWORD '$PW'; GRANT tok_reader TO auth_nousage" >/dev/null
serve_bg nousage tok $((WPORT + 3)) auth_nousage || exit 1
URL=https://127.0.0.1:$((WPORT + 3)) breq "$T_READER" GET /api/v1/secrets/shared_key
check "a server role without USAGE on schema vault: 503" 503 "$CODE"
check_contains "the server says so at start" 'note: Bearer tokens cannot be checked until' "$(cat "$WORK/nousage.out")"
check_contains "and again at the request, with the GRANT" "GRANT USAGE ON SCHEMA vault TO that role" "$(cat "$WORK/nousage.out")"

# --- a superuser server refuses tokens ---
serve_bg super tok $((WPORT + 1)) postgres || exit 1
URL=https://127.0.0.1:$((WPORT + 1)) breq "$T_READER" GET /api/v1/secrets/shared_key
check "a server whose own role is a superuser refuses tokens: 503" 503 "$CODE"
check_contains "and says why at start" "is a superuser" "$(cat "$WORK/super.out")"

# --- two clusters, two servers: tokens are independent ---
serve_bg second other $((WPORT + 2)) authenticator || exit 1
sql other "SELECT vault.create_secret('sk-other-0123456789abcdef', 'shared_key')" >/dev/null
T_OTHER=$("$PGVAULT" --dsn "$(dsn other)" token create ci-reader --role tok_reader 2>/dev/null)
TOKENS+=("$T_OTHER")
URL=https://127.0.0.1:$((WPORT + 2)) breq "$T_READER" GET /api/v1/secrets/shared_key
check "a token of the first cluster on the second's server: 401" 401 "$CODE"
URL=https://127.0.0.1:$((WPORT + 2)) breq "$T_OTHER" GET /api/v1/secrets/shared_key
check "the second cluster's own token (same name, same role) there: 200" "200 sk-other-0123456789abcdef" "$CODE $(body | jq -r .value)"
breq "$T_OTHER" GET /api/v1/secrets/shared_key
check "and the second cluster's token on the first: 401" 401 "$CODE"

# --- pgvault get / run / export over HTTPS: what they give over SQL ---
# Over SQL as the very role the token acts as: authenticator switched to tok_reader.
sqlrun() {
  env -i PATH="$PATH" HOME=/nonexistent PGPASSWORD="$PW" \
    "$PGVAULT" --dsn "$(dsn tok authenticator) options='-c role=tok_reader'" "$@"
}
httprun() {
  env -i PATH="$PATH" HOME=/nonexistent PGVAULT_URL="https://127.0.0.1:$WPORT" PGVAULT_TOKEN="${TOKEN:-$T_READER}" \
    PGVAULT_CACERT="$WORK/ca.pem" "$PGVAULT" "$@"
}
# The variables each way needs for itself are not the secrets': drop them before comparing.
envof() { grep -vE '^(PGPASSWORD|PGVAULT_URL|PGVAULT_CACERT)=' | sort; }
sqlrun run --no-masking --tag prod -- env >"$WORK/env.sql" 2>"$WORK/err.sql"; rc_sql=$?
httprun run --no-masking --tag prod -- env >"$WORK/env.http" 2>"$WORK/err.http"; rc_http=$?
check "run --tag prod over SQL and over HTTPS: exit 0 both" "0 0" "$rc_sql $rc_http"
check "the child's environment is the same" "" "$(diff <(envof <"$WORK/env.sql") <(envof <"$WORK/env.http"))"
check "with the secrets it may read" "DB_URL_PROD=postgres://db.internal/app SHARED_KEY=sk-shared-0123456789abcdef" \
  "$(grep -E '^(DB_URL_PROD|SHARED_KEY)=' "$WORK/env.http" | sort | tr '\n' ' ' | sed 's/ $//')"
check "and not the one granted to another role, nor PATH from a secret" "0 $PATH" \
  "$(grep -c '^BILLING_KEY=' "$WORK/env.http") $(grep '^PATH=' "$WORK/env.http" | cut -d= -f2-)"
check "the same warnings (grant, protected variable, expiry)" "" "$(diff "$WORK/err.sql" "$WORK/err.http")"
check_contains "... which there are" "skipping secret billing_key" "$(cat "$WORK/err.http")"
check "the token is not in the child's environment" 0 "$(grep -c "$T_READER" "$WORK/env.http")"
httprun run --no-masking --tag prod --allow-var PATH -- /usr/bin/env >"$WORK/env.http2" 2>/dev/null
sqlrun run --no-masking --tag prod --allow-var PATH -- /usr/bin/env >"$WORK/env.sql2" 2>/dev/null
check "--allow-var PATH: the same environment both ways" "" "$(diff <(envof <"$WORK/env.sql2") <(envof <"$WORK/env.http2"))"
check "... PATH from the secret" "PATH=/evil/bin" "$(grep '^PATH=' "$WORK/env.http2")"
check "get over HTTPS: the value" "sk-shared-0123456789abcdef" "$(httprun get shared_key 2>&1)"
httprun get billing_key >/dev/null 2>"$WORK/err"; rc_http=$?
sqlrun get billing_key >/dev/null 2>&1; rc_sql=$?
check "get of a secret granted to another role: exit 4 both ways" "4 4" "$rc_http $rc_sql"
httprun get no_such >/dev/null 2>&1; rc_http=$?
sqlrun get no_such >/dev/null 2>&1; rc_sql=$?
check "get of an unknown secret: exit 3 both ways" "3 3" "$rc_http $rc_sql"
check "export --format json: the same both ways" "" \
  "$(diff <(sqlrun export --format json --tag prod 2>/dev/null) <(httprun export --format json --tag prod 2>/dev/null))"
check "export --only: the same both ways" "" \
  "$(diff <(sqlrun export --only shared_key --only db.url-prod 2>&1) <(httprun export --only shared_key --only db.url-prod 2>&1))"
httprun run --only billing_key -- true 2>/dev/null; rc_http=$?
sqlrun run --only billing_key -- true 2>/dev/null; rc_sql=$?
check "run --only a secret granted to another role: exit 4 both ways" "4 4" "$rc_http $rc_sql"
TOKEN=$T_VIEWER httprun get shared_key >/dev/null 2>"$WORK/err"
check "get with a viewer token: exit 4" 4 $?
TOKEN=$T_REVOKED httprun get shared_key >/dev/null 2>"$WORK/err"
check "get with a revoked token: exit 5" 5 $?
check_absent "and the error does not carry the token" "$T_REVOKED" "$(cat "$WORK/err")"
env -i PATH="$PATH" PGVAULT_URL="https://127.0.0.1:$WPORT" PGVAULT_TOKEN="$T_READER" "$PGVAULT" get shared_key >/dev/null 2>"$WORK/err"
check "a server certificate not signed by a trusted root: exit 5, with the hint" "5 1" "$? $(grep -c PGVAULT_CACERT "$WORK/err")"
env -i PATH="$PATH" PGVAULT_URL="http://127.0.0.1:$WPORT" PGVAULT_TOKEN="$T_READER" "$PGVAULT" get shared_key >/dev/null 2>"$WORK/err"
check "plain http: exit 2, nothing sent" "2 1" "$? $(grep -c 'https://' "$WORK/err")"
env -i PATH="$PATH" PGVAULT_URL="https://127.0.0.1:$WPORT" "$PGVAULT" get shared_key >/dev/null 2>"$WORK/err"
check "PGVAULT_URL without PGVAULT_TOKEN: exit 2" 2 $?

# --- run's masking, references and --watch over HTTPS (issue 30) ---
httprun run --only shared_key -- sh -c 'echo "k=$SHARED_KEY"' >"$WORK/masked.http" 2>/dev/null
check "run over HTTPS masks the value" "k=<concealed by pgvault>" "$(cat "$WORK/masked.http")"
printf 'K=pgvault://shared_key\nM="x{{ pgvault://db.url-prod }}"\n' >"$WORK/ref.env"
check "--env-file references over HTTPS" "sk-shared-0123456789abcdef|xpostgres://db.internal/app" \
  "$(httprun run --no-masking --env-file "$WORK/ref.env" -- sh -c 'echo "$K|$M"' 2>&1)"
check "inject over HTTPS" "key: sk-shared-0123456789abcdef" \
  "$(printf 'key: {{pgvault://shared_key}}' | httprun inject -i - 2>&1)"
printf 'B=pgvault://billing_key\n' >"$WORK/hidden.env"
httprun run --env-file "$WORK/hidden.env" -- true 2>/dev/null
check "a reference to a secret granted to another role: exit 4 over HTTPS" 4 "$?"
rm -f "$WORK/watch.log"
# Not through the function: $! must be pgvault's own pid (env execs it).
env -i PATH="$PATH" HOME=/nonexistent PGVAULT_URL="https://127.0.0.1:$WPORT" PGVAULT_TOKEN="$T_READER" \
  PGVAULT_CACERT="$WORK/ca.pem" "$PGVAULT" run --watch --interval 1 --grace 2 --only shared_key -- \
  sh -c 'trap "exit 0" TERM; echo "start $SHARED_KEY" >>"$0"; while :; do sleep 0.1; done' "$WORK/watch.log" \
  >/dev/null 2>"$WORK/watch.err" &
wpid=$!
SERVERS+=($wpid)
for _ in $(seq 100); do [ -s "$WORK/watch.log" ] && break; sleep 0.1; done
sql tok "SELECT vault.update_secret(id, 'sk-shared-rotated-0000000') FROM vault.secrets WHERE name = 'shared_key'" >/dev/null
for _ in $(seq 100); do [ "$(wc -l <"$WORK/watch.log")" -ge 2 ] && break; sleep 0.1; done
check "run --watch over HTTPS (--interval 1): restarted with the new value" "start sk-shared-0123456789abcdef
start sk-shared-rotated-0000000" "$(cat "$WORK/watch.log")"
kill -TERM $wpid; wait $wpid
check "... and TERM ends it with the command's status" 0 "$?"
sql tok "SELECT vault.update_secret(id, 'sk-shared-0123456789abcdef') FROM vault.secrets WHERE name = 'shared_key'" >/dev/null

# --- the token never lands on disk or in a log ---
sql tok "CHECKPOINT" >/dev/null
sql other "CHECKPOINT" >/dev/null
check_contains "the server log has the statements (log_statement = all)" "api_token_role" "$(cat "$(logfile tok)")"
check_contains "... and their bind parameters' DETAIL lines" "parameters:" "$(cat "$(logfile tok)")"
for t in "${TOKENS[@]}"; do
  [ -n "$t" ] || continue
  check "token ${t:0:8}... appears nowhere in the data directories (pg_wal included)" absent \
    "$(grep_data "$t" "$(datadir tok)" "$(datadir other)")"
  check_absent "nor in the server logs" "$t" "$(cat "$(logfile tok)" "$(logfile other)")"
  check_absent "nor in pgvault serve's output" "$t" "$(cat "$WORK"/main.out "$WORK"/super.out "$WORK"/second.out "$WORK"/nousage.out "$WORK"/stopping.out "$WORK"/pinned.out)"
done
check "a control: the grep finds a token's name in the data directory" found "$(grep_data "viewer-unused" "$(datadir tok)")"
check_contains "the access log names the token's role" "GET /api/v1/secrets/shared_key 200 role=tok_reader (token)" "$(cat "$WORK/main.out")"

summary "token tests"
