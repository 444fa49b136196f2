"""Shared fixtures for the tests of the `stackless` extension module.

Run with the launcher, which puts the built module on the path:

    /work/main/stackless -m pytest -q tests/python

Every test must leave the scheduler as it found it: only the main tasklet runnable, and main
current. The autouse fixture below checks that after each test; if tasklets were left in the
run queue it kills them (so that later tests start clean) and reports the test as failed.
"""
import os
import pathlib
import subprocess

import pytest

import stackless

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The launcher that runs a script with the built module; STACKLESS_LAUNCHER overrides it.
LAUNCHER = os.environ.get("STACKLESS_LAUNCHER", str(ROOT / "stackless"))


def run_program(tmp_path, text, name="program.py"):
    """Runs `text` as a script with the launcher, in its own process (a crash fails only the
    test that runs it); asserts that it ends normally and returns its output lines."""
    script = tmp_path / name
    script.write_text(text)
    r = subprocess.run([LAUNCHER, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "exit status %d\nstderr:\n%s" % (r.returncode, r.stderr[-3000:])
    return r.stdout.splitlines()


def _runnable_besides_main():
    main = stackless.getmain()
    found = []
    t = main.next
    while t is not None and t is not main and len(found) < 10000:
        found.append(t)
        t = t.next
    return found


@pytest.fixture(autouse=True)
def idle_scheduler():
    """After each test: the main tasklet is current and is the only runnable tasklet."""
    yield
    problems = []
    if stackless.getcurrent() is not stackless.getmain():
        problems.append("the current tasklet is not the main tasklet: %r" % stackless.getcurrent())
    runcount = stackless.getruncount()
    if runcount != 1:
        leftovers = _runnable_besides_main()
        for t in leftovers:
            try:
                t.kill()
            except BaseException as e:  # report, but go on cleaning up
                problems.append("killing leftover %r raised %r" % (t, e))
        problems.append("getruncount() is %d after the test, not 1 (killed %d leftover tasklets;"
                        " getruncount() is now %d)"
                        % (runcount, len(leftovers), stackless.getruncount()))
    if problems:
        pytest.fail("scheduler not idle after the test: " + "; ".join(problems), pytrace=False)
