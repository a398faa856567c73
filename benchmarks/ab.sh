#!/usr/bin/env bash
# Rows of benchmarks/core.py on two commits, their runs interleaved (before, after,
# before, after, ...) on this machine, so that its drift over the minutes falls on both
# alike. Each commit runs from a worktree of its own, imported ahead of the installed
# package (PYTHONPATH); the venv is this checkout's.
#
#   benchmarks/ab.sh ROWS RUNS BEFORE [AFTER]     e.g. benchmarks/ab.sh 5,6 3 145a783
#
# AFTER defaults to this work tree as it is. DATABASES (default postgres) is passed on.
set -euo pipefail
rows=$1 runs=$2 before=$3 after=${4:-}
here=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
cleanup() {
  git -C "$here" worktree remove --force "$scratch/before" 2>/dev/null || true
  if [ -n "$after" ]; then
    git -C "$here" worktree remove --force "$scratch/after" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
git -C "$here" worktree add -q --detach "$scratch/before" "$before"
after_dir=$here
if [ -n "$after" ]; then
  git -C "$here" worktree add -q --detach "$scratch/after" "$after"
  after_dir=$scratch/after
fi
for run in $(seq 1 "$runs"); do
  for side in before after; do
    dir=$scratch/before
    [ "$side" = after ] && dir=$after_dir
    echo "== $side, run $run"
    PYTHONPATH=$dir/src "$here/.venv/bin/python" "$dir/benchmarks/core.py" \
      --rows "$rows" --databases "${DATABASES:-postgres}" --runs 1 | grep -E '^- '
  done
done
