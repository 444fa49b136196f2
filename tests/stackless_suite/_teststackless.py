"""Stand-ins for the helpers of Stackless's C test module `_teststackless` and of
`stackless._test_nostacklesscall`, for running Stackless's test suite against this project.

Each makes its call from C (through `operator.call` or a C loop), so the tasklet gets C state
below the callee, a nesting level above 0, as Stackless's helpers give it.
"""
import collections
import itertools
import operator

import stackless

STACK_MAX_USEFUL = 64000


def test_cstate(callable):
    """Returns callable() called from C."""
    return operator.call(callable)


def _test_nostacklesscall(func, *args, **kwargs):
    """Returns func(*args, **kwargs) called from C."""
    return operator.call(func, *args, **kwargs)


def test_cframe(switches, words=0):
    """Calls stackless.schedule() `switches` times from a C loop; returns None."""
    if not 0 <= words <= STACK_MAX_USEFUL:
        raise ValueError("test_cframe: words are limited by 0 and %d" % STACK_MAX_USEFUL)
    collections.deque(map(operator.call, itertools.repeat(stackless.schedule, switches)),
                      maxlen=0)
    return None
