# Shared by the benchmarks: the test helpers, plus a release build of vault_ext installed into
# the server of PG_CONFIG (skipped when NO_INSTALL is set). Benchmarks are not part of the tests
# and leave the release build installed.
. "$(dirname "${BASH_SOURCE[0]}")/../tests/lib.sh"

install_release() {
  [ -n "${NO_INSTALL:-}" ] && return 0
  echo "installing a release build of vault_ext into $("$PG_CONFIG" --version)"
  (cd "$REPO" && cargo pgrx install --release --pg-config "$(command -v "$PG_CONFIG")" >/dev/null 2>&1)
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
