#!/usr/bin/env bash
# Build the offline base image (Debian bookworm + Python 3.11) with debootstrap and `docker import`,
# for machines that reach a Debian mirror but no image registry. Usage: build-base.sh [TAG]
# The mirror is the host's own apt source, so nothing here names a mirror.
set -euo pipefail
tag=${1:-fmu-gateway-base:bookworm}
cache=${FMU_GATEWAY_IMAGE_CACHE:-/var/cache/fmu-gateway-images}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # deb822 sources (URIs:) first, then one-line sources; take the first plain Debian archive.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "no Debian mirror found in the host's apt sources; set DEBIAN_MIRROR" >&2; exit 1; }

mkdir -p "$cache"
tarball="$cache/base-bookworm.tar"
if [ ! -s "$tarball" ]; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  # python3-venv brings ensurepip, so images make their own venv; ca-certificates for TLS clients.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tarball" "$tag"
echo "built $tag from $tarball"
