#!/usr/bin/env bash
# Tier 4: the Debian packages on the system server. Builds them (scripts/package.sh MAJOR and
# scripts/package.sh pgvault, release builds; set VAULT_DEB and VAULT_PGVAULT_DEB to test .debs
# built already). The extension's: installed with dpkg -i, the pg_regress suite and the cluster
# tests run against the installed files, removed with dpkg -r, every file checked gone; a cluster
# running through it all is never restarted. If vault_ext was installed before the test, the
# package is installed again at the end so the server is left with vault_ext. pgvault's:
# installed while the extension's is, /usr/bin/pgvault used against a cluster with a role and a
# password, removed, and the machine left as it was found. Needs root and a Debian/PGDG
# postgresql-MAJOR.
# VAULT_PACKAGES=pgvault tests pgvault's package only: pgvault is not tied to one server, so
# then PG_CONFIG may be any PostgreSQL that has vault_ext installed (not only Debian's).
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
PACKAGES=${VAULT_PACKAGES:-extension pgvault}
want() { case " $PACKAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
MAJOR=$("$PG_CONFIG" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
PKG=postgresql-$MAJOR-vault-ext
VERSION=$(sed -nE 's/^version = "(.*)"/\1/p' "$REPO/Cargo.toml" | head -1)
LIBDIR=/usr/lib/postgresql/$MAJOR/lib
EXTDIR=/usr/share/postgresql/$MAJOR/extension
if want extension; then
  [ "$("$PG_CONFIG" --pkglibdir)" = "$LIBDIR" ] || { echo "PG_CONFIG=$PG_CONFIG is not Debian's PostgreSQL $MAJOR ($LIBDIR)"; exit 1; }
fi
echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version); packages: $PACKAGES, version $VERSION"
HAD_VAULT=$([ -f "$LIBDIR/vault_ext.so" ] && echo yes || echo no)

# --- pgvault's package -------------------------------------------------------------------------
PV_PKG=pgvault
PV_VERSION=$(sed -nE 's/^version = "(.*)"/\1/p' "$REPO/cli/Cargo.toml" | head -1)
PV_BIN=/usr/bin/pgvault
PV_DEB=
PV_COMPLETIONS="/usr/share/bash-completion/completions/pgvault /usr/share/zsh/vendor-completions/_pgvault /usr/share/fish/vendor_completions.d/pgvault.fish"
# pgvault_state: what the machine has of pgvault: the package's status, and /usr/bin/pgvault
# (the package's, or another file with its checksum, or none).
pgvault_state() {
  local pkg file
  pkg=$(dpkg-query -W -f '${Status}' "$PV_PKG" 2>/dev/null | grep -q 'install ok installed' && echo installed || echo not-installed)
  if [ ! -e "$PV_BIN" ]; then file=absent
  elif dpkg -S "$PV_BIN" 2>/dev/null | grep -q "^$PV_PKG:"; then file=packaged
  else file="unpackaged $(md5sum <"$PV_BIN" | cut -c1-32)"; fi
  echo "package $pkg, $PV_BIN $file"
}

# pgvault_build: build dist/pgvault_VERSION_amd64.deb (or take VAULT_PGVAULT_DEB), check what it holds.
pgvault_build() {
  local t0 c
  if [ -n "${VAULT_PGVAULT_DEB:-}" ]; then
    PV_DEB=$VAULT_PGVAULT_DEB
  else
    t0=$(date +%s)
    PV_DEB=$(cd "$REPO" && scripts/package.sh pgvault 2>"$WORK/package-pgvault.log" | tail -1)
    [ -n "$PV_DEB" ] && PV_DEB=$REPO/$PV_DEB
    echo "# scripts/package.sh pgvault took $(($(date +%s) - t0)) s"
  fi
  check "pgvault's package is dist/${PV_PKG}_${PV_VERSION}_amd64.deb" "${PV_PKG}_${PV_VERSION}_amd64.deb" "$(basename "${PV_DEB:-none}")"
  [ -f "${PV_DEB:-}" ] || { tail -30 "$WORK/package-pgvault.log"; PV_DEB=; return; }
  check "pgvault control: package, version, architecture" "$PV_PKG $PV_VERSION amd64" \
    "$(dpkg-deb -f "$PV_DEB" Package) $(dpkg-deb -f "$PV_DEB" Version) $(dpkg-deb -f "$PV_DEB" Architecture)"
  check_contains "pgvault control: depends on libc6 (dpkg-shlibdeps)" "libc6" "$(dpkg-deb -f "$PV_DEB" Depends)"
  check_contains "pgvault control: depends on libssl3 (dpkg-shlibdeps)" "libssl3" "$(dpkg-deb -f "$PV_DEB" Depends)"
  check_absent "pgvault control: not tied to a PostgreSQL server package" "postgresql" "$(dpkg-deb -f "$PV_DEB" Depends)"
  c=$(dpkg-deb -c "$PV_DEB" | awk '{ print $6 }' | sed 's|^\./|/|')
  for f in "$PV_BIN" $PV_COMPLETIONS /usr/share/doc/pgvault/README.md /usr/share/doc/pgvault/changelog.gz /usr/share/doc/pgvault/copyright; do
    check "pgvault's package holds $f" "$f" "$(printf '%s\n' "$c" | grep -xF "$f")"
  done
  check "pgvault: every file is owned by root" "" "$(dpkg-deb -c "$PV_DEB" | awk '$2 != "root/root"')"
  check "pgvault: $PV_BIN is rwxr-xr-x" "-rwxr-xr-x" "$(dpkg-deb -c "$PV_DEB" | awk '$6 == ".'"$PV_BIN"'" { print $1 }')"
  check_contains "pgvault: the binary is stripped" ", stripped" "$(dpkg-deb --fsys-tarfile "$PV_DEB" | tar -xO ".$PV_BIN" | file -)"
  check "pgvault: no maintainer scripts (installing or removing it starts nothing)" "" \
    "$(dpkg-deb -I "$PV_DEB" postinst prerm postrm preinst config 2>/dev/null)"
}

# pv_pkg NAME PASSWORD ARGS...: the installed pgvault as pkg_admin on cluster NAME's socket,
# with no other connection settings from the caller's environment.
pv_pkg() {
  local name=$1 pw=$2; shift 2
  env -u DATABASE_URL -u PGSERVICE -u PGSERVICEFILE -u PGPASSFILE -u PGVAULT_URL -u PGVAULT_TOKEN -u PGVAULT_CACERT \
    PGHOST="$WORK" PGPORT="$(port "$name")" PGDATABASE=postgres PGUSER=pkg_admin PGPASSWORD="$pw" "$PV_BIN" "$@"
}

# pgvault_install NAME: install pgvault's package, use /usr/bin/pgvault against the running
# cluster NAME (which has vault_ext preloaded) as a role with a password, remove the package,
# and leave the machine as it was found.
pgvault_install() {
  local before files left rc out
  before=$(pgvault_state)
  echo "# before: $before"
  case "$before" in *unpackaged*) cp -a "$PV_BIN" "$WORK/pgvault.unpackaged" ;; esac
  out=$(dpkg -i "$PV_DEB" 2>&1)
  check "dpkg -i installs pgvault" "install ok installed" "$(dpkg-query -W -f '${Status}' "$PV_PKG" 2>&1)"
  check "dpkg --verify: the installed pgvault files are the package's" "" "$(dpkg --verify "$PV_PKG" 2>&1)"
  check "$PV_BIN --version prints the package's version" "pgvault $PV_VERSION" "$("$PV_BIN" --version 2>&1)"
  check_contains "the bash completion script completes pgvault" "-F _pgvault" \
    "$(bash -c '. /usr/share/bash-completion/completions/pgvault && complete -p pgvault' 2>&1)"

  # The installed binary against a real server: a role with a password, checked by scram.
  out=$(sql "$1" "CREATE EXTENSION IF NOT EXISTS vault_ext;
    CREATE ROLE pkg_admin LOGIN PASSWORD 'pkg-pw-0x7a' IN ROLE vault_admin" 2>&1)
  [ -z "$out" ] || echo "# setup: $out"
  printf 'pkg-secret-value-42' | pv_pkg "$1" pkg-pw-0x7a set pkg_secret --tag pkg >"$WORK/pv.out" 2>&1
  rc=$?
  check "installed pgvault set (role with a password) exits 0" "0" "$rc"
  [ "$rc" -eq 0 ] || head -5 "$WORK/pv.out"
  check "the server stored what pgvault set" "pkg-secret-value-42|{pkg}" \
    "$(sql "$1" "SELECT d.decrypted_secret, s.tags FROM vault.decrypted_secrets d JOIN vault.secrets s USING (id) WHERE s.name = 'pkg_secret'")"
  check "installed pgvault get prints the value" "pkg-secret-value-42" "$(pv_pkg "$1" pkg-pw-0x7a get pkg_secret 2>&1)"
  check_contains "installed pgvault list shows the secret" "pkg_secret" "$(pv_pkg "$1" pkg-pw-0x7a list 2>&1)"
  check_contains "installed pgvault with a wrong password is refused by the server" "password authentication failed" \
    "$(pv_pkg "$1" wrong-pw get pkg_secret 2>&1)"

  files=$(dpkg -L "$PV_PKG" | while read -r f; do [ -f "$f" ] && echo "$f"; done)
  dpkg -r "$PV_PKG" >"$WORK/remove-pgvault.out" 2>&1
  check "dpkg -r removes pgvault" "" "$(dpkg-query -W -f '${Status}' "$PV_PKG" 2>/dev/null | grep -v 'not-installed')"
  left=$(printf '%s\n' "$files" | while read -r f; do [ -e "$f" ] && echo "$f"; done)
  check "every file of pgvault's package is gone" "" "$left"
  # Leave the machine as it was found: pgvault installed again if it was, another file put back.
  case "$before" in
    "package installed"*) dpkg -i "$PV_DEB" >/dev/null 2>&1 ;;
    *unpackaged*) cp -a "$WORK/pgvault.unpackaged" "$PV_BIN" ;;
  esac
  check "the machine is left as it was found (pgvault)" "$before" "$(pgvault_state)"
}

