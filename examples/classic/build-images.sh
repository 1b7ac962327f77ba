#!/usr/bin/env bash
# Builds the classic example's container images from Debian packages, with no
# container registry and no Docker:
#
#   pinnace-example/mysql:10.11 (also :latest)  MariaDB from Debian, started by an
#                                               entrypoint that behaves like the
#                                               official mysql image's
#   pinnace-example/myweb:v1, :v2               the web app in myweb/ (Python, PyMySQL)
#
# Each image is a Debian root filesystem made by mmdebstrap (one layer) plus a
# small layer with this directory's files, put together by umoci and written as an
# oci-archive that `pinnace image import` loads (one archive per repository).
# The two myweb tags share every layer and differ only in their config
# (MYWEB_VERSION=v1 or v2).
#
# Run it as root; it takes a minute or two the first time (mostly apt). Results
# are cached in ${PINNACE_EXAMPLES_CACHE:-$HOME/.cache/pinnace-examples}: a root
# filesystem is rebuilt when its package list or suite changes (or with
# --refresh, to pick up Debian updates), an image when its root filesystem,
# this script or its files change. Progress goes to stderr; the archives'
# paths, one a line, to stdout:
#
#   sudo examples/classic/build-images.sh
#   sudo pinnace image import $(sudo examples/classic/build-images.sh)   # on every node
#
# Options:
#   --refresh         rebuild the root filesystems (new Debian package versions)
#   --force           rebuild the images even if nothing changed
#   --upstream-names  also tag the images with the names the walk-through uses
#                     (mysql:5.7, mysql:latest, kubeguide/tomcat-app:v1 and :v2),
#                     so its manifests run unchanged against the local copies
#   -v, --verbose     show mmdebstrap's output instead of logging it to a file
#
# Environment:
#   PINNACE_EXAMPLES_CACHE   cache directory (see above)
#   PINNACE_EXAMPLES_SUITE   Debian suite (default bookworm)
#   PINNACE_EXAMPLES_MIRROR  mmdebstrap mirror argument (default: deb.debian.org
#                            with the suite's -updates and -security)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
CACHE="${PINNACE_EXAMPLES_CACHE:-$HOME/.cache/pinnace-examples}"
SUITE="${PINNACE_EXAMPLES_SUITE:-bookworm}"
MIRROR="${PINNACE_EXAMPLES_MIRROR:-}"
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

refresh=0 force=0 upstream=0 verbose=0
for arg in "$@"; do
  case "$arg" in
    --refresh) refresh=1 ;;
    --force) force=1 ;;
    --upstream-names) upstream=1 ;;
    -v|--verbose) verbose=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$self" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }
# stdout carries only the archives' paths.
umoci() { command umoci "$@" >&2; }
die() { printf 'build-images.sh: %s\n' "$*" >&2; exit 1; }
human() { numfmt --to=si --suffix=B "$1" 2>/dev/null || echo "${1}B"; }
hash_of() { sha256sum | cut -c1-16; }

[ "$(id -u)" = 0 ] || die "run me as root (mmdebstrap and umoci write files owned by other users)"
for tool in mmdebstrap umoci tar sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install mmdebstrap umoci)"
done

mkdir -p "$CACHE/rootfs" "$CACHE/images"
exec 9>"$CACHE/.lock"
flock -n 9 || { say "another build-images.sh is running; waiting for it"; flock 9; }
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

# --- root filesystems -------------------------------------------------------------------------------------

# Options both root filesystems are built with: no Recommends, no documentation,
# man pages or translations (as Debian's -slim images), and none of the build
# host's identity left behind. Changing them changes the cache key.
# shellcheck disable=SC2016  # the hooks' "$1" is mmdebstrap's (the root directory)
COMMON_OPTS=(
  --variant=apt
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --customize-hook='rm -f "$1/etc/hostname" "$1/etc/resolv.conf" && echo localhost >"$1/etc/hostname" && : >"$1/etc/resolv.conf" && chmod 0644 "$1/etc/hostname" "$1/etc/resolv.conf"'
)

