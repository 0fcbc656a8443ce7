#!/usr/bin/env bash
# Prints the path of a Debian bookworm minbase root filesystem, building it
# with debootstrap on first use (a few minutes) and reusing it afterwards.
# The mirror is the one apt on this machine already uses.
set -euo pipefail
CACHE=${BOTYARD_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/botyard-dev}
ROOT="$CACHE/debian-bookworm-minbase"
if [ -f "$ROOT.complete" ]; then
  echo "$ROOT"
  exit 0
fi
mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^(http|https|ftp|file):/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "$m"
}
MIRROR=${BOTYARD_DEBIAN_MIRROR:-$(mirror)}
if [ -z "$MIRROR" ]; then
  echo "debian-rootfs: no Debian mirror found in apt's sources; set BOTYARD_DEBIAN_MIRROR" >&2
  exit 1
fi
mkdir -p "$CACHE"
rm -rf "$ROOT" "$ROOT.tmp"
echo "debian-rootfs: building a bookworm minbase with debootstrap (a few minutes, once)" >&2
debootstrap --variant=minbase bookworm "$ROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
  echo "debian-rootfs: debootstrap failed; see $CACHE/debootstrap.log" >&2
  exit 1
}
mv "$ROOT.tmp" "$ROOT"
touch "$ROOT.complete"
echo "$ROOT"
