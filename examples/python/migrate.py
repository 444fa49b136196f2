"""A running tasklet moves to another process.

    stackless migrate.py

The parent starts a tasklet that adds up the squares of the numbers it receives on a channel.
After four numbers, the tasklet is blocked in the middle of its loop, waiting for the fifth: the
parent pickles its channels (which carry the blocked tasklet), starts a child process and hands
it the pickle over a pipe. The child unpickles the channels; the tasklet is blocked on its
channel again there, and the child feeds it the remaining numbers. ROLE tells which process the
tasklet runs in: the tasklet reads it from its module's globals as it goes.
"""
import os
import pickle
import subprocess
import sys

import stackless

ROLE = "parent"


def sum_of_squares(numbers, result):
    total = 0
    for n in numbers:  # blocked here, in the loop, when the tasklet is pickled
        if n is None:
            break
        total += n * n
        print("%s: %d -> total %d" % (ROLE, n, total))
    result.send(total)


def parent():
    numbers, result = stackless.channel(), stackless.channel()
    stackless.tasklet(sum_of_squares)(numbers, result)
    for n in range(1, 5):
        numbers.send(n)
    data = pickle.dumps((numbers, result))
    print("parent: pickled the tasklet, blocked on its channel; handing it to a child process")
    sys.stdout.flush()
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], input=data,
                           stdout=subprocess.PIPE)
    sys.stdout.write(child.stdout.decode())
    if child.returncode != 0:
        sys.exit("the child process failed")


def child():
    global ROLE
    ROLE = "child"
    numbers, result = pickle.loads(sys.stdin.buffer.read())
    print("child: unpickled the channels; the tasklet waits on one: balance %d" % numbers.balance)
    for n in range(5, 9):
        numbers.send(n)
    numbers.send(None)
    print("child: the sum of the squares of 1..8 is %d" % result.receive())


if __name__ == "__main__":
    child() if sys.argv[1:] == ["--child"] else parent()
