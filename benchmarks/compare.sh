#!/usr/bin/env bash
# The speed benchmarks on an earlier revision and on the working tree, alternating, on this machine:
#
#   bash benchmarks/compare.sh REV [ROUNDS]
#
# Each round runs `benchmarks.analyze_latency` (30 runs) and `benchmarks.worker_throughput`
# (2 one-thread workers, 16 and 32 submitters, 300 jobs) on REV (checked out in a temporary git
# worktree, removed afterwards) and then on the working tree. Nothing else should run meanwhile.
set -euo pipefail
rev=${1:?usage: bash benchmarks/compare.sh REV [ROUNDS]}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
tmp=$(mktemp -d)
git -C "$root" worktree add -q --detach "$tmp/before" "$rev"
trap 'git -C "$root" worktree remove --force "$tmp/before"; rm -rf "$tmp"' EXIT
label() { git -C "$1" log -1 --format='%h %s' | cut -c1-60; }
for round in $(seq "$rounds"); do
  for side in before after; do
    dir=$tmp/before
    [ "$side" = after ] && dir=$root
    echo "== round $round, $side: $(label "$dir")$([ "$side" = after ] && ! git -C "$root" diff --quiet HEAD && echo ' + uncommitted changes' || true)"
    (cd "$dir" && PYTHONPATH=$dir "$py" -m benchmarks.analyze_latency --runs 30)
    (cd "$dir" && PYTHONPATH=$dir "$py" -m benchmarks.worker_throughput --workers 2 --concurrency 16 32 --jobs 300)
  done
done
