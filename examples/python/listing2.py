"""Listing 2 of the article (example.py): two tasklets, started by stackless.run().

run() takes the main tasklet out of the scheduler and returns when no tasklet is left to run;
each tasklet prints, yields to the other with schedule(), and prints again:

    a before
    b before
    a after
    b after
"""
import stackless


def f(c):
    print(c, 'before')
    stackless.schedule()
    print(c, 'after')


stackless.tasklet(f)('a')
stackless.tasklet(f)('b')
stackless.run()
