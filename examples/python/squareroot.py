"""Listing 6 of the article (squareroot.py): Newton's method for a square root runs in a
tasklet, which is pickled after step 2 while it runs, and continues from the pickle.

    stackless squareroot.py 2

Numbers print as Python 2's str() printed them (12 significant digits), as in the article.
"""
import pickle
import sys

import stackless

STEPS = 5
PICKLE_AFTER = 3  # steps run before the tasklet is pickled


def py2_str(x):
    """str(float) of Python 2, which the article's output shows."""
    text = "%.12g" % x
    return text if any(c in text for c in ".en") else text + ".0"


def newton(n):
    x = n
    for step in range(STEPS):
        print("%d : %s" % (step, py2_str(x)))
        x = (x + n / x) / 2
        stackless.schedule()


def main():
    n = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    print("Square root of %s" % py2_str(n))
    print("-----")
    t = stackless.tasklet(newton)(n)
    for _ in range(PICKLE_AFTER):
        t.run()  # one step: the tasklet schedules back to us
    print("pickle")
    data = pickle.dumps(t)
    t.kill()  # the original is gone; only the pickle is left
    print("unpickle")
    restored = pickle.loads(data)
    restored.insert()
    stackless.run()


if __name__ == "__main__":
    main()
