#!/usr/bin/env bash
# Builds the test image pinnace-test/kubeclient:1: Debian's python3 with the
# official Kubernetes client (python3-kubernetes), for the e2e test that runs
# the client in a pod with its in-cluster configuration. mmdebstrap makes the
# root filesystem from the package source apt uses (no registry), umoci packs
# it as an oci-archive. Prints the archive's path; rebuilds only when this
# script is newer than the cached archive.
set -euo pipefail

CACHE="${PINNACE_TEST_CACHE:-$HOME/.cache/pinnace-test}"
OUT="$CACHE/kubeclient.tar"
REF="pinnace-test/kubeclient:1"

if [ -s "$OUT" ] && [ "$OUT" -nt "$0" ]; then
  echo "$OUT"
  exit 0
fi
for tool in mmdebstrap umoci tar; do
  command -v "$tool" >/dev/null || { echo "test-kubeclient-image.sh: $tool not found (apt-get install mmdebstrap umoci)" >&2; exit 1; }
done
mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# shellcheck disable=SC2016  # "$1" is mmdebstrap's root directory
mmdebstrap --variant=apt --include=python3,python3-kubernetes \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook=': >"$1/etc/resolv.conf"; echo localhost >"$1/etc/hostname"' \
  --format=tar bookworm "$work/rootfs.tar" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -n 20 "$work/mmdebstrap.log" >&2; exit 1; }

layout="$work/oci"
umoci init --layout "$layout" >&2
umoci new --image "$layout:$REF" >&2
umoci raw add-layer --image "$layout:$REF" "$work/rootfs.tar" >&2
umoci config --image "$layout:$REF" --config.cmd python3 --config.workingdir / \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin >&2
umoci gc --layout "$layout" >&2
tar -C "$layout" --owner=0 --group=0 -cf "$work/archive.tar" oci-layout index.json blobs
mv -f "$work/archive.tar" "$OUT"
echo "$OUT"
