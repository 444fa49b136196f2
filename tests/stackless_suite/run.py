#!/usr/bin/env python3
"""Runs Stackless Python's own test suite (`Stackless/unittests` of stackless-dev/stackless,
branch 3.7-slp) against this project's module, or against Stackless 3.7 itself for comparison.

    tests/stackless_suite/run.py --src STACKLESS_SRC [--python CMD] [--unchanged]
                                 [--only test_x.py ...] [--json FILE] [-v]

STACKLESS_SRC is a checkout of that branch (the suite is read from there, never copied into this
project). The suite runs in a temporary copy with the changes listed in adaptations.py (what
CPython 3.11 needs, and the test helpers of Stackless's interpreter); `--unchanged` runs the
copy as it is (for Stackless 3.7 itself). Each test file runs in a process of its own with a
time limit per test; a test that crashes or hangs its process is recorded as such and the file
goes on from the next test in a new process. Tests of interpreter internals (adaptations.py,
NOT_APPLICABLE) are not run and not counted.
"""
import argparse
import collections
import fnmatch
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import adaptations  # noqa: E402

OUTCOMES = ("pass", "xfail", "fail", "error", "skip", "xpass", "crash", "timeout")


def module_dir():
    """Where the launcher finds the built module (STACKLESS_BUILD as the launcher reads it)."""
    return os.path.join(os.environ.get("STACKLESS_BUILD", os.path.join(ROOT, "build", "release")),
                        "python")


def prepare(src, unchanged):
    unittests = os.path.join(src, "Stackless", "unittests")
    if not os.path.isfile(os.path.join(unittests, "support.py")):
        raise SystemExit("run.py: %s has no Stackless/unittests/support.py" % src)
    work = tempfile.mkdtemp(prefix="stackless-suite-")
    for name in os.listdir(unittests):
        if name.endswith(".py"):
            shutil.copy(os.path.join(unittests, name), work)
    shutil.copy(os.path.join(HERE, "driver.py"), work)
    if not unchanged:
        adaptations.apply(work)
        # Some tests start `sys.executable -E -S -c ...`, which ignores PYTHONPATH (how the
        # launcher finds the module) but puts the working directory first on sys.path, where
        # Stackless's own module is built into its interpreter: the module goes there too.
        for name in os.listdir(module_dir()):
            if name.startswith(("stackless", "_stackless")):
                os.symlink(os.path.join(module_dir(), name), os.path.join(work, name))
    return work


