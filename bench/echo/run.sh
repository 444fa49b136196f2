#!/usr/bin/env bash
# The loopback echo benchmark: echo servers (epoll in C, Go's net package, Boost.Asio with
# stackful coroutines, and any extra ones) under the same load generator, side by side. It
# builds only the Go server; echo_loadgen, echo_epoll_server and echo_asio_server must already
# be built in $BUILD_DIR/bench. It is a report: it exits 0 even when a goal is missed, and
# non-zero only when a server or the load generator fails (or is missing).
#
#   BUILD_DIR=/work/main/build/release bench/echo/run.sh
#   ECHO_EXTRA_SERVERS="ours=/path/to/bench_echo_ours" BUILD_DIR=... bench/echo/run.sh
#
# A server is run as `SERVER --port 0`. It listens on 127.0.0.1, prints `port <n>` on stdout
# (flushed) before it accepts, echoes every byte back, and runs until SIGTERM. Go servers get
# GOMAXPROCS=1 unless the environment sets it (the system compared with Go is single-threaded).
#
# Each configuration: a fresh server; its VmRSS right after `port`; echo_loadgen with C
# connections, R round trips of 64 bytes each; its VmRSS again when the load generator says
# `connected` (every connection accepted and echoed once); then the timed round trips.
#   ECHO_CONNS           connection counts C (default "100 10000")
#   ECHO_ROUND_TRIPS_<C> round trips per connection at C (default max(100,000 / C, 20): at
#                        least 100,000 requests, a few seconds a run)
#   ECHO_ROUNDS          runs of every configuration (default 3); the median is reported
# Systems alternate within each round (the order rotates), so that a noisy machine's drifts
# hit them alike.
#
# Output: `cpp <system> echo_rps_c<C> <requests/s>`, `echo_p99_us_c<C> <us>`,
# `echo_bytes_per_conn_c<C> <bytes>` and `echo_server_cpu_ns_per_req_c<C> <ns>` for systems
# epoll, go, asio and the extra ones; each run's figures go to stderr. The last is the server's
# CPU time (all threads, 10 ms ticks) over the timed round trips per request: on 2 cores the
# load generator, as busy as a fast server, bounds requests/s, and CPU time still tells the
# servers apart. If a system is named `ours`: `cpp ours/<system> <figure> <ratio>` and
#   cpp goal echo_rps_c10000 <ours/go> >= 1.2 met|MISSED
#   cpp goal echo_rps_c10000 <ours/asio> >= 1.0 met|MISSED
#   cpp goal echo_rps_c10000 <ours/epoll> >= 0.7 met|MISSED
#   cpp goal echo_bytes_per_conn_c10000 <ours/go> <= 0.5 met|MISSED
set -uo pipefail
# A load generator that died leaves its FIFO without a reader: writing `go` must fail there, not
# end this script by SIGPIPE before it reports.
trap '' PIPE

BUILD_DIR=${BUILD_DIR:-/work/main/build/release}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$BUILD_DIR/bench
loadgen=$bin/echo_loadgen
read -r -a conn_counts <<<"${ECHO_CONNS:-100 10000}"
rounds=${ECHO_ROUNDS:-3}
export GOMAXPROCS=${GOMAXPROCS:-1}
failed=0

note() { echo "echo/run: $*" >&2; }

# 10,000 connections need 10,000 descriptors in the server and in the load generator.
ulimit -n "$(ulimit -Hn)" || note "cannot raise ulimit -n; 10,000 connections may fail"
if [[ ! -x $loadgen ]]; then
    note "$loadgen is not built"
    exit 1
fi

requested=() names=() servers=()
add_system() {
    requested+=("$1")
    if [[ -x $2 ]]; then
        names+=("$1") servers+=("$2")
    else
        note "$1: $2 is not built or not executable; skipped"
        failed=1
    fi
}

