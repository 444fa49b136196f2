#!/usr/bin/env bash
# The timer benchmark: N sleepers (default 1,000,000) each sleep a uniformly random time in
# [0, 1) s (fixed seed), in Go (goroutines, time.Sleep, GOMAXPROCS=1 unless set), Boost.Fiber
# (fibers, this_fiber::sleep_for) and any extra programs. It builds only the Go program;
# timer_boost_fiber must already be built in $BUILD_DIR/bench. It is a report: it exits 0 even
# when a goal is missed, and non-zero only when a program fails (or is missing).
#
#   BUILD_DIR=/work/main/build/release bench/timers/run.sh
#   TIMER_EXTRA="ours=/path/to/timer_ours" TIMER_COUNT=10000 BUILD_DIR=... bench/timers/run.sh
#
# Every program runs with TIMER_COUNT=N in its environment (set it to override N; default
# 1,000,000), sleeps N sleepers, and prints on stdout three lines `cpp <label> <figure> <value>`
# (the label is replaced by the system's name here):
#   timer_overhead_ns       (when the last sleeper finished - the latest deadline) / N, where a
#                           sleeper's deadline = when it called sleep + its duration
#   timer_bytes_per_sleeper (VmRSS once every sleeper has started sleeping - VmRSS before the
#                           first was spawned) / N
#   timer_cpu_ns_per_timer  process CPU time from the start of spawning to the end / N
# TIMER_ROUNDS (default 1: a run at N = 1,000,000 takes 10-90 s here) runs each program that
# many times, alternating; the median is reported. At N = 1,000,000 Boost.Fiber needs about
# 7 GB of memory.
#
# Output: `cpp <system> <figure> <value>` for go, boost_fiber and the extra systems; if one is
# named `ours`:
#   cpp goal timer_overhead_ns <ours> <= 500 met|MISSED
#   cpp goal timer_overhead_ns <ours/go> <= 0.5 met|MISSED
set -uo pipefail

BUILD_DIR=${BUILD_DIR:-/work/main/build/release}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$BUILD_DIR/bench
rounds=${TIMER_ROUNDS:-1}
export TIMER_COUNT=${TIMER_COUNT:-1000000}
export GOMAXPROCS=${GOMAXPROCS:-1}
failed=0

note() { echo "timers/run: $*" >&2; }

requested=() names=() programs=()
add_system() {
    requested+=("$1")
    if [[ -x $2 ]]; then
        names+=("$1") programs+=("$2")
    else
        note "$1: $2 is not built or not executable; skipped"
        failed=1
    fi
}

# Standard library only, no network: no proxy, and a cache and GOPATH of our own.
rm -f "$bin/timer_go"  # not last time's, if this build fails
if ! command -v go >/dev/null 2>&1 ||
    ! (cd "$here/go" && GOPROXY=off GO111MODULE=on GOFLAGS='' GOCACHE="$bin/go-cache" \
        GOPATH="$bin/go-path" go build -o "$bin/timer_go" .); then
    note "no Go toolchain, or go build failed"
fi
add_system go "$bin/timer_go"
add_system boost_fiber "$bin/timer_boost_fiber"
for extra in ${TIMER_EXTRA:-}; do  # name=path, separated by blanks
    add_system "${extra%%=*}" "${extra#*=}"
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT
start=$SECONDS
for ((round = 0; round < rounds; round++)); do
    for j in "${!names[@]}"; do
        k=$(((j + round) % ${#names[@]}))
        output=$("${programs[k]}")
        status=$?
        lines=$(awk -v name="${names[k]}" '$1 == "cpp" && $3 ~ /^timer_/ { print "cpp", name, $3, $4 }' \
            <<<"$output")
        if ((status != 0)) || (($(wc -l <<<"$lines") != 3)); then
            note "${names[k]} failed (status $status) or printed not the three figures"
            failed=1
            continue
        fi
        echo "$lines" >&2
        echo "$lines" >>"$results"
    done
done
note "the timer benchmark took $((SECONDS - start)) s (N = $TIMER_COUNT)"

awk -v systems="${names[*]}" -v requested="${requested[*]}" '
    { key = $2 " " $3; n[key]++; v[key, n[key]] = $4 + 0 }
    function median(key,    m, i, j, t, w) {
        m = n[key]
        for (i = 1; i <= m; i++) w[i] = v[key, i]
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && w[j - 1] > w[j]; j--) { t = w[j]; w[j] = w[j - 1]; w[j - 1] = t }
        return m % 2 ? w[(m + 1) / 2] : (w[m / 2] + w[m / 2 + 1]) / 2
    }
    END {
        ns = split(systems, sys, " ")
        nf = split("timer_overhead_ns timer_bytes_per_sleeper timer_cpu_ns_per_timer", fig, " ")
        for (s = 1; s <= ns; s++)
            for (f = 1; f <= nf; f++)
                if ((sys[s] " " fig[f]) in n) {
                    value[sys[s] " " fig[f]] = sprintf("%.1f", median(sys[s] " " fig[f]))
                    print "cpp " sys[s] " " fig[f] " " value[sys[s] " " fig[f]]
                }
        if (requested !~ /(^| )ours( |$)/) exit  # goals only if ours was asked for
        # The printed (rounded) values are the ones compared, so each line agrees with itself.
        ours = "ours timer_overhead_ns"
        go = "go timer_overhead_ns"
        r = ours in value ? value[ours] : "n/a"
        print "cpp goal timer_overhead_ns " r " <= 500 " (r != "n/a" && r + 0 <= 500 ? "met" : "MISSED")
        r = ours in value && go in value && value[go] > 0 ? sprintf("%.3f", value[ours] / value[go]) : "n/a"
        print "cpp goal timer_overhead_ns " r " <= 0.5 " (r != "n/a" && r + 0 <= 0.5 ? "met" : "MISSED")
    }
' "$results"
exit "$failed"
