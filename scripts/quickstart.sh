#!/usr/bin/env bash
# botyard's main job, end to end, on its embedded default: a store in a local
# directory, no daemon. Builds a Debian bookworm minbase with debootstrap
# (once, cached), imports it as an image, imports it again as a tarball to
# show that nothing is stored twice, and prints the store's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked -q
B=$PWD/target/release/botyard
export BOTYARD_HOME=${BOTYARD_HOME:-$PWD/target/quickstart/store}
ROOTFS=$(bash scripts/debian-rootfs.sh)
step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$B" init
step "$B" image import debian:bookworm --dir "$ROOTFS"
TARBALL=$(dirname "$BOTYARD_HOME")/bookworm.tar.zst
tar --xattrs --xattrs-include='*' --numeric-owner --format=pax -C "$ROOTFS" -c . | zstd -q -T0 -f -o "$TARBALL"
step "$B" image import debian:bookworm-tar --tar "$TARBALL"
step "$B" image ls
step "$B" image inspect debian:bookworm
step "$B" df
step "$B" fsck
