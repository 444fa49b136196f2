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


class _NoStacklessCall:
    """Calls func(*args, **kwargs) from C. An object, not a function: as a class attribute
    (__call__ = _test_nostacklesscall) it is called without the instance, as Stackless's is."""

    def __call__(self, func, *args, post_callback=None, **kwargs):
        # As Stackless's: func None returns the arguments; post_callback(result, 0, 0) is
        # called with the result (0: the call was not a stackless one) and returns the result.
        result = args if func is None else operator.call(func, *args, **kwargs)
        if post_callback is None:
            return result
        return operator.call(post_callback, result, 0, 0, **kwargs)


_test_nostacklesscall = _NoStacklessCall()


def test_cframe(switches, words=0):
    """Calls stackless.schedule() `switches` times from a C loop; returns None."""
    if not 0 <= words <= STACK_MAX_USEFUL:
        raise ValueError("test_cframe: words are limited by 0 and %d" % STACK_MAX_USEFUL)
    collections.deque(map(operator.call, itertools.repeat(stackless.schedule, switches)),
                      maxlen=0)
    return None