# rootfs NAME PACKAGES [mmdebstrap options...]: prints the path of the cached
# tarball for these inputs, building it if it is missing (or with --refresh).
rootfs() {
  local name="$1" packages="$2"; shift 2
  local args=("${COMMON_OPTS[@]}" "$@" --include="$packages" --format=tar)
  local key
  key="$(printf '%s\n' "rootfs-v1" "$SUITE" "$MIRROR" "${args[@]}" | hash_of)"
  local out="$CACHE/rootfs/$name-$key.tar" log="$CACHE/rootfs/$name-$key.log"
  if [ -s "$out" ] && [ "$refresh" = 0 ]; then
    say "root filesystem $name: cached ($(human "$(stat -c %s "$out")"), $out)"
    echo "$out"
    return
  fi
  say "root filesystem $name: mmdebstrap $SUITE with $packages (log: $log)"
  local t0=$SECONDS tmp="$work/$name-rootfs.tar"
  local cmd=(mmdebstrap "${args[@]}" "$SUITE" "$tmp" ${MIRROR:+"$MIRROR"})
  if [ "$verbose" = 1 ]; then
    "${cmd[@]}" 2>&1 9>&- | tee "$log" >&2 || die "mmdebstrap failed for $name (log: $log)"
  elif ! "${cmd[@]}" >"$log" 2>&1 9>&-; then
    tail -n 20 "$log" >&2
    die "mmdebstrap failed for $name (whole log: $log)"
  fi
  mv -f "$tmp" "$out"
  # Older builds of the same root filesystem are of no more use.
  find "$CACHE/rootfs" -maxdepth 1 \( -name "$name-*.tar" -o -name "$name-*.log" \) ! -name "$name-$key.*" -delete
  say "root filesystem $name: built in $((SECONDS - t0)) s ($(human "$(stat -c %s "$out")"))"
  echo "$out"
}

# The version of a package in a root filesystem tarball.
package_version() {
  tar -xOf "$1" ./var/lib/dpkg/status | awk -v p="$2" '
    /^Package: / { f = ($2 == p) }
    f && /^Version: / && !v { v = $2 }
    END { print v }'
}

# --- images ---------------------------------------------------------------------------------------------

# up_to_date ARCHIVE KEY: whether ARCHIVE was built from inputs with this key.
up_to_date() {
  [ "$force" = 0 ] && [ -s "$1" ] && [ -f "$1.key" ] && [ "$(cat "$1.key")" = "$2" ]
}

# inputs_key ROOTFS FILES...: the key of an image built from this root
# filesystem, this script and those files.
inputs_key() {
  local rootfs="$1"; shift
  # The root filesystem by name (its inputs) and by size and time (a --refresh build).
  { echo "image-v1 upstream=$upstream $(basename "$rootfs") $(stat -c '%s %Y' "$rootfs")"; sha256sum "$self" "$@" | cut -d' ' -f1; } | hash_of
}

# finish LAYOUT ARCHIVE KEY: garbage-collect the layout and write it as an oci-archive.
finish() {
  local layout="$1" out="$2" key="$3"
  umoci gc --layout "$layout"
  tar -C "$layout" --owner=0 --group=0 -cf "$work/archive.tar" oci-layout index.json blobs
  mv -f "$work/archive.tar" "$out"
  echo "$key" >"$out.key"
}

# An overlay directory, packed as a layer by add_overlay: every directory in
# it is also an entry of the layer, so each must look like the image's own
# (root, 0755).
overlay_dir() {
  rm -rf "$1" && install -d -m 0755 -o 0 -g 0 "$1"
}

# add_overlay IMAGE DIR DESCRIPTION: DIR's contents as a new layer at /.
# (Packed by tar, not `umoci insert`: umoci 0.4.7's insert can write a layer
# whose last file lacks its tar padding and end-of-archive blocks, which
# strict tar readers, pinnace's among them, refuse.)
add_overlay() {
  local tarball="$work/overlay-layer.tar"
  tar -C "$2" --sort=name --numeric-owner -cf "$tarball" .
  umoci raw add-layer --image "$1" --history.author pinnace-examples --history.created_by "$3" "$tarball"
  rm -f "$tarball"
}

