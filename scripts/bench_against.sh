#!/usr/bin/env bash
# Compare this tree with another revision on the same machine, in one run: the two
# alternate (old, new, old, new) so that drift of a shared machine hits both alike.
#   bash scripts/bench_against.sh REV [bench options...] > /tmp/compare.txt
# e.g. bash scripts/bench_against.sh 5420b9b --size 1280x720 --frames 300 --live-seconds 14
# The old revision is checked out in a temporary git worktree and run with this tree's
# virtual environment (its dependencies must not have changed in between).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench_against.sh REV [bench options...]}
shift
old=$(mktemp -d /tmp/mattecam-old-XXXXXX)
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git worktree add --detach --force "$old" "$rev" >/dev/null
clip=../shared/data/videos/speed/s18_1280x720.mp4
in=()
[ -f "$clip" ] && in=(--input "$clip")
for round in 1 2; do
    for tree in old new; do
        src=$PWD/src
        [ "$tree" = old ] && src=$old/src
        echo "## $tree ($([ "$tree" = old ] && echo "$rev" || git rev-parse --short HEAD)+worktree), round $round"
        PYTHONPATH=$src .venv/bin/python -m mattecam bench "${in[@]}" "$@"
    done
done
