#!/usr/bin/env bash
# Tier 4: the Debian package on the system server. Builds it (scripts/package.sh MAJOR, a
# release build; set VAULT_DEB to test a .deb built already), installs it with dpkg -i, runs
# the pg_regress suite and the cluster tests against the installed files, removes it with
# dpkg -r and checks every file is gone. A cluster running through it all is never restarted.
# If vault_ext was installed before the test, the package is installed again at the end so
# the server is left with vault_ext. Needs root and a Debian/PGDG postgresql-MAJOR.
set -u
. "$(dirname "$0")/lib.sh"
cluster_init
MAJOR=$("$PG_CONFIG" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
PKG=postgresql-$MAJOR-vault-ext
VERSION=$(sed -nE 's/^version = "(.*)"/\1/p' "$REPO/Cargo.toml" | head -1)
LIBDIR=/usr/lib/postgresql/$MAJOR/lib
EXTDIR=/usr/share/postgresql/$MAJOR/extension
[ "$("$PG_CONFIG" --pkglibdir)" = "$LIBDIR" ] || { echo "PG_CONFIG=$PG_CONFIG is not Debian's PostgreSQL $MAJOR ($LIBDIR)"; exit 1; }
echo "# PostgreSQL: $("$PG_BINDIR/postgres" --version); package $PKG $VERSION"
HAD_VAULT=$([ -f "$LIBDIR/vault_ext.so" ] && echo yes || echo no)

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