# The datadir is left empty (Debian's postinst initialised one, with root
# logging in through the socket only): the entrypoint makes it on first start.
rootfs_mysql() {
  # shellcheck disable=SC2016
  rootfs mysql mariadb-server \
    --customize-hook='rm -rf "$1"/var/lib/mysql/* "$1"/var/lib/mysql/.[!.]* && chroot "$1" chown mysql:mysql /var/lib/mysql'
}

rootfs_myweb() {
  rootfs myweb python3,python3-pymysql
}

build_mysql() {
  local rootfs="$1"
  local version full
  full="$(package_version "$rootfs" mariadb-server)"   # e.g. 1:10.11.19-0+deb12u1
  version="${full#*:}"; version="${version%%-*}"        # 10.11.19
  local minor="${version%.*}"                           # 10.11
  [ -n "$minor" ] || die "no mariadb-server in $rootfs"
  local out="$CACHE/images/mysql.tar" key
  key="$(inputs_key "$rootfs" "$here/mysql/docker-entrypoint.sh" "$here/mysql/container.cnf")"
  local tags=("pinnace-example/mysql:$minor" "pinnace-example/mysql:latest")
  [ "$upstream" = 0 ] || tags+=("mysql:5.7" "mysql:latest")
  if up_to_date "$out" "$key"; then
    say "image ${tags[*]}: up to date"
    echo "$out"
    return
  fi
  say "image ${tags[*]}: packing (MariaDB $version)"
  local t0=$SECONDS layout="$work/mysql-oci" ov="$work/mysql-overlay" ref
  ref="$layout:${tags[0]}"
  overlay_dir "$ov"
  install -d -m 0755 "$ov/usr" "$ov/usr/local" "$ov/usr/local/bin" "$ov/etc" "$ov/etc/mysql" \
    "$ov/etc/mysql/mariadb.conf.d" "$ov/docker-entrypoint-initdb.d"
  install -m 0755 "$here/mysql/docker-entrypoint.sh" "$ov/usr/local/bin/docker-entrypoint.sh"
  install -m 0644 "$here/mysql/container.cnf" "$ov/etc/mysql/mariadb.conf.d/99-container.cnf"
  # The socket's directory, for the mysql user (mmdebstrap leaves /run empty).
  local owner
  owner="$(tar -xOf "$rootfs" ./etc/passwd | awk -F: '$1 == "mysql" { print $3 ":" $4 }')"
  [ -n "$owner" ] || die "no mysql user in $rootfs"
  install -d -m 0755 "$ov/run"
  install -d -m 0755 -o "${owner%:*}" -g "${owner#*:}" "$ov/run/mysqld"
  umoci init --layout "$layout"
  umoci new --image "$ref"
  umoci raw add-layer --image "$ref" --history.author pinnace-examples \
    --history.created_by "mmdebstrap $SUITE --include=mariadb-server (MariaDB $full)" "$rootfs"
  add_overlay "$ref" "$ov" "COPY docker-entrypoint.sh container.cnf"
  umoci config --image "$ref" --author pinnace-examples \
    --history.created_by 'ENTRYPOINT ["docker-entrypoint.sh"] CMD ["mariadbd"] EXPOSE 3306' \
    --config.entrypoint /usr/local/bin/docker-entrypoint.sh \
    --config.cmd mariadbd \
    --config.exposedports 3306/tcp \
    --config.env "$PATH_ENV" \
    --config.env "MARIADB_VERSION=$full" \
    --config.volume /var/lib/mysql \
    --config.stopsignal SIGTERM \
    --config.label org.opencontainers.image.title=pinnace-example/mysql \
    --config.label "org.opencontainers.image.description=MariaDB from Debian $SUITE with a mysql-image-like entrypoint (pinnace classic example)" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.base.name=debian:$SUITE"
  local t
  for t in "${tags[@]:1}"; do umoci tag --image "$ref" "$t"; done
  finish "$layout" "$out" "$key"
  say "image ${tags[*]}: written in $((SECONDS - t0)) s ($(human "$(stat -c %s "$out")") compressed, $out)"
  echo "$out"
}

