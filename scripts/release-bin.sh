#!/usr/bin/env bash
# Prints the path of the release botyard binary, wherever cargo puts its
# output (CARGO_TARGET_DIR, a config's target-dir, or ./target).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
echo "$dir/release/botyard"
