"""Listing 1 of the article, "First Steps", as a script.

The interactive session it reproduces:

    >>> import stackless
    >>> def f():
    ...     print "1"
    ...     stackless.schedule()
    ...     print "2"
    ...
    >>> f_task = stackless.tasklet(f)()
    >>> stackless.schedule(None)
    1
    >>> stackless.schedule(None)
    2

The main tasklet calls schedule() twice, as the session does: the first hands control to
f_task, which prints 1 and hands it back; the second lets f_task print 2 and end.
"""
import stackless


def f():
    print("1")
    stackless.schedule()
    print("2")


f_task = stackless.tasklet(f)()
stackless.schedule(None)  # f_task prints 1, then schedules back to main
stackless.schedule(None)  # f_task prints 2 and ends; main goes on
raise SystemExit(1 if f_task.alive else 0)
