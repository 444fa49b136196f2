"""What the schedule and pingpong workloads cost before any switch: their loop calling a
stackless function that does nothing, side by side with the workload itself.

    ./stackless bench/python/floor.py

Lines: `python ours <figure> <ns>`: loop_call_ns (the schedule loop with stackless.getruncount()
in place of schedule(): the cost of the loop and of the module attribute lookup and call),
loop_call_local_ns (the same with the function in a local variable), schedule_ns (100 tasklets,
schedule()), each the median of 5 runs.
"""
import time

import stackless

N = 500_000


def loop_call(n):
    for i in range(n):
        stackless.getruncount()


def loop_call_local(n):
    f = stackless.getruncount
    for i in range(n):
        f()


def schedule(n):
    def f(k):
        for i in range(k):
            stackless.schedule()

    for _ in range(100):
        stackless.tasklet(f)(n // 100)
    stackless.run()


def median_ns(workload):
    runs = []
    for _ in range(6):
        start = time.perf_counter()
        workload(N)
        runs.append((time.perf_counter() - start) * 1e9 / N)
    return sorted(runs[1:])[2]


if __name__ == "__main__":
    for name, workload in (("loop_call_ns", loop_call), ("loop_call_local_ns", loop_call_local),
                           ("schedule_ns", schedule)):
        print("python ours %s %.1f" % (name, median_ns(workload)), flush=True)
