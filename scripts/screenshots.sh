#!/usr/bin/env bash
# The README's pictures of the web console: docs/web-console.png (1400x900) and
# docs/web-console-phone.png (390x844). A throwaway cluster (tests/lib.sh) with a vault_admin
# role `alice` and the secrets a new user keeps (every value fake: EXAMPLE in each, and the
# console shows masks only), `pgvault serve` with a test CA, then headless Chromium
# (tests/web_browser.py, MODE=readme) logs in, checks that no name, value or row of buttons
# wraps and nothing overflows sideways, and saves both images. Not part of scripts/test.sh.
# PG_CONFIG=path/to/pg_config [PGVAULT=target/debug/pgvault] scripts/screenshots.sh [OUTDIR]
set -u
. "$(dirname "$0")/../tests/lib.sh"
PGVAULT=${PGVAULT:-$REPO/target/debug/pgvault}
OUT=$(realpath -m "${1:-$REPO/docs}")
[ -x "$PGVAULT" ] || { echo "no pgvault binary at $PGVAULT (cargo build -p pgvault)"; exit 1; }
command -v chromedriver >/dev/null && python3 -c 'import selenium' 2>/dev/null ||
  { echo "screenshots need chromium-driver and python3 selenium (scripts/setup.sh installs them)"; exit 1; }
cluster_init
trap servers_cleanup EXIT
mkdir -p "$OUT"

new_cluster shots "password_encryption = 'scram-sha-256'" "timezone = 'UTC'"
scram_only shots
start shots || { cat "$(logfile shots)"; exit 1; }
PW=Pw-$RANDOM-$RANDOM-x
# name | value | description | tags | created (days ago) | expires (days from now, or empty)
setup=$(sql shots "CREATE EXTENSION vault_ext;
  CREATE ROLE alice LOGIN PASSWORD '$PW' IN ROLE vault_admin;
  INSERT INTO vault.secrets (name, secret, description, tags, created_at, updated_at, expires_at)
  SELECT name, secret, description, tags, now() - make_interval(days => created, mins => created * 37 % 600),
         now() - make_interval(days => updated, mins => updated * 53 % 600),
         CASE WHEN expires IS NOT NULL THEN date_trunc('hour', now()) + make_interval(days => expires) END
    FROM (VALUES
    ('STRIPE_SECRET_KEY', 'sk_test_EXAMPLE00000000000000000000000000', 'Stripe API key: charges and refunds', ARRAY['prod', 'billing'], 210, 35, NULL),
    ('STRIPE_WEBHOOK_SECRET', 'whsec_EXAMPLE000000000000000000000000', 'Signs the events sent to /hooks/stripe', ARRAY['prod', 'billing'], 210, 210, NULL),
    ('OPENAI_API_KEY', 'sk-proj-EXAMPLE0000000000000000000000000000', 'Summaries in the support inbox', ARRAY['prod', 'ai'], 64, 12, 90),
    ('DATABASE_URL', 'postgres://app:EXAMPLE-password@db.internal:5432/app', 'Primary database of the web app', ARRAY['prod'], 300, 300, NULL),
    ('GITHUB_WEBHOOK_SECRET', 'EXAMPLE-github-webhook-0000000000', 'Verifies push events before a deploy', ARRAY['ci'], 88, 88, 5),
    ('SENDGRID_API_KEY', 'SG.EXAMPLE0000000000.0000000000000000', 'Receipts and password-reset mail', ARRAY['prod', 'email'], 150, 40, 180),
    ('SLACK_BOT_TOKEN', 'xoxb-EXAMPLE-0000000000-0000000000', 'Alerts to #ops', ARRAY['ops'], 30, 30, NULL),
    ('AWS_SECRET_ACCESS_KEY', 'EXAMPLE/AWS/0000000000000000000000000000', 'Uploads bucket (s3://app-uploads)', ARRAY['prod', 'storage'], 240, 60, NULL),
    ('JWT_SIGNING_KEY', 'EXAMPLE-jwt-signing-key-00000000000000', 'Signs session tokens of the web app', ARRAY['prod', 'auth'], 300, 90, NULL),
    ('STAGING_DATABASE_URL', 'postgres://app:EXAMPLE-staging@db-staging.internal:5432/app', 'Staging copy, refreshed nightly', ARRAY['staging'], 120, 7, NULL)
    ) AS s(name, secret, description, tags, created, updated, expires)") ||
  { echo "setup failed: $setup"; exit 1; }
test_certificate || exit 1

unset PGUSER PGPASSWORD PGHOST PGPORT DATABASE_URL PGSERVICE
WPORT=$PORT_NEXT
"$PGVAULT" --dsn "host=$WORK port=$(port shots) dbname=postgres" serve --listen "127.0.0.1:$WPORT" \
  --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" >"$WORK/serve.out" 2>&1 &
SERVERS+=($!)
wait_https serve "$WPORT" || exit 1
BASE_URL=https://localhost:$WPORT USER_NAME=alice USER_PASSWORD=$PW MODE=readme SHOTS=$OUT \
  timeout 120 python3 "$REPO/tests/web_browser.py"
rc=$?
[ "$rc" -eq 0 ] && echo "saved $OUT/web-console.png and $OUT/web-console-phone.png"
exit "$rc"