# Standard library only, no network: no proxy, and a cache and GOPATH of our own.
rm -f "$bin/echo_go"  # not last time's, if this build fails
if ! command -v go >/dev/null 2>&1 ||
    ! (cd "$here/go" && GOPROXY=off GO111MODULE=on GOFLAGS='' GOCACHE="$bin/go-cache" \
        GOPATH="$bin/go-path" go build -o "$bin/echo_go" .); then
    note "no Go toolchain, or go build failed"
fi
add_system epoll "$bin/echo_epoll_server"
add_system go "$bin/echo_go"
add_system asio "$bin/echo_asio_server"
for extra in ${ECHO_EXTRA_SERVERS:-}; do  # name=path, separated by blanks
    add_system "${extra%%=*}" "${extra#*=}"
done

tmp=$(mktemp -d)
server_pid=
loadgen_pid=
cleanup() {
    [[ -n $loadgen_pid ]] && kill "$loadgen_pid" 2>/dev/null
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null; }
# User + system CPU time of a process (all its threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }
ticks_per_s=$(getconf CLK_TCK)

# One run: run_one NAME SERVER C R appends `NAME C rps p50 p99 bytes_per_conn` to results.
run_one() {
    local name=$1 server=$2 conns=$3 trips=$4 port= line= i status
    # (Emptied first: the child truncates it only when it starts, and the loop below could
    # read the last server's port meanwhile, then connect to a server that is gone.)
    : >"$tmp/server.out"
    "$server" --port 0 >"$tmp/server.out" &
    server_pid=$!
    for ((i = 0; i < 200 && ${#port} == 0; i++)); do  # up to 10 s
        port=$(awk '$1 == "port" { print $2; exit }' "$tmp/server.out")
        [[ -z $port ]] && { kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; }
    done
    if [[ -z $port ]]; then
        note "$name printed no \`port <n>\` line"
        return 1
    fi
    local rss_idle
    rss_idle=$(rss_kb "$server_pid")

    # The load generator talks through two FIFOs: it says `connected`, we sample the server's
    # memory and then let it go on. Both sides open the FIFOs in the same order.
    rm -f "$tmp/to" "$tmp/from"
    mkfifo "$tmp/to" "$tmp/from"
    "$loadgen" --port "$port" --connections "$conns" --round-trips "$trips" --size 64 \
        <"$tmp/to" >"$tmp/from" &
    loadgen_pid=$!
    local to from
    exec {to}>"$tmp/to" {from}<"$tmp/from"
    read -r -t 150 line <&"$from"
    local rss_loaded cpu_before cpu_after
    rss_loaded=$(rss_kb "$server_pid")
    cpu_before=$(cpu_ticks "$server_pid")
    echo go >&"$to"
    exec {to}>&-
    local report
    report=$(timeout 150 cat <&"$from")
    exec {from}<&-
    wait "$loadgen_pid"
    status=$?
    loadgen_pid=
    if [[ $line != connected ]] || ((status != 0)) || [[ $report != *"rps "* ]]; then
        note "$name, C = $conns: echo_loadgen failed (status $status)"
        return 1
    fi
    cpu_after=$(cpu_ticks "$server_pid")
    if ! kill -0 "$server_pid" 2>/dev/null; then
        note "$name, C = $conns: the server died during the run"
        return 1
    fi
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null
    server_pid=
    if [[ -z $rss_idle || -z $rss_loaded ]]; then
        note "$name: no VmRSS in /proc/<pid>/status"
        return 1
    fi
    awk -v name="$name" -v c="$conns" -v idle="$rss_idle" -v loaded="$rss_loaded" \
        -v cpu_ticks="$((cpu_after - cpu_before))" -v tick_ns="$((1000000000 / ticks_per_s))" \
        -v requests="$((conns * trips))" '
        { v[$1] = $2 }
        END {
            bytes = (loaded - idle) * 1024 / c
            cpu = cpu_ticks * tick_ns / requests
            printf "%s %d %s %s %s %.0f %.0f\n", name, c, v["rps"], v["p50_us"], v["p99_us"],
                bytes, cpu
            printf "echo/run: %-6s C=%-6d rps %8s  p50 %9s us  p99 %9s us  %6.0f bytes/conn" \
                "  %6.0f server CPU ns/request\n", name, c, v["rps"], v["p50_us"], v["p99_us"],
                bytes, cpu > "/dev/stderr"
        }' <<<"$report" >>"$tmp/results"
}

start=$SECONDS
for ((round = 0; round < rounds; round++)); do
    for ci in "${!conn_counts[@]}"; do
        c=${conn_counts[ci]}
        var=ECHO_ROUND_TRIPS_$c
        trips=${!var:-$(((100000 + c - 1) / c > 20 ? (100000 + c - 1) / c : 20))}
        for j in "${!names[@]}"; do
            k=$(((j + round + ci) % ${#names[@]}))
            if ! run_one "${names[k]}" "${servers[k]}" "$c" "$trips"; then
                failed=1
                [[ -n $server_pid ]] && { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; }
                server_pid=
                [[ -s $tmp/server.out ]] && note "its stdout: $(head -c 300 "$tmp/server.out")"
            fi
        done
    done
done
note "the echo benchmark took $((SECONDS - start)) s"

touch "$tmp/results"
awk -v systems="${names[*]}" -v requested="${requested[*]}" -v conns="${conn_counts[*]}" '
    {
        key = $1 " " $2
        n[key]++
        rps[key, n[key]] = $3; p99[key, n[key]] = $5; mem[key, n[key]] = $6; cpu[key, n[key]] = $7
    }
    function median(arr, key,    m, i, j, t, v) {
        m = n[key]
        for (i = 1; i <= m; i++) v[i] = arr[key, i] + 0
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    # The printed (rounded) values and ratios are the ones compared, so each line agrees with
    # itself.
    function goal(f, other, op, limit,    r, ok) {
        r = "n/a"
        if (("ours " f) in value && (other " " f) in value && value[other " " f] > 0)
            r = sprintf("%.3f", value["ours " f] / value[other " " f])
        if (r != "n/a") print "cpp ours/" other " " f " " r
        ok = r != "n/a" && (op == ">=" ? r + 0 >= limit + 0 : r + 0 <= limit + 0)
        goals = goals sprintf("cpp goal %s %s %s %s %s\n", f, r, op, limit, ok ? "met" : "MISSED")
    }
    END {
        ns = split(systems, sys, " ")
        nc = split(conns, cs, " ")
        for (s = 1; s <= ns; s++)
            for (i = 1; i <= nc; i++) {
                key = sys[s] " " cs[i]
                if (!(key in n)) continue
                value[sys[s] " echo_rps_c" cs[i]] = sprintf("%.0f", median(rps, key))
                value[sys[s] " echo_p99_us_c" cs[i]] = sprintf("%.1f", median(p99, key))
                value[sys[s] " echo_bytes_per_conn_c" cs[i]] = sprintf("%.0f", median(mem, key))
                value[sys[s] " echo_server_cpu_ns_per_req_c" cs[i]] = sprintf("%.0f", median(cpu, key))
                split("echo_rps_c echo_p99_us_c echo_bytes_per_conn_c echo_server_cpu_ns_per_req_c",
                      fig, " ")
                for (f = 1; f <= 4; f++)
                    print "cpp " sys[s] " " fig[f] cs[i] " " value[sys[s] " " fig[f] cs[i]]
            }
        if (requested !~ /(^| )ours( |$)/) exit  # goals only if ours was asked for
        goal("echo_rps_c10000", "go", ">=", "1.2")
        goal("echo_rps_c10000", "asio", ">=", "1.0")
        goal("echo_rps_c10000", "epoll", ">=", "0.7")
        goal("echo_bytes_per_conn_c10000", "go", "<=", "0.5")
        printf "%s", goals
    }
' "$tmp/results"
exit "$failed"
