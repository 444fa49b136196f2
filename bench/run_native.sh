#!/usr/bin/env bash
# Runs the native benchmarks (ours, Boost.Fiber, Go) and compares ours with Boost.Fiber against
# the project's goals. It builds only the Go program; bench_ours and bench_boost_fiber must
# already be built in $BUILD_DIR/bench. It is a report: it exits 0 even when a goal is missed.
#
#   BUILD_DIR=/work/main/build/release bench/run_native.sh
#   SCALE_KS="10 100" BUILD_DIR=... bench/run_native.sh   (the scale part at these k only)
#
# Output: the programs' lines `cpp <system> <figure> <value>`, then
# `cpp ours/boost_fiber <figure> <ratio>` and `cpp goal <figure> <ratio> <= <limit> met|MISSED`.
# Then the scale part (workloads defined at the top of bench/harness.hpp): for each k of SCALE_KS
# (default 10 100 1000 10000 100000 1000000) each program's `--scale k` lines, then
# `cpp goal schedule_k<k>_ns <ours> <= <limit> met|MISSED` with limit 0.5 x the lower of Boost's
# and Go's figures at that k, the same for wake_k<k>_ns, and `cpp goal bytes_k1000000 <ours> <=
# 1073.7 met|MISSED` (1 GiB per million tasklets). A side-by-side table of the scale figures and
# the time the scale part took go to stderr. The scale part takes about 3 minutes on this
# project's 2-core machine; at k = 1,000,000 Boost needs about 12 GB of memory and Go about 3 GB.
set -uo pipefail

BUILD_DIR=${BUILD_DIR:-/work/main/build/release}
bench_src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$BUILD_DIR/bench

note() { echo "run_native: $*" >&2; }

programs=()
for program in "$bin/bench_ours" "$bin/bench_boost_fiber"; do
    if [[ -x $program ]]; then programs+=("$program"); else note "$program is not built; skipped"; fi
done

# Standard library only, no network: no proxy, and a cache and GOPATH of our own.
if command -v go >/dev/null 2>&1; then
    mkdir -p "$bin"
    if (cd "$bench_src/go" && GOPROXY=off GO111MODULE=on GOFLAGS='' \
            GOCACHE="$bin/go-cache" GOPATH="$bin/go-path" go build -o "$bin/bench_go" .); then
        programs+=("$bin/bench_go")
    else
        note "go build failed; Go skipped"
    fi
else
    note "no Go toolchain; Go skipped"
fi

# Each program runs its three timing workloads in one process; memory gets a fresh process.
# The systems alternate so that slow drifts of a shared machine hit them alike.
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for mode in --time --memory; do
    for program in "${programs[@]}"; do
        "$program" "$mode" | tee -a "$results"
        status=${PIPESTATUS[0]}
        ((status == 0)) || note "$(basename "$program") $mode exited with status $status"
    done
done

awk '
    { value[$2 " " $3] = $4 }
    END {
        n = split("pingpong_ns_per_transfer schedule_ns_per_switch spawn_run_ns_per_tasklet " \
                  "memory_bytes_per_blocked_tasklet", figure, " ")
        split("0.2 0.5 0.25 0.11", limit, " ")
        for (i = 1; i <= n; i++) {
            f = figure[i]
            if (("ours " f) in value && ("boost_fiber " f) in value && value["boost_fiber " f] > 0) {
                ratio[f] = sprintf("%.3f", value["ours " f] / value["boost_fiber " f])
                print "cpp ours/boost_fiber " f " " ratio[f]
            } else {
                print "run_native: no ratio for " f " (a figure is missing)" > "/dev/stderr"
            }
        }
        for (i = 1; i <= n; i++) {
            f = figure[i]
            # The printed (rounded) ratio is the one compared, so each line agrees with itself.
            if (f in ratio) verdict = (ratio[f] + 0 <= limit[i] + 0) ? "met" : "MISSED"
            else verdict = "MISSED"
            print "cpp goal " f " " (f in ratio ? ratio[f] : "n/a") " <= " limit[i] " " verdict
        }
    }
' "$results"

# The scale part: one fresh process per program and k (so that no k's pools and heap hide in
# another's baseline); the order of the systems rotates with k, so that slow drifts of a shared
# machine hit them alike.
read -r -a ks <<<"${SCALE_KS:-10 100 1000 10000 100000 1000000}"
scale_results=$(mktemp)
trap 'rm -f "$results" "$scale_results"' EXIT
scale_start=$SECONDS
for i in "${!ks[@]}"; do
    k=${ks[i]}
    for j in "${!programs[@]}"; do
        program=${programs[(i + j) % ${#programs[@]}]}
        "$program" --scale "$k" | tee -a "$scale_results"
        status=${PIPESTATUS[0]}
        if ((status > 128)); then
            why="killed by signal $((status - 128))"
            ((status == 137)) && why+=" (SIGKILL: out of memory?)"
            note "$(basename "$program") --scale $k was $why; its figures at this k are missing"
        elif ((status != 0)); then
            note "$(basename "$program") --scale $k exited with status $status"
        fi
    done
done
note "the scale part took $((SECONDS - scale_start)) s"

awk -v ks="${ks[*]}" '
    { value[$2 " " $3] = $4 }
    function shown(sys, f) { return (sys " " f) in value ? value[sys " " f] : "-" }
    # Goal: ours <= 0.5 x the lower of the other systems at that k (those that were measured).
    function versus_others(f,    best, limit, s, n, other) {
        n = split("boost_fiber go", other, " ")
        best = ""
        for (s = 1; s <= n; s++)
            if ((other[s] " " f) in value && (best == "" || value[other[s] " " f] + 0 < best + 0))
                best = value[other[s] " " f]
        if (best == "") print "run_native: no figure of Boost or Go for " f > "/dev/stderr"
        limit = best == "" ? "n/a" : sprintf("%.1f", 0.5 * best)
        goal(f, limit)
    }
    # The printed (rounded) values are the ones compared, so each line agrees with itself.
    function goal(f, limit,    verdict) {
        verdict = ("ours " f) in value && limit != "n/a" && value["ours " f] + 0 <= limit + 0
        print "cpp goal " f " " shown("ours", f) " <= " limit " " (verdict ? "met" : "MISSED")
    }
    END {
        n = split(ks, k, " ")
        printf "%-8s %27s %27s %27s\n", "", "schedule ns/switch", "wake ns/wake", \
               "bytes/blocked tasklet" > "/dev/stderr"
        printf "%-8s", "k" > "/dev/stderr"
        for (c = 0; c < 3; c++) printf " %8s %9s %8s", "ours", "boost", "go" > "/dev/stderr"
        printf "\n" > "/dev/stderr"
        for (i = 1; i <= n; i++) {
            printf "%-8s", k[i] > "/dev/stderr"
            split("schedule_k" k[i] "_ns wake_k" k[i] "_ns bytes_k" k[i], f, " ")
            for (c = 1; c <= 3; c++)
                printf " %8s %9s %8s", shown("ours", f[c]), shown("boost_fiber", f[c]),
                       shown("go", f[c]) > "/dev/stderr"
            printf "\n" > "/dev/stderr"
        }
        for (i = 1; i <= n; i++) {
            versus_others("schedule_k" k[i] "_ns")
            versus_others("wake_k" k[i] "_ns")
        }
        for (i = 1; i <= n; i++) if (k[i] == 1000000) goal("bytes_k1000000", "1073.7")
    }
' "$scale_results"
exit 0