build_myweb() {
  local rootfs="$1"
  local out="$CACHE/images/myweb.tar" key
  key="$(inputs_key "$rootfs" "$here/myweb/app.py")"
  local names="pinnace-example/myweb:v1 pinnace-example/myweb:v2"
  [ "$upstream" = 0 ] || names+=" kubeguide/tomcat-app:v1 kubeguide/tomcat-app:v2"
  if up_to_date "$out" "$key"; then
    say "image ${names}: up to date"
    echo "$out"
    return
  fi
  say "image ${names}: packing"
  local t0=$SECONDS layout="$work/myweb-oci" ov="$work/myweb-overlay"
  local v1="$layout:pinnace-example/myweb:v1"
  overlay_dir "$ov"
  install -d -m 0755 "$ov/app"
  install -m 0644 "$here/myweb/app.py" "$ov/app/app.py"
  umoci init --layout "$layout"
  umoci new --image "$v1"
  umoci raw add-layer --image "$v1" --history.author pinnace-examples \
    --history.created_by "mmdebstrap $SUITE --include=python3,python3-pymysql" "$rootfs"
  add_overlay "$v1" "$ov" "COPY app.py /app/"
  umoci config --image "$v1" --author pinnace-examples \
    --history.created_by 'ENTRYPOINT ["python3", "/app/app.py"] WORKDIR /app USER 65534:65534 EXPOSE 8080' \
    --config.entrypoint /usr/bin/python3 --config.entrypoint /app/app.py \
    --config.workingdir /app \
    --config.user 65534:65534 \
    --config.exposedports 8080/tcp \
    --config.env "$PATH_ENV" \
    --config.env PYTHONUNBUFFERED=1 \
    --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.env MYWEB_LISTEN=0.0.0.0:8080 \
    --config.env MYWEB_VERSION=v1 \
    --config.label org.opencontainers.image.title=pinnace-example/myweb \
    --config.label "org.opencontainers.image.description=The classic example's web app: records in MySQL (pinnace)" \
    --config.label org.opencontainers.image.version=v1 \
    --config.label "org.opencontainers.image.base.name=debian:$SUITE"
  # v2: the same layers, another version in the config.
  umoci config --image "$v1" --tag pinnace-example/myweb:v2 --author pinnace-examples \
    --history.created_by 'ENV MYWEB_VERSION=v2' \
    --config.env MYWEB_VERSION=v2 \
    --config.label org.opencontainers.image.version=v2
  [ "$upstream" = 0 ] || {
    umoci tag --image "$v1" kubeguide/tomcat-app:v1
    umoci tag --image "$layout:pinnace-example/myweb:v2" kubeguide/tomcat-app:v2
  }
  finish "$layout" "$out" "$key"
  say "image ${names}: written in $((SECONDS - t0)) s ($(human "$(stat -c %s "$out")") compressed, $out)"
  echo "$out"
}

# The root filesystems do not depend on each other: both at once (apt mostly waits on the network).
rootfs_mysql >"$work/mysql.rootfs" &
mysql_job=$!
rootfs_myweb >"$work/myweb.rootfs" &
myweb_job=$!
failed=0
wait "$mysql_job" || failed=1
wait "$myweb_job" || failed=1
[ "$failed" = 0 ] || die "a root filesystem could not be built (see above)"

mysql_archive="$(build_mysql "$(cat "$work/mysql.rootfs")")"
myweb_archive="$(build_myweb "$(cat "$work/myweb.rootfs")")"
say "done in $((SECONDS - started)) s; load the images on every node with:"
say "  pinnace image import $mysql_archive $myweb_archive"
echo "$mysql_archive"
echo "$myweb_archive"
