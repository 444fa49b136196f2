#!/usr/bin/env bash
# Compares two builds of this project side by side, alternating them so that the shared machine's
# drift hits both alike: the Python figures of `bench/python/bench.py ours` and the native ones
# of `bench_ours --time`, ROUNDS times each, then the medians and their ratio (after / before).
#
#   bench/ab.sh BEFORE_TREE AFTER_TREE [ROUNDS]     (trees built with `make build`)
#
# e.g. `git worktree add /tmp/before abd7fe6 && make -C /tmp/before build && bench/ab.sh /tmp/before .`
set -euo pipefail
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
rounds=${3:-5}
out=$(mktemp)
for ((round = 1; round <= rounds; ++round)); do
    for side in before after; do
        tree=${!side}
        "$tree/stackless" "$tree/bench/python/bench.py" ours 2>/dev/null |
            grep -E '^python ours (pingpong|schedule_ns|spawn_run|sleepsort|memory)' |
            sed "s/^/$side /" >>"$out"
        "$tree/build/release/bench/bench_ours" --time 2>/dev/null | sed "s/^/$side /" >>"$out"
    done
done
/usr/bin/python3 - "$out" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, lang, system, figure, value = line.split()[:5]
    if system == "ours":
        runs[(lang, figure, side)].append(float(value))
for lang, figure in sorted({(l, f) for l, f, _ in runs}):
    b, a = runs[(lang, figure, "before")], runs[(lang, figure, "after")]
    if b and a:
        mb, ma = statistics.median(b), statistics.median(a)
        print("%-6s %-36s before %9.1f after %9.1f ratio %.3f" % (lang, figure, mb, ma, ma / mb))
PY
rm -f "$out"
