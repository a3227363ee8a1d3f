#!/usr/bin/env bash
# Static security scan with checkov: terraform/ by default,
# .github/workflows/ with `scripts/checkov.sh --github-actions`.
#
# checkov lives in its own venv (.venv-checkov) because its dependency pins
# clash with the project's; the venv is created on first use and reused after.
# The version is pinned so a new checkov release cannot turn CI red on its own;
# bump CHECKOV_VERSION deliberately.
#
# Exit status: checkov's own (0 = no failed check), or 75 when checkov could
# not be installed (e.g. no access to a package index), so callers can tell
# "scan failed" from "could not scan".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
PYTHON="${PYTHON:-python3}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"

installed_version() {
  "$VENV/bin/checkov" --version 2>/dev/null || true
}

if [ "$(installed_version)" != "$CHECKOV_VERSION" ]; then
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  if ! { "$PYTHON" -m venv "$VENV" &&
    "$VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "checkov.sh: could not install checkov $CHECKOV_VERSION into $VENV" >&2
    exit 75
  fi
fi

cd "$ROOT"
if [ "${1:-}" = "--github-actions" ]; then
  shift
  exec "$VENV/bin/checkov" -d .github/workflows --framework github_actions --skip-download --compact --quiet "$@"
fi
exec "$VENV/bin/checkov" -d terraform --framework terraform --skip-download --compact --quiet "$@"
