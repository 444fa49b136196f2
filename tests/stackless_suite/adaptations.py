"""What run.py changes in Stackless's test suite before running it on CPython 3.11, and which
tests it leaves out as tests of Stackless's interpreter internals, each with its reason.
"""
import fnmatch
import os

# Whole files that test the interpreter itself.
NOT_APPLICABLE_FILES = {
    "test_capi.py": "Stackless's C API (PyStackless_*, PyEval_EvalFrameEx with soft switching, "
                    "its C test module)",
    "test_outside.py": "Stackless's C-stack bookkeeping (initial stubs, stack serials, "
                       "test_outside, test_cframe_nr)",
    "test_slp_embed.py": "embedding Stackless's interpreter in a C program",
    "test_transfer_errors.py": "failures of Stackless's C-stack transfer (slp_transfer), provoked "
                               "by corrupting a tasklet's internal C-stack record",
}

# The helpers of Stackless's C test module, made in Python (see _teststackless.py here).
SHIMS = ["_teststackless.py"]

# (fnmatch pattern on the test id, reason). Patterns end in `*` to take the suite's variants
# of a test (`_H`: hard switching; `_C0`..`_P5`: pickle protocol and implementation).
_OWN_FORMAT = ("inspects Stackless's own pickle format (stackless._wrap.frame, its frame "
               "state tuple, the layout of a tasklet's state); this module pickles the same "
               "objects in a format of its own (docs/pickling.md)")
NOT_APPLICABLE = [
    ("test_pickle.TestFramePickling.*", _OWN_FORMAT),
    ("test_defects.TestCrashUponFrameUnpickling.*", _OWN_FORMAT),
    ("test_exception.TestExcStatePickling.test_tasklet_reduce_wo_exc*", _OWN_FORMAT),
    ("test_tstate.TestTracingState.testReduceOfTracingState*", _OWN_FORMAT + " (and imports "
     "Stackless's internal module _stackless)"),
    ("test_miscell.TestTaskletFinalizer.test_zombie*", _OWN_FORMAT + " (support.is_zombie reads "
     "Stackless's tasklet flags from its reduce tuple)"),
    ("test_tpflags_have_stackless_call.TestStacklessCallFlag.*",
     "Py_TPFLAGS_HAVE_STACKLESS_CALL, a type flag of Stackless's interpreter"),
    ("test_miscell.TestCstate.*", "tasklet.cstate and stackless.cstack: Stackless's objects for "
     "its interpreter's C stacks"),
    ("test_shutdown.TestShutdown.test_other_thread_Py_Exit*",
     "calls the C function Py_Exit through ctypes in a daemon thread and expects the main "
     "thread to end with it: Stackless changed its interpreter's finalization so; CPython 3.11 "
     "(without this module too) lets the main thread run on and exit with its own status"),
    ("test_generator.TestGeneratorWrapper.*",
     "stackless._wrap.generator: Stackless's interpreter-internal subclass of the generator "
     "type that its unpickler builds generators from"),
]

# (file, text to find, replacement, reason). Each text must occur in the file.
CHANGES = [
    ("support.py",
     "    return stackless.get_thread_info(threadid, 1 << 30)[4]\n",
     "    return None\n",
     "get_serial_last_jump() reads the serial number of Stackless's C stack (an undocumented "
     "flag of get_thread_info); this implementation has no such serials, so the check that a "
     "test ends on the C stack it began on is left out"),
    ("support.py",
     """    with stackless.atomic():
        cscurrent = current.cstate
        cs = cscurrent.next
        while cs is not cscurrent:
            t = cs.task
            if (t is not None and
                    t.cstate is cs and
                    t.alive and
                    t.nesting_level > 0):
                assert t not in tlets
                tlets.append(t)
            cs = cs.next
""",
     """    for t in gc.get_objects():
        if (isinstance(t, stackless.tasklet) and t is not current and not t.is_main and
                t.thread_id == current.thread_id and t.alive and t.nesting_level > 0):
            tlets.append(t)
""",
     "the clean-up after each test walks Stackless's internal ring of C stacks (tasklet.cstate) "
     "to find tasklets with C state; here the garbage collector's list of objects gives them"),
    ("test_pickle.py",
     "self.assertIsNone(ag.ag_frame)\n        self.assertRaises(StopIteration, c.send, None)",
     "self.assertIsNone(ag.ag_frame)\n        self.assertRaises(RuntimeError, c.send, None)",
     "CPython 3.11: sending to an exhausted async_generator_asend raises RuntimeError "
     "('cannot reuse already awaited __anext__()/asend()'); 3.7 raised StopIteration"),
    ("test_pickle.py",
     "self.assertIsNone(ag.ag_frame)\n            self.assertRaises(StopIteration, c.send, None)",
     "self.assertIsNone(ag.ag_frame)\n            self.assertRaises(RuntimeError, c.send, None)",
     "CPython 3.11: sending to an exhausted async_generator_asend raises RuntimeError"),
    ("test_pickle.py",
     "self.assertTupleEqual(self.inspect(agt), ((e, ), 1, True))",
     "self.assertTupleEqual(self.inspect(agt), ((e, ), 2, True))",
     "CPython 3.11: an async_generator_athrow that raised is closed (state 2); 3.7 left it "
     "iterating (state 1)"),
    ("test_defects.py",
     "from stackless import _test_nostacklesscall as apply_not_stackless",
     "from _teststackless import _test_nostacklesscall as apply_not_stackless",
     "stackless._test_nostacklesscall is a test helper of Stackless's module"),
    ("test_miscell.py",
     "from stackless import _test_nostacklesscall as apply_not_stackless",
     "from _teststackless import _test_nostacklesscall as apply_not_stackless",
     "stackless._test_nostacklesscall is a test helper of Stackless's module"),
    ("test_shutdown.py",
     "from stackless import _test_nostacklesscall as apply",
     "from _teststackless import _test_nostacklesscall as apply",
     "stackless._test_nostacklesscall is a test helper of Stackless's module"),
    ("test_tpflags_have_stackless_call.py",
     "stackless._test_nostacklesscall",
     "__import__('_teststackless')._test_nostacklesscall",
     "stackless._test_nostacklesscall is a test helper of Stackless's module"),
    ("test_thread.py",
     "from stackless import _test_nostacklesscall as apply_not_stackless",
     "from _teststackless import _test_nostacklesscall as apply_not_stackless",
     "stackless._test_nostacklesscall is a test helper of Stackless's module"),
]


def not_applicable_patterns():
    return [p for p, _ in NOT_APPLICABLE]


def not_applicable_reason(test_id):
    for pattern, why in NOT_APPLICABLE:
        if fnmatch.fnmatchcase(test_id, pattern):
            return why
    return None


def apply(work):
    here = os.path.dirname(os.path.abspath(__file__))
    for name in SHIMS:
        with open(os.path.join(here, name)) as f:
            text = f.read()
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    for name, old, new, why in CHANGES:
        path = os.path.join(work, name)
        with open(path) as f:
            text = f.read()
        if old not in text:
            raise SystemExit("adaptations: %r is not in %s any more (%s)" % (old, name, why))
        with open(path, "w") as f:
            f.write(text.replace(old, new))
