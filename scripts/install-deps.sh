#!/usr/bin/env bash
# Installs the Debian packages the build, tests and benchmarks need, if any is missing.
set -euo pipefail
packages=(
    build-essential cmake make pkg-config
    libboost-context-dev libboost-fiber-dev libboost-coroutine-dev
    libgtest-dev libbenchmark-dev
    libclang-rt-14-dev
    python3 python3-dev python3-pytest python3-hypothesis
    python3-greenlet python3-gevent python3-venv python3-pip python3-setuptools
    golang-go valgrind
)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    sudo_cmd=()
    if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
