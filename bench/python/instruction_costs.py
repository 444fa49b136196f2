"""What a budget unit of stackless.run(timeout) is worth: for six loop shapes, the time per loop
iteration, and under Stackless 3.7 also how many instructions Stackless counts per iteration
(run(1000000) on the loop, iterations counted) and so its time per counted instruction.

    /work/slp/inst/bin/python3.7 bench/python/instruction_costs.py   # Stackless 3.7
    /usr/bin/python3 bench/python/instruction_costs.py               # CPython 3.11

watchdog.cpp's budget_ns and docs/python.md use these figures. Python 3.7 compatible."""
import sys
import time

try:
    import stackless
except ImportError:
    stackless = None


def s_while(state, n):
    x = 0
    while x < n:
        x += 1
        state[0] = x


def s_for(state, n):
    for i in range(n):
        state[0] = i


def s_call(state, n):
    def f(a):
        return a + 1
    i = 0
    while i < n:
        i = f(i)
        state[0] = i


def s_comp(state, n):
    k = 0
    while k < n:
        [j * 2 for j in range(100)]
        k += 100
        state[0] = k


def s_attr(state, n):
    class C:
        pass
    c = C()
    c.v = 0
    while c.v < n:
        c.v += 1
        state[0] = c.v


def s_busy(state, n):  # bench/python/watchdog_intervals.py's loop
    x = 0
    while 1:
        x += 1
        state[0] = x
        if x >= n:
            break


def main():
    counts = stackless is not None and "Stackless" in sys.version
    for f in (s_while, s_for, s_call, s_comp, s_attr, s_busy):
        s = [0]
        best = 1e9
        for _ in range(5):
            t = time.perf_counter()
            f(s, 300000)
            best = min(best, time.perf_counter() - t)
        ns_per_iteration = best * 1e9 / 300000
        line = "%-8s %.1f ns/iteration" % (f.__name__, ns_per_iteration)
        if counts:
            s = [0]
            t = stackless.tasklet(f)(s, 10 ** 9)
            stackless.run(1000)
            s[0] = 0
            t.insert()
            stackless.run(1000000)
            n = s[0]
            t.kill()
            line += "  counted/iteration %.2f  ns/counted %.1f" % (1e6 / n, ns_per_iteration * n / 1e6)
        print(line, flush=True)


if __name__ == "__main__":
    main()
