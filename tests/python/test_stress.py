"""Random operation sequences (random_operations.py, thread_operations.py) must never crash the
interpreter: each seed runs in its own process, which must exit normally with every tasklet
accounted for."""
import pathlib
import subprocess

import pytest

from conftest import LAUNCHER

HERE = pathlib.Path(__file__).parent


def run_seed(program, seed, *args):
    """Runs tests/python/`program` with `seed` (and `args`) in its own process: it must end
    normally and say "ok SEED" last."""
    r = subprocess.run([LAUNCHER, str(HERE / program), str(seed)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "seed %d: exit status %d\nstderr:\n%s" % (
        seed, r.returncode, r.stderr[-3000:])
    assert r.stdout.splitlines()[-1] == "ok %d" % seed


@pytest.mark.parametrize("seed", range(1, 41))
def test_random_operations_never_crash(seed):
    run_seed("random_operations.py", seed)


@pytest.mark.parametrize("seed", range(41, 61))
def test_random_operations_on_thousands_of_tasklets_never_crash(seed):
    # 3,000 tasklets: most switches drop the running tasklet's stack (soft switching), and those
    # that cannot drop theirs are copied (random_operations.py)
    run_seed("random_operations.py", seed, 3000)


@pytest.mark.parametrize("seed", range(1, 11))
def test_tasklets_passed_between_ending_threads_never_crash(seed):
    run_seed("thread_operations.py", seed)


@pytest.mark.parametrize("seed", range(1, 11))
def test_channel_traffic_between_threads_never_crashes_loses_or_repeats_a_message(seed):
    run_seed("channel_thread_operations.py", seed)
