#!/usr/bin/env bash
# Installs the Debian packages botyard's quickstart, tests and benchmarks use.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(debootstrap attr python3 skopeo umoci docker-registry busybox-static zstd xz-utils
      xfsprogs btrfs-progs e2fsprogs util-linux time rsync rmlint runc bubblewrap systemd
      python3-venv apache2-utils libc6-dev curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Rust toolchain components used by CI.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
# The Kubernetes checks' tools, pinned, in a virtualenv of the repository's
# own: the Helm SDK (renders and lints the chart with no cluster and no
# helm binary) and the Kubernetes schemas (strict validation, 1.25 to 1.37).
PYTOOLS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.2)
if ! .venv-tools/bin/python -c "import helm_python, kubernetes_validate, yaml" 2>/dev/null; then
  echo "deps: installing ${PYTOOLS[*]} into .venv-tools" >&2
  python3 -m venv .venv-tools
  .venv-tools/bin/pip install -q --disable-pip-version-check "${PYTOOLS[@]}"
fi
