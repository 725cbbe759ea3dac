#!/usr/bin/env bash
# Build and install vault_ext, start a local demo cluster with it preloaded, and show a secret
# going in encrypted and coming out decrypted. The cluster is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
echo "== building and installing vault_ext"
cargo pgrx install --pg-config /usr/bin/pg_config >/dev/null

DEMO=${VAULT_DEMO_DIR:-/tmp/vault_ext_demo}
PORT=${VAULT_DEMO_PORT:-5499}
BIN=$(pg_config --bindir)
mkdir -p "$DEMO"; chown postgres: "$DEMO"; chmod 755 "$DEMO"
if [ -f "$DEMO/data/postmaster.pid" ]; then
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DEMO/data" -w stop >/dev/null
fi
if [ ! -d "$DEMO/data" ]; then
  runuser -u postgres -- "$BIN/initdb" -D "$DEMO/data" -E UTF8 --locale=C.UTF-8 -A trust -U postgres >/dev/null
  # The superuser's socket is trusted (this is a demo); every other role gives a password the
  # database checks, which is what pgvault serve's console requires of pg_hba.conf.
  printf 'local all postgres trust\nlocal all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n' \
    >"$DEMO/data/pg_hba.conf"
  cat >>"$DEMO/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DEMO'
shared_preload_libraries = 'vault_ext'
CONF
fi
runuser -u postgres -- "$BIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/server.log" -w start >/dev/null
grep -h "vault_ext:" "$DEMO/server.log" | tail -1

PSQL=(psql -h "$DEMO" -p "$PORT" -U postgres -d postgres -X)
"${PSQL[@]}" -q <<'SQL'
CREATE EXTENSION IF NOT EXISTS vault_ext;
DELETE FROM vault.secrets WHERE name = 'demo_api_key';
\echo
\echo '-- a secret goes in:'
\echo 'SELECT vault.create_secret(''sk-demo-1234567890'', ''demo_api_key'', ''an example API key'');'
SELECT vault.create_secret('sk-demo-1234567890', 'demo_api_key', 'an example API key') IS NOT NULL AS created;
\echo '-- what the table stores (ciphertext, bound to the row id and a random nonce):'
SELECT name, left(secret, 24) || '...' AS secret, nonce FROM vault.secrets WHERE name = 'demo_api_key';
\echo '-- and it comes out decrypted:'
SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name = 'demo_api_key';
SELECT vault.read_secret('demo_api_key');
SQL
echo "The demo cluster is running. Connect with:"
echo "  psql -h $DEMO -p $PORT -U postgres"
echo "For the web console (pgvault serve), log in as a vault role with a password, e.g.:"
echo "  psql -h $DEMO -p $PORT -U postgres -c 'CREATE ROLE alice LOGIN IN ROLE vault_admin' -c '\\password alice'"
echo "Stop it with:"
echo "  runuser -u postgres -- $BIN/pg_ctl -D $DEMO/data stop"
