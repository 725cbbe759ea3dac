#!/usr/bin/env bash
# Tier 4: the pgvault command line against a real server, driven as a user would: pipes,
# a terminal prompt, env files, a child process, and roles without the rights.
# PGVAULT=path/to/pgvault (default: target/debug/pgvault, built by scripts/test.sh).
set -u
. "$(dirname "$0")/lib.sh"
PGVAULT=${PGVAULT:-$REPO/target/debug/pgvault}
[ -x "$PGVAULT" ] || { echo "no pgvault binary at $PGVAULT (cargo build -p pgvault)"; exit 1; }
cluster_init

new_cluster cli
start cli || { cat "$(logfile cli)"; exit 1; }
setup=$(sql cli "CREATE EXTENSION vault_ext;
  CREATE ROLE app_admin LOGIN IN ROLE vault_admin;
  CREATE ROLE app_reader LOGIN IN ROLE vault_reader;
  CREATE ROLE app_viewer LOGIN IN ROLE vault_viewer;
  CREATE ROLE nobody LOGIN" && sql cli "CREATE DATABASE copy" && sql cli "CREATE DATABASE plain" \
  && sql cli "CREATE EXTENSION vault_ext" copy) || { echo "setup failed: $setup"; exit 1; }

export PGHOST=$WORK PGPORT=$(port cli) PGDATABASE=postgres
unset DATABASE_URL PGPASSWORD
OUT=$WORK/out ERR=$WORK/err
# pv ROLE ARGS...: run pgvault as ROLE (stdin passed through); sets RC, OUT and ERR files.
pv() {
  local role=$1; shift
  PGUSER=$role "$PGVAULT" "$@" >"$OUT" 2>"$ERR"
  RC=$?
}
# pvin INPUT ROLE ARGS...: the same with INPUT (exactly, no newline added) on standard input.
pvin() {
  local input=$1; shift
  pv "$@" < <(printf '%s' "$input")
}
out() { cat "$OUT"; }
err() { cat "$ERR"; }
V1=sk-live-0123456789abcdef

# set: from a pipe, never from argv.
pvin "$V1" app_admin set stripe_key --tag prod --tag payments --description Stripe
check "set from a pipe exits 0" 0 "$RC"
check_contains "set says it created the secret" "created secret stripe_key" "$(err)"
check "the stored secret decrypts to the piped value" "$V1" \
  "$(sql cli "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'stripe_key'")"
check "tags and description were set" "{prod,payments}|Stripe" \
  "$(sql cli "SELECT tags, description FROM vault.secrets WHERE name = 'stripe_key'")"
check "the audit trail names the CLI's role" "app_admin" \
  "$(sql cli "SELECT session_role FROM vault.audit_log WHERE action = 'create' AND secret_name = 'stripe_key'")"
pvin $'db-password\n' app_admin set db_password --tag prod
check "a second set exits 0" 0 "$RC"
pvin $'db-password-2\n' app_admin set db_password
check_contains "set of an existing name updates it" "updated secret db_password" "$(err)"
check "one trailing newline from the pipe is dropped; the update is version 2" "db-password-2|2|{prod}" \
  "$(sql cli "SELECT d.decrypted_secret, s.version, s.tags FROM vault.decrypted_secrets d JOIN vault.secrets s USING (id) WHERE s.name = 'db_password'")"

pv app_admin set argv_secret on-the-command-line </dev/null
check "set with a value in argv exits 2" 2 "$RC"
check_contains "and says why" "never from the command line" "$(err)"
check "and stores nothing" 0 "$(sql cli "SELECT count(*) FROM vault.secrets WHERE name = 'argv_secret'")"
pvin '' app_admin set empty_one
check "an empty value exits 7 and stores nothing" "7 0" "$RC $(sql cli "SELECT count(*) FROM vault.secrets WHERE name = 'empty_one'")"
pvin x app_reader set reader_try
check "set by a vault_reader exits 4 (permission denied)" 4 "$RC"
check_contains "with the server's message and a hint about roles" "permission denied" "$(err)"
check_contains "the hint names the role needed" "vault_admin" "$(err)"
pvin old app_admin set expired_one --expires 2000-01-01
check "set --expires exits 0" 0 "$RC"

# set at a terminal: a prompt that does not echo, the value typed twice.
cat >"$WORK/term.py" <<'EOF'
import os, pty, sys, termios, time
# term.py EXE ARGS...: run EXE on a new terminal; type stdin's lines, each after one more ": "
# prompt has appeared; print everything the terminal showed; exit with EXE's exit code.
answers = sys.stdin.read().splitlines()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
shown = b""
deadline = time.time() + 20
def more():
    global shown
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        return False
    shown += chunk
    return bool(chunk)
for i, answer in enumerate(answers):
    while shown.count(b": ") <= i and time.time() < deadline and more():
        pass
    # Type as a person would, once the program has turned echo off (it may print the prompt
    # first); a program that never does gets the answer after a few seconds, echoed.
    wait_echo_off = time.time() + 5
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < wait_echo_off:
        time.sleep(0.01)
    os.write(fd, answer.encode() + b"\n")
while more():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
EOF
TYPED=typed-value-$RANDOM$RANDOM
printf '%s\n%s\n' "$TYPED" "$TYPED" | PGUSER=app_admin python3 "$WORK/term.py" "$PGVAULT" set typed_one >"$OUT" 2>&1
RC=$?
check "set at a terminal exits 0" 0 "$RC"
check_contains "it prompts for the value" "value for typed_one:" "$(out)"
check_absent "the typed value is not echoed" "$TYPED" "$(out)"
check "the typed value is stored" "$TYPED" \
  "$(sql cli "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'typed_one'")"
printf 'one-value\nother-value\n' | PGUSER=app_admin python3 "$WORK/term.py" "$PGVAULT" set typed_two >"$OUT" 2>&1
RC=$?
check "two different typed values exit 7 and store nothing" "7 0" \
  "$RC $(sql cli "SELECT count(*) FROM vault.secrets WHERE name = 'typed_two'")"

# get
pv app_reader get stripe_key
check "get prints the value" "0 $V1" "$RC $(out)"
pv app_reader get no_such_secret
check "get of an unknown name exits 3" 3 "$RC"
check_contains "and names it" "no secret named no_such_secret" "$(err)"
pv app_viewer get stripe_key
check "get by a vault_viewer exits 4" 4 "$RC"
check_contains "get by a viewer says permission denied" "permission denied" "$(err)"
pv nobody get stripe_key
check "get by a role without vault roles exits 4" 4 "$RC"

sql cli "SELECT vault.grant_secret(id, 'app_admin') FROM vault.secrets WHERE name = 'expired_one'" >/dev/null
pv app_reader get expired_one
check "get of a secret granted to other roles exits 4" 4 "$RC"
check_contains "and says why" "not readable by this role" "$(err)"
pv app_admin get expired_one
check "the grantee reads it" "0 old" "$RC $(out)"

# list: masked, for viewers.
pv app_viewer list
check "list by a vault_viewer exits 0" 0 "$RC"
check_contains "list shows the name and the mask" "stripe_key   sk-l****cdef" "$(out)"
check_contains "list shows tags" "prod,payments" "$(out)"
check_contains "list marks expired secrets" "(expired)" "$(out)"
check_absent "list never shows a value" "$V1" "$(out)"
pv app_viewer list --tag payments
check "list --tag filters" "2" "$(out | wc -l)"
pv nobody list
check "list by a role without vault roles exits 4" 4 "$RC"

# run: the secrets only in the child's environment; its exit code is ours.
sql cli "SELECT vault.create_secret('postgres://u:p@h/db', 'db.url-prod', '', NULL, '{prod}')" >/dev/null
pv app_reader run -- sh -c 'echo "$STRIPE_KEY|$DB_URL_PROD"'
check "run -- sh -c 'echo \$NAME' sees the secrets" "0 $V1|postgres://u:p@h/db" "$RC $(out)"
check_contains "run skips a secret granted to other roles, and says so" "skipping secret expired_one" "$(err)"
pv app_admin run -- sh -c 'echo "$EXPIRED_ONE"'
check "the grantee's run has it" "old" "$(out)"
check_contains "run warns about an expired secret" "expired_one has expired" "$(err)"
pv app_reader run --only expired_one -- true
check "run --only a secret granted to other roles exits 4" 4 "$RC"
pv app_reader run --tag payments -- sh -c 'echo "${STRIPE_KEY:-unset}|${DB_PASSWORD:-unset}"'
check "run --tag passes only secrets with that tag" "$V1|unset" "$(out)"
pv app_reader run --only db_password -- sh -c 'echo "${STRIPE_KEY:-unset}|$DB_PASSWORD"'
check "run --only passes only the named secret" "unset|db-password-2" "$(out)"
pv app_reader run --only db_password -- sh -c 'exit 7'
check "run returns the child's exit code" 7 "$RC"
pv app_reader run --only db_password -- "$WORK/not-there"
check "run of a missing command exits 127" 127 "$RC"
pv app_reader run --only nope -- true
check "run --only an unknown name exits 3" 3 "$RC"
pv app_viewer run -- true
check "run by a vault_viewer exits 4" 4 "$RC"
sql cli "SELECT vault.create_secret('x', 'a-b'); SELECT vault.create_secret('y', 'a_b')" >/dev/null
pv app_reader run -- true
check "two names mapping to one variable exit 7" 7 "$RC"
check_contains "and say which" "both become the variable A_B" "$(err)"
sql cli "DELETE FROM vault.secrets WHERE name IN ('a-b', 'a_b')" >/dev/null

# import
cat >"$WORK/app.env" <<'EOF'
# comment
export API_TOKEN=tok-123  # trailing comment
MULTI="line one
line two \"quoted\""
db_password='from-the-file'

EOF
pv app_admin import "$WORK/app.env" --tag imported
check "import exits 0" 0 "$RC"
check_contains "import counts what it did" "imported 3 secrets (2 created, 1 updated)" "$(err)"
check "imported values and tags" "API_TOKEN=tok-123|{imported}
MULTI=line one
line two \"quoted\"|{imported}
db_password=from-the-file|{imported}" \
  "$(sql cli "SELECT name || '=' || decrypted_secret || '|' || tags::text FROM vault.decrypted_secrets WHERE name IN ('API_TOKEN', 'MULTI', 'db_password') ORDER BY name COLLATE \"C\"")"
printf 'GOOD=1\nALSO=2\nthis is not a pair with-secret-text\n' >"$WORK/bad.env"
before=$(sql cli "SELECT count(*) FROM vault.secrets")
pv app_admin import "$WORK/bad.env"
check "a malformed env file exits 7" 7 "$RC"
check_contains "naming the line" "line 3" "$(err)"
check_absent "without quoting it" "with-secret-text" "$(err)"
check "and imports nothing" "$before" "$(sql cli "SELECT count(*) FROM vault.secrets")"
pvin $'NEW_ONE=fresh\n' app_admin import -
check "import - reads standard input" "0 fresh" "$RC $(sql cli "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'NEW_ONE'")"
pv app_reader import "$WORK/app.env"
check "import by a vault_reader exits 4" 4 "$RC"

# export: stdout only, and says so; what it writes imports back unchanged.
pv app_reader export --format env
check "export --format env exits 0" 0 "$RC"
cp "$OUT" "$WORK/exported.env"
check_contains "export says it writes plain text to standard output" "plain text to standard output" "$(err)"
check_contains "export writes KEY=\"value\" lines" "stripe_key=\"$V1\"" "$(out)"
PGDATABASE=copy pv app_admin import "$WORK/exported.env"
check "the exported file imports into another database" 0 "$RC"
pv app_reader export --format json
cp "$OUT" "$WORK/a.json"
PGDATABASE=copy pv app_reader export --format json
cp "$OUT" "$WORK/b.json"
check "export -> import round-trips every value (json of both databases equal)" "" "$(cmp "$WORK/a.json" "$WORK/b.json" 2>&1)"
check "export --format json is a JSON object of name -> value" "line one
line two \"quoted\"|$V1" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["MULTI"] + "|" + d["stripe_key"])' "$WORK/a.json")"
pv app_reader export --only stripe_key --format json
check "export --only" "{'stripe_key': '$V1'}" "$(python3 -c 'import json,sys; print(json.load(sys.stdin))' <"$OUT")"
pv app_reader export --format yaml
check "export --format yaml is a usage error" 2 "$RC"
pv app_viewer export
check "export by a vault_viewer exits 4" 4 "$RC"

