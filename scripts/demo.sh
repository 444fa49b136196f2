#!/usr/bin/env bash
# Runs the article's programs: the C++ versions (examples/cpp, with an echo server and its
# clients over loopback sockets), then the Python ones
# (Listings 1-6, and the migration of a running tasklet to another process).
set -euo pipefail
build=${1:-build/release}
for program in listing1 listing2 sort network_simulation network_latency threads echo; do
    echo "== examples/cpp/$program"
    "$build/examples/cpp/$program"
    echo
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for program in listing1 listing2 sort network_simulation; do
    echo "== examples/python/$program.py"
    STACKLESS_BUILD=$build "$here/stackless" "$here/examples/python/$program.py"
    echo
done
# Listing 6, as the article runs it, then a tasklet moving to another process.
echo "== stackless examples/python/squareroot.py 2"
STACKLESS_BUILD=$build "$here/stackless" "$here/examples/python/squareroot.py" 2
echo
echo "== examples/python/migrate.py"
STACKLESS_BUILD=$build "$here/stackless" "$here/examples/python/migrate.py"
echo
echo "== examples/python/threads.py"
STACKLESS_BUILD=$build "$here/stackless" "$here/examples/python/threads.py"
