#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine and runs it all.
# As root it also installs the Debian packages the tests drive (etcd-server, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="etcd-server"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # The package may start a system etcd; the tests start their own on free ports.
  pkill -x etcd 2>/dev/null || true
fi

VENV="${PINNACE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[test]"

export PATH="$PWD/$VENV/bin:$PATH"
set +e
"$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-2}" -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
