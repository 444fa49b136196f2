#!/usr/bin/env bash
# Runs the native benchmarks (ours, Boost.Fiber, Go) and compares ours with Boost.Fiber against
# the project's goals. It builds only the Go program; bench_ours and bench_boost_fiber must
# already be built in $BUILD_DIR/bench. It is a report: it exits 0 even when a goal is missed.
#
#   BUILD_DIR=/work/main/build/release bench/run_native.sh
#
# Output: the programs' lines `cpp <system> <figure> <value>`, then
# `cpp ours/boost_fiber <figure> <ratio>` and `cpp goal <figure> <ratio> <= <limit> met|MISSED`.
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
exit 0
