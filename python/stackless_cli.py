"""The `stackless` command that `pip install` puts next to the interpreter: runs Python with the
installed stackless module, as the repository's ./stackless launcher does with the built one.

    stackless FILE.py [ARGS]       python FILE.py ARGS
    stackless -m MODULE [ARGS]     python -m MODULE ARGS
    stackless -c CODE [ARGS]       python -c CODE ARGS
    stackless [OPTIONS] ...        any python arguments (stackless -u FILE.py; no argument: the
                                   interactive interpreter)

The command becomes the interpreter it was installed for (sys.executable: a virtual
environment's python), which imports the installed module; so exit status, tracebacks, signals
and sys.argv are exactly those of `python ARGS`, as with the launcher's `exec python3 "$@"`.
"""
import os
import sys


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    python = sys.executable
    if not python:
        sys.exit("stackless: cannot tell which Python interpreter to run (sys.executable is "
                 "empty)")
    try:
        os.execv(python, [python] + args)
    except OSError as e:
        sys.exit("stackless: cannot run %s: %s" % (python, e))


if __name__ == "__main__":
    main()