# rm
pv app_reader rm stripe_key
check "rm by a vault_reader exits 4" 4 "$RC"
pv app_admin rm stripe_key
check "rm exits 0" 0 "$RC"
pv app_reader get stripe_key
check "a removed secret is gone" 3 "$RC"
pv app_admin rm stripe_key
check "rm of an unknown name exits 3" 3 "$RC"

# Connections and servers without the extension.
PGDATABASE=plain pv app_reader list
check "a database without vault_ext exits 6" 6 "$RC"
check_contains "and says how to fix it" "CREATE EXTENSION vault_ext" "$(err)"
PGPORT=1 pv app_reader list
check "an unreachable server exits 5" 5 "$RC"
check_contains "naming where it tried" "cannot connect to database \"postgres\" as \"app_reader\"" "$(err)"
PGPORT=1 pv app_reader --dsn "host=$WORK port=$(port cli) dbname=postgres" get db_password
check "--dsn wins over the PG* variables" "0 from-the-file" "$RC $(out)"
PGPORT=1 DATABASE_URL="postgresql://app_reader@%2F${WORK//\//%2F}:$(port cli)/postgres" pv ignored get db_password
check "DATABASE_URL is used when --dsn is absent" "0 from-the-file" "$RC $(out)"
pv app_reader frobnicate
check "an unknown command exits 2" 2 "$RC"
pv app_reader get
check "a missing argument exits 2" 2 "$RC"

check_absent "no value in the server log" "$V1" "$(cat "$(logfile cli)")"
summary "cli tests"
