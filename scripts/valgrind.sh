#!/usr/bin/env bash
# Runs the C++ stack tests and a share of the Python tests under valgrind's memcheck (slow: a few
# minutes). `make valgrind`. Exits non-zero on any memory error.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build/release}
vg=(valgrind -q --error-exitcode=9)
"${vg[@]}" "$build/tests/cpp/stackless_tests" --gtest_filter='Stacks.*:SoftSwitch.*:Channel.*:Lifetime.*' \
    --gtest_brief=1
export PYTHONMALLOC=malloc PYTHONPATH="$build/python"
"${vg[@]}" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    "$here/tests/python/test_channel.py" "$here/tests/python/test_tasklet.py" \
    "$here/tests/python/test_exceptions.py" "$here/tests/python/test_state.py" \
    "$here/tests/python/test_threads.py::test_tasklets_that_outlive_their_thread_read_as_ended_and_go_later"
# Pickling: frames read from switched-out tasklets and rebuilt from pickles. (Not the damaged-
# pickle fuzz test: CPython's own unpickler reads uninitialised memory on some damaged BYTEARRAY8
# opcodes, with or without stackless.)
"${vg[@]}" /usr/bin/python3 -m pytest -q -p no:cacheprovider "$here/tests/python/test_pickle.py" \
    -k "not damaged"
# Tasklets that drop their C stacks and resume their frames in place.
"${vg[@]}" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    "$here/tests/python/test_dropped_stacks.py"
# Soft switching at scale (the next tasklet starts on the stack the running one leaves), its
# largest scenarios reduced (STACKLESS_TEST_QUICK).
STACKLESS_TEST_QUICK=1 "${vg[@]}" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    "$here/tests/python/test_soft_switching.py"
# Preemption (the watchdog thread, pending calls, the interrupting trace function): two of its
# tests (the others loop for minutes under valgrind).
"${vg[@]}" /usr/bin/python3 -m pytest -q -p no:cacheprovider "$here/tests/python/test_watchdog.py" \
    -k "goes_on_when_inserted or atomic_section"
# Channels across threads: partners in two threads, threads waiting without the GIL, the stress
# test (in its own process: the launcher is replaced by valgrind's python below).
"${vg[@]}" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    "$here/tests/python/test_channels_across_threads.py" -k "not four_threads"
"${vg[@]}" /usr/bin/python3 -c "
import sys, textwrap; sys.path.insert(0, '$here/tests/python')
import test_channels_across_threads as t
exec(compile(t.STRESS.replace('int(sys.argv[1])', '1'), 'stress', 'exec'))"
"${vg[@]}" "$build/tests/cpp/stackless_tests" --gtest_filter='SharedChannel.*' --gtest_brief=1
# The event loop: fd waits, deadlines, select (not the tests that bound wall times: valgrind runs
# some fifty times slower).
"${vg[@]}" "$build/tests/cpp/stackless_tests" \
    --gtest_filter='FdWait.*:ChannelDeadline.*:TryOperations.*:Select.*' --gtest_brief=1
for seed in 3 6 9; do
    "${vg[@]}" /usr/bin/python3 "$here/tests/python/random_operations.py" "$seed"
done
"${vg[@]}" /usr/bin/python3 "$here/tests/python/thread_operations.py" 1
"${vg[@]}" /usr/bin/python3 "$here/tests/python/channel_thread_operations.py" 2
echo "valgrind: no memory errors"
