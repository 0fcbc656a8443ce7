#!/usr/bin/env bash
# Workspace review cost: `workspace diff --stat` and `workspace sync
# --dry-run` on a 100,000-file project in which an agent changed 1,000
# files (900 edits, 50 new files, 50 deletions), side by side with
# `rsync -n` of the same upper dir onto the project, in one run.
#
#   bash bench/workspace.sh [RUNS]     (median of RUNS runs, default 5)
#
# Only the upper dir is walked, so the cost follows the change, not the
# project. Results go to bench/results/workspace.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-5}
W=$PWD/bench/cache/workspace
export BOTYARD_HOME=$W/store
cleanup() { "$B" workspace unmount -q bench 2>/dev/null || true; }
trap cleanup EXIT
[ -d "$BOTYARD_HOME" ] && cleanup
rm -rf "$W"; mkdir -p "$W"
python3 - "$W/project" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, f"pkg{d // 100}", f"mod{d}")
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f"file{f}.txt"), "w") as fh:
            fh.write(f"module {d} file {f}\n" * 8)
PY
"$B" init -q
"$B" workspace create -q bench --project "$W/project"
s=$(date +%s.%N); "$B" workspace mount -q bench; mount_s=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b-a}')
R=$BOTYARD_HOME/workspaces/bench/root
python3 - "$R" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(1000):
    m = (i * 7) % 1000  # 1,000 different modules
    d = os.path.join(root, f"pkg{m // 100}", f"mod{m}")
    if i < 900:
        with open(os.path.join(d, f"file{i % 100}.txt"), "a") as fh:
            fh.write("an agent's edit\n")
    elif i < 950:
        with open(os.path.join(d, f"new{i}.txt"), "w") as fh:
            fh.write("a new file\n")
    else:
        os.remove(os.path.join(d, f"file{i % 100}.txt"))
PY
changes=$("$B" workspace diff bench --stat | tail -n1)
upper=$BOTYARD_HOME/workspaces/bench/upper
time_of() { /usr/bin/time -o "$W/time" -f '%e %M' "$@" >/dev/null 2>&1; cat "$W/time"; }
declare -A S M
for run in $(seq "$RUNS"); do
  read -r s m < <(time_of "$B" workspace diff bench --stat); S[diff]+="$s "; M[diff]=$m
  read -r s m < <(time_of "$B" workspace sync bench --dry-run); S[sync]+="$s "; M[sync]=$m
  read -r s m < <(time_of rsync -rn --out-format=%n "$upper/" "$W/project/"); S[rsync]+="$s "; M[rsync]=$m
done
med() { echo "${S[$1]}" | tr ' ' '\n' | grep . | median; }
base=$(med rsync)
{
  echo "## Workspace review cost"
  echo
  echo "Project: 100,000 files in 1,000 directories; the agent changed 1,000 ($changes in \`diff --stat\`: 900 edits, 50 new, 50 deleted); median of $RUNS runs; $(nproc) cores; \`workspace mount\` (recording the project's tree the first time) took $mount_s s."
  echo
  echo "| command | seconds | vs rsync -n | peak RSS |"
  echo "| --- | --- | --- | --- |"
  echo "| \`rsync -rn\` of the upper onto the project (baseline) | $base | 1.00× | $((M[rsync] / 1024)) MiB |"
  for k in diff sync; do
    name=$([ "$k" = diff ] && echo '`workspace diff --stat`' || echo '`workspace sync --dry-run`')
    echo "| $name | $(med "$k") | $(awk -v a="$(med "$k")" -v b="$base" 'BEGIN {printf "%.2f", a/b}')× | $((M[$k] / 1024)) MiB |"
  done
} | tee bench/results/workspace.md