def run_driver(cmd, work, timeout):
    """Runs the driver in a process group of its own; returns (output, exit status or "killed").
    Whatever the tests started and left running (a child process stuck where a test failed) is
    killed with it, so that it cannot hold the run up."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = "killed"
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        out.seek(0)
        return out.read().decode(errors="replace"), rc


def run_file(python, work, module, per_test_timeout, verbose):
    """Runs one test module until every test has an outcome; returns (collected, results)."""
    results_path = os.path.join(work, module + ".results")
    exclude_path = os.path.join(work, module + ".exclude")
    if os.path.exists(results_path):
        os.unlink(results_path)
    done = {}
    collected = None
    problems = []
    while True:
        with open(exclude_path, "w") as f:
            json.dump({"ids": sorted(done), "patterns": adaptations.not_applicable_patterns()}, f)
        cmd = python + ["driver.py", module, results_path, "--exclude", exclude_path,
                        "--test-timeout", str(per_test_timeout)]
        start_of_run = os.path.getsize(results_path) if os.path.exists(results_path) else 0
        output, rc = run_driver(cmd, work, per_test_timeout * 3 + 600)
        running = None
        finished = False
        with open(results_path) as f:
            f.seek(start_of_run)
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if "collected" in record and collected is None:
                    collected = record["collected"]
                elif "start" in record:
                    running = record["start"]
                elif "id" in record:
                    done[record["id"]] = (record["outcome"], record["detail"])
                    running = None
                elif "import_error" in record:
                    problems.append("import error:\n" + record["detail"])
                elif "fixture_error" in record:
                    problems.append("fixture error %s:\n%s" % (record["fixture_error"],
                                                               record["detail"]))
                elif "finished" in record:
                    finished = True
        if finished or collected is None:
            if not finished:
                problems.append("exit %s before collecting:\n%s" % (rc, output[-3000:]))
            return collected or [], done, problems
        if running is None:
            # The process ended between tests (e.g. at interpreter exit of a test's thread).
            problems.append("exit %s between tests:\n%s" % (rc, output[-3000:]))
            return collected, done, problems
        timed_out = "Timeout (" in output or rc == "killed"
        done[running] = ("timeout" if timed_out else "crash",
                         "exit %s\n%s" % (rc, output[-4000:]))
        if verbose:
            print("  %s: %s (exit %s)" % (running, done[running][0], rc), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=os.environ.get("STACKLESS_SRC"),
                    help="checkout of stackless-dev/stackless, branch 3.7-slp")
    ap.add_argument("--python", default=os.path.join(ROOT, "stackless"),
                    help="interpreter command (default: ./stackless, this project's module)")
    ap.add_argument("--unchanged", action="store_true",
                    help="run the suite without adaptations (Stackless 3.7 itself)")
    ap.add_argument("--only", nargs="*", help="test files to run (default: all)")
    ap.add_argument("--test-timeout", type=float, default=60)
    ap.add_argument("--json", help="write every test's outcome here")
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args()
    if not opts.src:
        raise SystemExit("run.py: give --src or STACKLESS_SRC (a checkout of stackless-dev/"
                         "stackless, branch 3.7-slp)")
    python = shlex.split(opts.python)
    work = prepare(opts.src, opts.unchanged)
    files = sorted(n for n in os.listdir(work) if n.startswith("test_") and n.endswith(".py"))
    if opts.only:
        files = [f for f in files if f in opts.only or f[:-3] in opts.only]
    skipped_files = {f: why for f, why in adaptations.NOT_APPLICABLE_FILES.items()}
    totals = collections.Counter()
    everything = {}
    t0 = time.time()
    for name in files:
        module = name[:-3]
        if name in skipped_files:
            print("%-32s not applicable: %s" % (module, skipped_files[name]))
            continue
        started = time.time()
        collected, done, problems = run_file(python, work, module, opts.test_timeout,
                                             opts.verbose)
        counts = collections.Counter()
        for test_id in collected:
            why = adaptations.not_applicable_reason(test_id)
            if why is not None:
                outcome, detail = "n/a", why
            else:
                outcome, detail = done.get(test_id, ("not run", ""))
            counts[outcome] += 1
            everything[test_id] = {"outcome": outcome, "detail": detail}
        totals.update(counts)
        applicable = sum(v for k, v in counts.items() if k != "n/a")
        passed = counts["pass"] + counts["xfail"]
        print("%-32s %4d/%-4d passed  %s  (%.0f s)" % (
            module, passed, applicable,
            " ".join("%s %d" % (k, counts[k]) for k in OUTCOMES + ("not run", "n/a")
                     if counts[k] and k not in ("pass",)), time.time() - started), flush=True)
        for p in problems:
            print("    " + p.replace("\n", "\n    ")[:3000])
        if opts.verbose:
            for test_id in collected:
                r = everything[test_id]
                if r["outcome"] not in ("pass", "xfail", "n/a"):
                    print("    %s %s\n        %s" % (r["outcome"], test_id,
                                                    r["detail"].strip().replace("\n", "\n        ")[-1500:]))
    applicable = sum(v for k, v in totals.items() if k != "n/a")
    passed = totals["pass"] + totals["xfail"]
    print("\nall: %d of %d applicable tests passed (%.1f%%); %s; %.0f s" % (
        passed, applicable, 100.0 * passed / max(applicable, 1),
        ", ".join("%s %d" % (k, totals[k]) for k in OUTCOMES + ("not run", "n/a") if totals[k]),
        time.time() - t0))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(everything, f, indent=1, sort_keys=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
