"""Runs one test module of Stackless's own test suite and records each test's outcome.

Started by run.py in a process of its own, in a copy of the suite's directory:

    python driver.py MODULE RESULTS [--exclude FILE] [--test-timeout SECONDS]

RESULTS gets one JSON object per line: {"start": id} before a test runs, then {"id": id,
"outcome": ..., "detail": ...} when it ends, flushed at once, so that the parent knows which
test was running when the process crashed or hung. Runs on Stackless 3.7 as well as on CPython
3.11 (no syntax newer than 3.7).
"""
import faulthandler
import fnmatch
import json
import os
import sys
import traceback
import unittest


def flat(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            for t in flat(item):
                yield t
        else:
            yield item


class Recorder(unittest.TestResult):
    def __init__(self, out, timeout):
        super().__init__()
        self.out = out
        self.timeout = timeout
        self.current = None
        self.outcome = None
        self.detail = ""

    def write(self, record):
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        os.fsync(self.out.fileno())

    def startTest(self, test):
        super().startTest(test)
        self.current = test.id()
        self.outcome = "pass"
        self.detail = ""
        self.write({"start": self.current})
        if self.timeout:
            faulthandler.dump_traceback_later(self.timeout, exit=True)

    def stopTest(self, test):
        if self.timeout:
            faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        if self.current is not None:
            self.write({"id": self.current, "outcome": self.outcome, "detail": self.detail[-4000:]})
        self.current = None

    def _set(self, outcome, detail):
        # The first failure wins; an error in tearDown after a failure keeps "fail".
        if self.outcome in ("pass", "skip"):
            self.outcome = outcome
        self.detail += detail

    def addError(self, test, err):
        if self.current is None:  # a class or module fixture failed: no test is running
            self.write({"fixture_error": str(test), "detail": self._exc_info_to_string(err, test)})
            return
        self._set("error", self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        self._set("fail", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._set(kind, str(subtest) + "\n" + self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        if self.current is None:
            return
        if self.outcome == "pass":
            self.outcome = "skip"
        self.detail += reason

    def addExpectedFailure(self, test, err):
        self.outcome = "xfail"

    def addUnexpectedSuccess(self, test):
        self.outcome = "xpass"


def main():
    args = sys.argv[1:]
    module_name, results = args[0], args[1]
    exclude_ids, patterns = set(), []
    timeout = 0
    i = 2
    while i < len(args):
        if args[i] == "--exclude":
            with open(args[i + 1]) as f:
                spec = json.load(f)
            exclude_ids, patterns = set(spec["ids"]), spec["patterns"]
            i += 2
        elif args[i] == "--test-timeout":
            timeout = float(args[i + 1])
            i += 2
        else:
            raise SystemExit("driver.py: unknown argument " + args[i])
    sys.path.insert(0, os.getcwd())
    with open(results, "a") as out:
        recorder = Recorder(out, timeout)
        try:
            module = __import__(module_name)
            tests = list(flat(unittest.defaultTestLoader.loadTestsFromModule(module)))
        except BaseException:
            recorder.write({"import_error": module_name, "detail": traceback.format_exc()})
            return 1
        recorder.write({"collected": [t.id() for t in tests]})
        tests = [t for t in tests if t.id() not in exclude_ids and
                 not any(fnmatch.fnmatchcase(t.id(), p) for p in patterns)]
        unittest.TestSuite(tests).run(recorder)
        recorder.write({"finished": module_name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
