"""Mean time between two interruptions of a busy tasklet by stackless.run(budget), for budgets
10^3 .. 10^6: the same program under Stackless 3.7 and under this project's module, so that the
two can be compared side by side on one machine.

    /work/slp/inst/bin/python3.7 bench/python/watchdog_intervals.py     # Stackless 3.7
    ./stackless bench/python/watchdog_intervals.py                      # ours

Prints one line per budget: `intervals <interpreter> <budget> <mean µs> <loop iterations per
interruption> <fastest round's mean µs>`, the first two figures the median of 5 rounds (after a
warm-up round); the fastest round says more when the shared machine is busy. A round interrupts
the busy tasklet repeatedly for about 0.2 s (at least 20 times): run(budget) returns it, it is
inserted again, and so on; the mean interval is the round's time over its interruptions, so it
includes run()'s own work per interruption, as a program that calls run(budget) in a loop sees
it. Stackless counts bytecode instructions, ours time (docs/python.md), so the second column says
how much work a slice held (Stackless counts 3 instructions per iteration of this loop:
bench/python/instruction_costs.py).

Python 3.7 compatible (no f-strings with =, no walrus)."""
import sys
import time

import stackless

ROUNDS = 5
ROUND_SECONDS = 0.2
BUDGETS = (1000, 10000, 100000, 1000000)


def busy(state):
    x = 0
    while 1:
        x += 1
        state[0] = x


def one_round(budget):
    state = [0]
    t = stackless.tasklet(busy)(state)
    # The first run() starts the tasklet; measure from the first interruption on.
    first = stackless.run(budget)
    assert first is t, "not interrupted: %r" % (first,)
    interruptions = 0
    start_count = state[0]
    start = time.perf_counter()
    while True:
        t.insert()
        got = stackless.run(budget)
        assert got is t, "not interrupted: %r" % (got,)
        interruptions += 1
        elapsed = time.perf_counter() - start
        if elapsed >= ROUND_SECONDS and interruptions >= 20:
            break
    iterations = state[0] - start_count
    t.kill()
    return elapsed * 1e6 / interruptions, iterations / interruptions


def main():
    name = "stackless3.7" if "Stackless" in sys.version else "ours"
    for budget in BUDGETS:
        means, works = [], []
        for i in range(ROUNDS + 1):
            mean, work = one_round(budget)
            if i:
                means.append(mean)
                works.append(work)
        means.sort()
        works.sort()
        print("intervals %s %d %.1f %.0f %.1f" % (name, budget, means[ROUNDS // 2],
                                                   works[ROUNDS // 2], means[0]), flush=True)


if __name__ == "__main__":
    main()
