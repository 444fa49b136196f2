"""Listing 3 of the article (sort.py): a "fairly inefficient sort algorithm", in Python 3.

Each number n gets a tasklet that yields n times and then sends n on a channel, so the tasklets
block on the channel in the order of their numbers; main then receives them while senders are
waiting (ch.balance > 0).

Usage: sort.py [SEED | random]   (default: random.seed(2007), so the output is reproducible)
"""
import random
import sys

import stackless

if len(sys.argv) > 1:
    if sys.argv[1] != 'random':
        random.seed(int(sys.argv[1]))
else:
    random.seed(2007)

numbers = list(range(20))
random.shuffle(numbers)
print(numbers)
print('Sorting...')


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
print(rlist)

stackless.run()  # let the senders, runnable again, finish (as examples/cpp/sort.cpp does)
