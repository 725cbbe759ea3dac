#!/usr/bin/env bash
# Install what building and testing vault_ext needs on Debian 12 (run as root). Idempotent:
# anything already present is skipped, so it is cheap to call before every build.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

APT_PACKAGES=(build-essential pkg-config clang libclang-dev postgresql-15 postgresql-server-dev-15
  postgresql-contrib sudo python3)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.1'; then
  echo "setup: installing cargo-pgrx 0.18.1 (about 5 minutes)"
  cargo install cargo-pgrx --version 0.18.1 --locked
fi

PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if ! grep -q '^pg15' "$PGRX_CONFIG" 2>/dev/null; then
  cargo pgrx init --pg15 /usr/bin/pg_config
fi