if ! want extension; then
  # pgvault's package alone, against this server's vault_ext.
  pgvault_build
  if [ -n "$PV_DEB" ]; then
    new_cluster client
    scram_only client
    start client || { cat "$(logfile client)"; exit 1; }
    pgvault_install client
  fi
  summary "package tests"
  exit
fi

# --- build -----------------------------------------------------------------------------------
if [ -n "${VAULT_DEB:-}" ]; then
  DEB=$VAULT_DEB
else
  t0=$(date +%s)
  DEB=$(cd "$REPO" && scripts/package.sh "$MAJOR" 2>"$WORK/package.log" | tail -1)
  [ -n "$DEB" ] && DEB=$REPO/$DEB
  echo "# scripts/package.sh $MAJOR took $(($(date +%s) - t0)) s"
fi
check "the package is dist/${PKG}_${VERSION}_amd64.deb" "${PKG}_${VERSION}_amd64.deb" "$(basename "${DEB:-none}")"
[ -f "${DEB:-}" ] || { tail -30 "$WORK/package.log"; summary "package tests"; exit 1; }
check "control: package, version, architecture" "$PKG $VERSION amd64" \
  "$(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version) $(dpkg-deb -f "$DEB" Architecture)"
check_contains "control: depends on postgresql-$MAJOR" "postgresql-$MAJOR" "$(dpkg-deb -f "$DEB" Depends)"
CONTENTS=$(dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|')
for f in "$LIBDIR/vault_ext.so" "$EXTDIR/vault_ext.control" "$EXTDIR/vault_ext--$VERSION.sql"; do
  check "the package holds $f" "$f" "$(printf '%s\n' "$CONTENTS" | grep -xF "$f")"
done
for f in "$REPO"/sql/vault_ext--*--*.sql; do
  check "the package holds the upgrade script $(basename "$f")" "$EXTDIR/$(basename "$f")" \
    "$(printf '%s\n' "$CONTENTS" | grep -xF "$EXTDIR/$(basename "$f")")"
done
check "every file is owned by root" "" "$(dpkg-deb -c "$DEB" | awk '$2 != "root/root"')"
check_contains "the library is stripped" ", stripped" "$(dpkg-deb --fsys-tarfile "$DEB" | tar -xO ".$LIBDIR/vault_ext.so" | file -)"
SCRIPTS=$(dpkg-deb -I "$DEB" postinst prerm postrm preinst 2>/dev/null)
check_absent "maintainer scripts do not touch clusters (pg_ctlcluster)" "pg_ctl" "$SCRIPTS"
check_absent "maintainer scripts do not touch clusters (systemctl/service)" "systemctl" "$SCRIPTS$(printf '%s' "$SCRIPTS" | grep -w service)"

want pgvault && pgvault_build

# A cluster of the system server, running while the package is installed and removed.
new_cluster live "shared_preload_libraries = ''"
start live || { cat "$(logfile live)"; exit 1; }
LIVE_PID=$(head -1 "$(datadir live)/postmaster.pid")
LIVE_START=$(sql live "SELECT pg_postmaster_start_time()")

# --- install -----------------------------------------------------------------------------------
dpkg -r "$PKG" >/dev/null 2>&1 # a leftover of an earlier run
out=$(dpkg -i "$DEB" 2>&1)
check "dpkg -i installs it" "install ok installed" "$(dpkg-query -W -f '${Status}' "$PKG" 2>&1)"
check_contains "postinst says what to do next" "shared_preload_libraries" "$out"
check "dpkg --verify: the installed files are the package's" "" "$(dpkg --verify "$PKG" 2>&1)"
check "the running cluster was not restarted by the install" "$LIVE_PID $LIVE_START" \
  "$(head -1 "$(datadir live)/postmaster.pid") $(sql live "SELECT pg_postmaster_start_time()")"
check "the running cluster sees the new version available" "$VERSION" \
  "$(sql live "SELECT default_version FROM pg_available_extensions WHERE name = 'vault_ext'")"

# --- the test suites against the installed files ---------------------------------------------
PG_CONFIG=$PG_CONFIG "$REPO/tests/regress.sh" >"$WORK/regress.out" 2>&1
rc=$?
grep -E '^(ok|not ok) [0-9]+|^test |tests passed|failed' "$WORK/regress.out" | tail -3 | sed 's/^/# /'
check "pg_regress suite passes against the installed package" "0" "$rc"
[ "$rc" -eq 0 ] || tail -40 "$WORK/regress.out"
PG_CONFIG=$PG_CONFIG "$REPO/tests/cluster.sh" >"$WORK/cluster.out" 2>&1
rc=$?
line=$(grep -E '^cluster tests: ' "$WORK/cluster.out")
echo "# $line"
check "cluster tests pass against the installed package" "0 ${line##*, }" "$rc 0 failed"
[ "$rc" -eq 0 ] || grep -E '^not ok' -A3 "$WORK/cluster.out" | head -40

# pgvault's package, against a cluster that preloads the extension installed from its package.
if want pgvault && [ -n "$PV_DEB" ]; then
  new_cluster client
  scram_only client
  if start client; then pgvault_install client; else not_ok "a cluster preloading the installed vault_ext starts" "$(tail -5 "$(logfile client)")"; fi
  stop client
fi

# --- remove --------------------------------------------------------------------------------------
FILES=$(dpkg -L "$PKG" | while read -r f; do [ -f "$f" ] && echo "$f"; done)
check "dpkg -L lists the library among the installed files" "yes" "$(printf '%s\n' "$FILES" | grep -qx "$LIBDIR/vault_ext.so" && echo yes)"
dpkg -r "$PKG" >"$WORK/remove.out" 2>&1
check "dpkg -r removes it" "" "$(dpkg-query -W -f '${Status}' "$PKG" 2>/dev/null | grep -v 'not-installed')"
LEFT=$(printf '%s\n' "$FILES" | while read -r f; do [ -e "$f" ] && echo "$f"; done)
check "every file of the package is gone" "" "$LEFT"
# (other tests may leave vault_ext--0.1.0.sql there: a released install script, not the package's)
check "no library, control file, install or upgrade script left" "" \
  "$(ls "$LIBDIR"/vault_ext* "$EXTDIR"/vault_ext.control "$EXTDIR/vault_ext--$VERSION.sql" "$EXTDIR"/vault_ext--*--*.sql 2>/dev/null)"
check "the running cluster was not restarted by the removal" "$LIVE_PID $LIVE_START" \
  "$(head -1 "$(datadir live)/postmaster.pid") $(sql live "SELECT pg_postmaster_start_time()")"

# Leave the server as it was found: with vault_ext when it had it.
if [ "$HAD_VAULT" = yes ]; then
  dpkg -i "$DEB" >/dev/null 2>&1
  check "vault_ext reinstalled from the package (it was installed before the test)" "yes" "$([ -f "$LIBDIR/vault_ext.so" ] && echo yes)"
fi
summary "package tests"
