#!/usr/bin/env bash
# The whole test suite. Run as root: the tests mount filesystems, create
# device nodes and set trusted xattrs (tests that need root say so and skip
# otherwise). Installs the Debian packages the tests use first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo test --workspace --locked "$@"
