#!/usr/bin/env bash
# Builds the supervisor image: a statically linked botyard supervisor at
# /botyard and nothing else, written as an OCI image layout (no container
# engine needed). The binary is crates/supervisor (the `supervise` verb
# alone), so the static build stays small and quick.
#
#   bash scripts/supervisor-image.sh OUT_DIR [TAG]
#
# Push it with: skopeo copy oci:OUT_DIR:TAG docker://REGISTRY/botyard/supervisor:TAG
# Prints the static binary's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/supervisor-image.sh OUT_DIR [TAG]}
target=$(rustc -vV | sed -n 's/^host: //p')
# glibc's static libc: the binary maps no shared object and needs no loader.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" cargo build -q --release --locked \
  --config profile.release.debug=0 --target "$target" --target-dir target/static \
  -p botyard-supervisor >&2
bin=$PWD/target/static/$target/release/botyard-supervisor
tag=${2:-$("$bin" --version | awk '{print $2}')}
"$bin" supervise image "$out" --tag "$tag" >&2
echo "$bin"
