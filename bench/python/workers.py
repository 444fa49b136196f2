"""What bench.py and scale.py share: the checks of their workloads, the sleepsort workload and
how it is timed, and the environment of the worker process that measures our module.
(scale.py's workers import it on Stackless 3.7 too: Python 3.7 syntax.)"""
import gc
import os
import time


def check(condition, what):
    """A workload that did not do what it should gives no figure."""
    if not condition:
        raise RuntimeError("workload check failed: " + what)


def sleepsort(stackless, numbers):
    """The article's Listing 3: tasklet k calls schedule() k times, then sends k on a channel;
    the numbers come out of the channel in order. Returns what came out, and the channel."""

    def counter(n, ch):
        for i in range(n):
            stackless.schedule()
        ch.send(n)

    ch = stackless.channel()
    for each in numbers:
        stackless.tasklet(counter)(each, ch)
    stackless.run()
    rlist = []
    while ch.balance:
        rlist.append(ch.receive())
    return rlist, ch


def sleepsort_times(stackless, numbers, runs):
    """Milliseconds of `runs` sleepsorts of `numbers` after a warm-up one, sorted. The listing
    only: the run() that ends its tasklets afterwards is outside the time."""
    times = []
    for _ in range(runs + 1):
        gc.collect()
        start = time.perf_counter()
        rlist, ch = sleepsort(stackless, numbers)
        check(rlist == sorted(numbers), "sleepsort did not sort")
        times.append((time.perf_counter() - start) * 1e3)
        stackless.run()
        check(ch.balance == 0 and stackless.getruncount() == 1, "sleepsort left tasklets")
    return sorted(times[1:])


def module_search_path(module):
    """The sys.path entry that `module` was imported from."""
    spec = module.__spec__
    if spec.submodule_search_locations:  # a package: its parent directory
        return os.path.dirname(os.path.dirname(spec.origin))
    return os.path.dirname(spec.origin)


def environment_for_ours(script, note):
    """A copy of the environment in which a worker finds the `stackless` module this
    interpreter imports (the freshly built one, when run by the launcher); None, with a note,
    if it cannot import it."""
    env = dict(os.environ)
    try:
        import stackless
    except ImportError as e:
        note("ours skipped: `import stackless` failed (%s); run this script with the launcher, "
             "./stackless bench/python/%s" % (e, script))
        return None
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (module_search_path(stackless), env.get("PYTHONPATH")) if p)
    return env
