#!/usr/bin/env bash
# Tier 4 harness for pgvault's in-process API tests (cli/tests/api.rs): a throwaway cluster
# with scram-sha-256 logins, the roles the tests log in as, and a test CA; then
# `cargo test -p pgvault --features cluster-tests --test api` with the cluster's socket
# directory, port and passwords in the environment. The tests build the router themselves and
# send it requests without a network (and, for remote.rs, serve it on 127.0.0.1 with TLS).
set -u
. "$(dirname "$0")/lib.sh"
cluster_init

new_cluster api "password_encryption = 'scram-sha-256'" "log_line_prefix = '%m [%p] %u '"
scram_only api
start api || { cat "$(logfile api)"; exit 1; }
PW=Pw-$RANDOM-$RANDOM-x
setup=$(sql api "CREATE EXTENSION vault_ext;
  CREATE ROLE api_admin LOGIN PASSWORD '$PW' IN ROLE vault_admin;
  CREATE ROLE api_reader LOGIN PASSWORD '$PW' IN ROLE vault_reader;
  CREATE ROLE api_granted LOGIN PASSWORD '$PW' IN ROLE vault_reader;
  CREATE ROLE api_viewer LOGIN PASSWORD '$PW' IN ROLE vault_viewer;
  CREATE ROLE api_nobody LOGIN PASSWORD '$PW';
  CREATE ROLE api_super LOGIN SUPERUSER PASSWORD '$PW';
  CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '$PW';
  GRANT USAGE ON SCHEMA vault TO authenticator;
  CREATE ROLE tok_reader NOLOGIN IN ROLE vault_reader;
  CREATE ROLE tok_viewer NOLOGIN IN ROLE vault_viewer;
  CREATE ROLE tok_admin NOLOGIN IN ROLE vault_admin;
  CREATE ROLE tok_outside NOLOGIN IN ROLE vault_reader;
  GRANT tok_reader, tok_viewer, tok_admin TO authenticator;
  CREATE ROLE authenticator_logged LOGIN NOINHERIT PASSWORD '$PW';
  GRANT USAGE ON SCHEMA vault TO authenticator_logged;
  GRANT tok_reader TO authenticator_logged;
  ALTER ROLE authenticator_logged SET log_statement = 'all';
  CREATE ROLE authenticator_drop LOGIN NOINHERIT PASSWORD '$PW';
  GRANT USAGE ON SCHEMA vault TO authenticator_drop;
  GRANT tok_admin TO authenticator_drop;
  CREATE ROLE authenticator_busy LOGIN NOINHERIT PASSWORD '$PW';
  GRANT USAGE ON SCHEMA vault TO authenticator_busy;
  GRANT tok_admin TO authenticator_busy;
  CREATE ROLE authenticator_reads LOGIN PASSWORD '$PW' IN ROLE vault_reader;
  GRANT USAGE ON SCHEMA vault TO authenticator_reads;
  GRANT tok_reader TO authenticator_reads;
  ALTER ROLE authenticator_reads SET vault.audit_reads = on") || { echo "setup failed: $setup"; exit 1; }
test_certificate || exit 1

unset PGUSER PGPASSWORD PGHOST PGPORT DATABASE_URL PGSERVICE PGVAULT_URL PGVAULT_TOKEN PGVAULT_CACERT
export PGVAULT_TEST_HOST=$WORK PGVAULT_TEST_PORT=$(port api) PGVAULT_TEST_PASSWORD=$PW \
  PGVAULT_TEST_LOG=$(logfile api) PGVAULT_TEST_CA=$WORK/ca.pem PGVAULT_TEST_CERT=$WORK/server.pem PGVAULT_TEST_KEY=$WORK/server.key
cd "$REPO" || exit 1
cargo test -p pgvault --features cluster-tests --test api -- --test-threads 4 2>&1 | tee "$WORK/cargo.log"
rc=${PIPESTATUS[0]}
read -r p f < <(grep -E '^test result' "$WORK/cargo.log" |
  sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' | awk '{p += $1; f += $2} END {print p + 0, f + 0}')
[ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
echo "api tests: $p passed, $f failed"
[ "$f" -eq 0 ]
