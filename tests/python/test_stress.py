"""Random operation sequences (random_operations.py, thread_operations.py) must never crash the
interpreter: each seed runs in its own process, which must exit normally with every tasklet
accounted for."""
import pathlib
import subprocess

import pytest

from conftest import LAUNCHER

PROGRAM = pathlib.Path(__file__).with_name("random_operations.py")


@pytest.mark.parametrize("seed", range(1, 41))
def test_random_operations_never_crash(seed):
    r = subprocess.run([LAUNCHER, str(PROGRAM), str(seed)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, "seed %d: exit status %d\nstderr:\n%s" % (
        seed, r.returncode, r.stderr[-3000:])
    assert r.stdout.splitlines()[-1] == "ok %d" % seed


THREAD_PROGRAM = pathlib.Path(__file__).with_name("thread_operations.py")


@pytest.mark.parametrize("seed", range(1, 11))
def test_tasklets_passed_between_ending_threads_never_crash(seed):
    r = subprocess.run([LAUNCHER, str(THREAD_PROGRAM), str(seed)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, "seed %d: exit status %d\nstderr:\n%s" % (
        seed, r.returncode, r.stderr[-3000:])
    assert r.stdout.splitlines()[-1] == "ok %d" % seed


CHANNEL_THREAD_PROGRAM = pathlib.Path(__file__).with_name("channel_thread_operations.py")


@pytest.mark.parametrize("seed", range(1, 11))
def test_channel_traffic_between_threads_never_crashes_loses_or_repeats_a_message(seed):
    r = subprocess.run([LAUNCHER, str(CHANNEL_THREAD_PROGRAM), str(seed)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, "seed %d: exit status %d\nstderr:\n%s" % (
        seed, r.returncode, r.stderr[-3000:])
    assert r.stdout.splitlines()[-1] == "ok %d" % seed
