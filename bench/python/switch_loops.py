"""N channel transfers and N schedule() calls between two tasklets each: a fixed workload for
instruction counts, which do not drift on a shared machine. The difference between two sizes
divided by their difference in N is the cost of one iteration (four switches):

    PYTHONPATH=build/release/python valgrind --tool=callgrind /usr/bin/python3 \
        bench/python/switch_loops.py 20000      # and 120000
"""
import stackless, sys
N = int(sys.argv[1])
ch = stackless.channel()
def a(n):
    for i in range(n): ch.send(i)
def b(n):
    for i in range(n): ch.receive()
stackless.tasklet(a)(N); stackless.tasklet(b)(N); stackless.run()
def f(n):
    for i in range(n): stackless.schedule()
stackless.tasklet(f)(N); stackless.tasklet(f)(N); stackless.run()
