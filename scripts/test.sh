#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine and runs it all.
# As root it also installs the Debian packages the tests drive (etcd-server, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

# etcd for the etcd store; the rest for real nodes: OCI runtimes, the container
# monitor, the sandbox's init, image building (busybox, and the classic example's
# Debian root filesystems), a local registry, the pod network.
DEBS="etcd-server runc crun conmon catatonit umoci busybox-static docker-registry nftables iptables iproute2 mmdebstrap"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # The packages may start a system etcd or registry; the tests start their own on free ports.
  pkill -x etcd 2>/dev/null || true
  pkill -x docker-registry 2>/dev/null || true
fi

VENV="${PINNACE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[test]"

export PATH="$PWD/$VENV/bin:$PATH"
run_pytest() {
  set +e
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
  local rc=$?
  set -e
  if [ "$rc" = 5 ]; then
    echo "pytest collected no tests ($*): that is a failure" >&2
    return 1
  fi
  return "$rc"
}

if [ "$#" -gt 0 ]; then
  run_pytest -n "${PYTEST_WORKERS:-2}" "$@"
  exit $?
fi
# Everything but the real-node tests in parallel; those share the host's
# bridge, cgroups and agent, so they run in one process after.
rc=0
run_pytest -n "${PYTEST_WORKERS:-2}" --ignore=tests/e2e tests || rc=$?
run_pytest tests/e2e || rc=$?
exit "$rc"
