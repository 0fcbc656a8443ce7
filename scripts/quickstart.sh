#!/usr/bin/env bash
# botyard's main job, end to end, on its embedded default: a store in a local
# directory, no daemon. Builds a Debian bookworm minbase with debootstrap
# (once, cached), imports it as an image (and again as a tarball, to show that
# nothing is stored twice), creates three bots from it, installs the same
# real Debian package (jq) in each with dpkg plus files of each bot's own,
# commits them, and shows that the fleet stores the package once. Then an
# agent (a shell script) runs in a runc sandbox on one bot with a small
# project as its workspace; bot diff, workspace diff and the sync gate show
# what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked -q
B=$(bash scripts/release-bin.sh)
export BOTYARD_HOME=${BOTYARD_HOME:-$PWD/target/quickstart/store}
ROOTFS=$(bash scripts/debian-rootfs.sh)
step() { printf '\n$'; printf ' %q' "$@"; printf '\n'; "$@"; }

step "$B" init
step "$B" image import debian:bookworm --dir "$ROOTFS"
TARBALL=$(dirname "$BOTYARD_HOME")/bookworm.tar.zst
tar --xattrs --xattrs-include='*' --numeric-owner --format=pax -C "$ROOTFS" -c . | zstd -q -T0 -f -o "$TARBALL"
step "$B" image import debian:bookworm-tar --tar "$TARBALL"
step "$B" image ls
step "$B" image inspect debian:bookworm

# The same real package for every bot, fetched from the mirror apt uses.
DEBS=$(dirname "$BOTYARD_HOME")/debs
mkdir -p "$DEBS"
( cd "$DEBS" && { apt-get download -q jq libjq1 libonig5 >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download -q jq libjq1 libonig5 >/dev/null; }; } )
for id in bot1 bot2 bot3; do
  "$B" bot rm --force "$id" >/dev/null 2>&1 || true
  step "$B" bot create "$id" --image debian:bookworm
  step "$B" bot mount "$id" --dev   # a chroot uses the image's own /dev
  ROOT=$BOTYARD_HOME/bots/$id/root
  cp "$DEBS"/*.deb "$ROOT/tmp/"
  step chroot "$ROOT" /bin/sh -c "dpkg -i /tmp/*.deb >/dev/null && rm /tmp/*.deb && jq --version"
  step chroot "$ROOT" /bin/sh -c "echo 'notes of $id' > /root/notes.txt && head -c 2000000 /dev/urandom > /root/own.bin"
  step "$B" bot unmount "$id"
done
step "$B" bot diff bot1 --stat
step "$B" bot commit --all
step "$B" bot ls
step "$B" df
step "$B" fsck

# An agent at work: a sandbox on bot1 (runc, non-root, no network), a
# project shown at /workspace through an overlay, every change audited.
PROJECT=$(dirname "$BOTYARD_HOME")/project
rm -rf "$PROJECT"; mkdir -p "$PROJECT"
printf '# demo\n\nStatus: TODO\n' > "$PROJECT/README.md"
chown -R 1000:1000 "$PROJECT"
"$B" workspace rm --force demo >/dev/null 2>&1 || true
step "$B" workspace create demo --project "$PROJECT"
AGENT='echo "agent running as $(id -u) on $(hostname)";
  dpkg-query -W -f "\${Package}\n" | wc -l > /tmp/package-count;
  jq -n --arg n "$(cat /tmp/package-count)" "{packages: \$n}" > report.json;
  sed -i "s/TODO/done/" README.md;
  echo "report written"'
step "$B" run bot1 --workspace demo -- sh -c "$AGENT"
step "$B" bot diff bot1
step "$B" workspace diff demo
step "$B" workspace sync demo --yes
step "$B" workspace log demo
step "$B" workspace unmount demo
step cat "$PROJECT/README.md" "$PROJECT/report.json"
