#!/usr/bin/env bash
# Builds the test image busybox:latest (also tagged busybox:1.36) without
# network: a rootfs made from Debian's busybox-static (/bin/busybox, relative
# applet symlinks, passwd and group with root and nobody, /tmp 1777), packed
# by umoci into an OCI layout and written as an oci-archive. The e2e tests
# import it or push it into a local registry. Prints the archive's path; rebuilds only when /bin/busybox
# or this script is newer than the cached archive.
set -euo pipefail

BUSYBOX="${BUSYBOX:-/bin/busybox}"
CACHE="${PINNACE_TEST_CACHE:-$HOME/.cache/pinnace-test}"
OUT="$CACHE/busybox.tar"
REF="busybox:latest"

if [ -s "$OUT" ] && [ "$OUT" -nt "$BUSYBOX" ] && [ "$OUT" -nt "$0" ]; then
  echo "$OUT"
  exit 0
fi
for tool in umoci tar; do
  command -v "$tool" >/dev/null || { echo "test-image.sh: $tool not found (apt-get install umoci)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "test-image.sh: $BUSYBOX not found (apt-get install busybox-static)" >&2; exit 1; }

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The root filesystem.
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var/tmp}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
install -m 0755 "$BUSYBOX" "$root/bin/busybox"
# `busybox --install -s` would make absolute links to /bin/busybox; relative
# ones keep the tree self-contained wherever it is unpacked.
"$BUSYBOX" --list-full | while read -r applet; do
  [ "$applet" = "bin/busybox" ] && continue
  dir="$(dirname "$applet")"
  mkdir -p "$root/$dir"
  case "$dir" in
    .) target=bin/busybox ;;
    bin) target=busybox ;;
    *) target="$(echo "$dir" | sed -e 's#[^/][^/]*#..#g')/bin/busybox" ;;
  esac
  [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s "$target" "$root/$applet"
done
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "hosts: files dns" >"$root/etc/nsswitch.conf"

# The OCI layout: one layer, then the config.
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$REF"
umoci insert --image "$layout:$REF" "$root" / >/dev/null
umoci config --image "$layout:$REF" \
  --config.cmd sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --author pinnace-test-image
# Also as busybox:1.36, the tag the e2e pod specs name (a non-latest tag: imagePullPolicy IfNotPresent).
umoci tag --image "$layout:$REF" busybox:1.36
umoci gc --layout "$layout"

tar -C "$layout" --owner=0 --group=0 -cf "$work/busybox.tar" oci-layout index.json blobs
mv -f "$work/busybox.tar" "$OUT"
echo "$OUT"
