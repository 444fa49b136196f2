#!/usr/bin/env bash
# Runs the article's programs: the C++ versions (examples/cpp).
set -euo pipefail
build=${1:-build/release}
for program in listing1 listing2 sort network_simulation; do
    echo "== examples/cpp/$program"
    "$build/examples/cpp/$program"
    echo
done
