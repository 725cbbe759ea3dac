#!/usr/bin/env bash
# Install what building and testing vault_ext needs on Debian 12 (run as root), for the
# PostgreSQL majors given as arguments (default: 15). Idempotent: anything already present is
# skipped, so it is cheap to call before every build.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

APT_PACKAGES=(build-essential pkg-config clang libclang-dev postgresql-15 postgresql-server-dev-15
  postgresql-contrib sudo python3 libssl-dev openssl
  pgbouncer postgresql-15-cron patroni etcd-server etcd-client
  dpkg-dev file
  curl jq chromium chromium-driver python3-pip wrk)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The web console's browser test drives Chromium with selenium (PyPI; Debian's python is
# externally managed, hence --break-system-packages when plain pip refuses).
if ! python3 -c 'import selenium' 2>/dev/null; then
  echo "setup: installing selenium (pip)"
  python3 -m pip install -q --root-user-action=ignore selenium 2>/dev/null ||
    python3 -m pip install -q --root-user-action=ignore --break-system-packages selenium
fi

# HashiCorp Vault's own clients for tests/vault_api_cluster.sh, pinned: hvac (PyPI) and
# node-vault (npm, locked in tests/vault_clients/node/package-lock.json; node_modules not committed).
HVAC_VERSION=2.4.0
if [ "$(python3 -m pip show hvac 2>/dev/null | sed -n 's/^Version: //p')" != "$HVAC_VERSION" ]; then
  echo "setup: installing hvac $HVAC_VERSION (pip)"
  python3 -m pip install -q --root-user-action=ignore "hvac==$HVAC_VERSION" 2>/dev/null ||
    python3 -m pip install -q --root-user-action=ignore --break-system-packages "hvac==$HVAC_VERSION"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs and npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
NODE_CLIENTS="$(cd "$(dirname "$0")/.." && pwd)/tests/vault_clients/node"
NODE_VAULT_VERSION=$(sed -n 's/^ *"node-vault": "\(.*\)"$/\1/p' "$NODE_CLIENTS/package.json")
if [ "$(node -p "require('$NODE_CLIENTS/node_modules/node-vault/package.json').version" 2>/dev/null)" != "$NODE_VAULT_VERSION" ]; then
  echo "setup: installing node-vault (npm ci)"
  (cd "$NODE_CLIENTS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.1'; then
  echo "setup: installing cargo-pgrx 0.18.1 (about 5 minutes)"
  cargo install cargo-pgrx --version 0.18.1 --locked
fi

# Register every requested major with pgrx (init rewrites its config, so pass them all at once).
majors=("${@:-15}")
PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
init_args=()
need_init=
for v in 15 16 17 18; do
  if [[ " ${majors[*]} " == *" $v "* ]] || grep -q "^pg$v" "$PGRX_CONFIG" 2>/dev/null; then
    init_args+=("--pg$v" "$("$(dirname "$0")/pg-install.sh" "$v")")
    grep -q "^pg$v" "$PGRX_CONFIG" 2>/dev/null || need_init=1
  fi
done
if [ -n "$need_init" ]; then
  cargo pgrx init "${init_args[@]}"
fi
