"""How switching, waking and memory scale with the number of tasklets: our `stackless` module,
greenlet and a real Stackless Python 3.7, side by side.

    ./stackless bench/python/scale.py                        # everything (a few minutes)
    ./stackless bench/python/scale.py --k 10,100 --systems ours,stackless37
    ./stackless bench/python/scale.py --workloads schedule --timeout 30 --repeat 1
    BENCH_VERBOSE=1 ...                                      # every batch's figure on stderr

Systems:
  ours         `import stackless` (this project), run by the interpreter running this script
  greenlet     raw greenlet.switch() on Debian's /usr/bin/python3 (no channels: no wake figures)
  stackless37  the interpreter named by the environment variable STACKLESS_PY (a Stackless
               Python 3.7; its PYTHONPATH is cleared); skipped with a note if unset or not
               runnable. The worker code below is shared with ours, so it is Python 3.7.
Every workload of every system runs in a fresh worker process: one per (system, workload, k),
so that no k's heap hides in another's baseline. For each k the systems run one after the other
(the order rotated per k), so that slow drifts of a shared machine hit them alike. For k up to
10,000 a worker's timed part is short enough (well under a second) for one burst of the shared
machine's load to cover all of it: there each figure is the median of 3 worker processes per
system, the systems interleaved (--repeat N: N processes for every k). A worker that
runs longer than --timeout seconds (60) is killed and a note on stderr says so: its figures have
no value, unless it had reported them (a worker reports once its checks have passed, then ends
its tasklets: greenlet at k = 1,000,000 may still be ending them at the timeout).

Figures, for k in 10, 100, 1,000, 10,000, 100,000, 1,000,000 (lines `python <system> <figure>
<value>`):
  schedule_k<k>_ns  ns per switch with k runnable tasklets. k tasklets each run
                    `while not stop: schedule()` (a closure; the flag a list cell); one untimed
                    round starts them all; then the main tasklet calls schedule() R times, each
                    call letting every tasklet switch once: k + 1 switches per round,
                    R = max(2, round(1,000,000 / (k + 1))). The R rounds are timed in
                    min(5, R) batches; the figure is the median batch's elapsed / (its rounds
                    x (k + 1)). Checked outside the time: the run count after each batch; then
                    the tasklets leave the timed loop for an identical loop that logs each
                    tasklet's count of schedule() calls, and two rounds must log exactly k
                    entries, each equal to the round's number (every tasklet ran exactly once
                    per round); the figure is reported; then they end and the run count must
                    be 1.
                    greenlet: a ring. Greenlet i switches to greenlet i + 1, the last one to the
                    main greenlet; the main greenlet switching to the first makes one round of
                    k + 1 switches (one switch per step, each into a different suspended
                    greenlet, as schedule() does), timed and checked the same way. (Each is
                    started by the main greenlet, so none nests in another's stack.)
  wake_k<k>_ns      ns per wake of a tasklet blocked on a channel. k tasklets each loop on
                    `receive()` of ONE channel with ch.preference = 1 (the sender keeps running;
                    the woken receiver is appended to the run queue). A round: the main tasklet
                    sends one value per blocked tasklet (k sends), then calls schedule(): the k
                    woken ones run and block in receive() again. R = max(2, round(1,000,000 /
                    k)) rounds after one untimed round, in min(5, R) batches; the figure is the
                    median batch's elapsed / (its rounds x k). Checked outside the time:
                    ch.balance == -k after each batch; then two rounds of an identical logging
                    loop, each checked after its sends (ch.balance == 0, run count k + 1) and
                    after its schedule() (ch.balance == -k, exactly k log entries equal to the
                    round's number); the figures are reported; then a None to each ends them.
  bytes_k<k>        resident bytes (/proc/self/statm) added per tasklet by the k tasklets of the
                    wake workload, measured before creating them and after the run() in which
                    they all block in receive() (before any timing).
                    greenlet: the k greenlets of the ring, measured before creating them and
                    after they have all started and gone round the ring once (each suspended in
                    its switch()).
  sleepsort_1000_ms (ours, stackless37) the article's Listing 3 with 1,000 shuffled numbers
                    (bench.py's workload): median of 5 runs after a warm-up run.
  million_blocked_rss_mib, million_blocked_s  (ours, stackless37) 1,000,000 tasklets each
                    blocked in ch.receive() called from a plain function: the resident MiB added
                    while all are blocked, and the seconds to create them, run them until all
                    are blocked, wake each with one send (default preference) and let every one
                    finish.

Goal lines (a report: the script exits 0 even when a goal is missed or a system cannot run),
`python goal <figure> <ours> <= <limit> met|MISSED`, the printed (rounded) figures compared:
  schedule_k<k>_ns, wake_k<k>_ns     limit: stackless37's figure at the same k (when measured)
  schedule_growth, wake_growth       ours k=100,000 / k=100 <= stackless37's same ratio
  sleepsort_1000_ms                  <= 0.8 x stackless37's
  million_blocked_rss_mib <= 1024, million_blocked_s <= 3
"""
import gc
import os
import random
import statistics
import subprocess
import sys
import time

from workers import check, environment_for_ours, sleepsort_times  # (beside this script)

PEER_PYTHON = "/usr/bin/python3"
SYSTEMS = ["ours", "greenlet", "stackless37"]
KS = [10, 100, 1000, 10000, 100000, 1000000]
WORKLOADS = ["schedule", "wake", "sleepsort", "million"]
TIMED_OPERATIONS = 1000000  # switches (schedule) or wakes (wake) timed per k, about
MIN_ROUNDS = 2
MAX_BATCHES = 5
CHECK_ROUNDS = 2  # untimed logging rounds after the timed ones
PROCESS_TIMEOUT = 60  # seconds per worker process
SMALL_K = 10000  # up to this k, each figure is the median of SMALL_K_REPEAT worker processes
SMALL_K_REPEAT = 3
SLEEPSORT_NUMBERS = 1000
SLEEPSORT_SEED = 2007
MEASURED_RUNS = 5
MILLION = 1000000
MIB = 1024 * 1024

GROWTH = (100, 100000)  # growth = figure at k=100,000 / figure at k=100
SLEEPSORT_FACTOR = 0.8
MILLION_RSS_GOAL = 1024
MILLION_SECONDS_GOAL = 3


def note(message):
    print("scale.py: " + message, file=sys.stderr, flush=True)


def verbose(message):
    if os.environ.get("BENCH_VERBOSE"):
        print(message, file=sys.stderr, flush=True)


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def report(system, figure, value, digits=1):
    print("python %s %s %.*f" % (system, figure, digits, value), flush=True)


def check_round(log, r, k):
    """The logging round `r` of k tasklets: each logged r exactly once. Empties the log."""
    check(len(log) == k and log.count(r) == k,
          "round %d: %d log entries, %d of them %d (k = %d)" % (r, len(log), log.count(r), r, k))
    del log[:]


class Phases:
    """Seconds spent in each phase of a worker, shown on stderr with BENCH_VERBOSE."""

    def __init__(self, what):
        self.what, self.parts, self.last = what, [], time.perf_counter()

    def __call__(self, name):
        now = time.perf_counter()
        self.parts.append("%s %.2f" % (name, now - self.last))
        self.last = now

    def show(self):
        verbose("%s phases (s): %s" % (self.what, ", ".join(self.parts)))


def batches(rounds):
    """`rounds` split into min(MAX_BATCHES, rounds) batches of nearly equal size."""
    n = min(MAX_BATCHES, rounds)
    return [rounds // n + (1 if i < rounds % n else 0) for i in range(n)]


def timed_batches(figure, rounds, run_rounds, per_round, between):
    """Times run_rounds(n) for each batch of `rounds`; calls between() (untimed checks) after
    each. Returns the median batch's ns per operation (per_round operations a round)."""
    values = []
    for n in batches(rounds):
        start = time.perf_counter()
        run_rounds(n)
        elapsed = time.perf_counter() - start
        values.append(elapsed * 1e9 / (n * per_round))
        between()
    verbose("%s batches (ns): %s" % (figure, " ".join("%.1f" % v for v in values)))
    return statistics.median(values)


# --- ours and stackless37: the same code, `import stackless` --------------------------------


def stackless_schedule(system, k):
    import stackless

    schedule = stackless.schedule
    flags = [False, False]  # leave the timed loop; leave the logging loop
    log = []

    def spinner():
        while not flags[0]:
            schedule()
        n = 0
        while not flags[1]:
            n += 1
            log.append(n)
            schedule()

    def expect_round(r):
        check_round(log, r, k)

    phase = Phases("%s schedule_k%d" % (system, k))
    for _ in range(k):
        stackless.tasklet(spinner)()
    check(stackless.getruncount() == k + 1, "not every tasklet is runnable")
    phase("create")
    gc.collect()
    schedule()  # untimed: every tasklet starts and calls schedule() once
    check(stackless.getruncount() == k + 1, "a tasklet is no longer runnable")
    phase("start")

    def run_rounds(n):
        for _ in range(n):
            schedule()

    def between():
        check(stackless.getruncount() == k + 1, "a tasklet is no longer runnable")

    rounds = max(MIN_ROUNDS, int(round(TIMED_OPERATIONS / (k + 1))))
    ns = timed_batches("schedule_k%d" % k, rounds, run_rounds, k + 1, between)
    phase("timed")
    flags[0] = True
    schedule()  # every tasklet leaves the timed loop and logs 1
    expect_round(1)
    for r in range(2, CHECK_ROUNDS + 1):
        schedule()
        expect_round(r)
    phase("check")
    report(system, "schedule_k%d_ns" % k, ns)  # checked: reported before the cleanup
    flags[1] = True
    schedule()  # every tasklet ends
    check(stackless.getruncount() == 1, "tasklets did not end")
    phase("end")
    phase.show()


def stackless_wake(system, k):
    import stackless

    ch = stackless.channel()
    ch.preference = 1  # the sender keeps running; the woken receiver joins the run queue
    schedule = stackless.schedule
    log = []
    ended = [0]

    def receiver():
        receive = ch.receive
        while receive() is not None:
            pass
        n = 0
        while receive() is not None:
            n += 1
            log.append(n)
        ended[0] += 1

    def expect_round(r):
        check(ch.balance == -k, "round %d: balance %d, not -%d" % (r, ch.balance, k))
        check_round(log, r, k)

    stackless.getruncount()  # creates this thread's scheduler before the baseline
    gc.collect()
    phase = Phases("%s wake_k%d" % (system, k))
    before = resident_bytes()
    for _ in range(k):
        stackless.tasklet(receiver)()
    phase("create")
    stackless.run()  # returns once every tasklet is blocked in receive()
    after = resident_bytes()
    phase("block")
    check(ch.balance == -k, "not every tasklet is blocked on the channel")
    check(stackless.getruncount() == 1, "a tasklet is still runnable")

    send = ch.send

    def run_rounds(n):
        for _ in range(n):
            for _ in range(k):
                send(0)
            schedule()

    def between():
        check(ch.balance == -k, "balance %d, not -%d" % (ch.balance, k))

    run_rounds(1)  # untimed
    between()
    gc.collect()
    rounds = max(MIN_ROUNDS, int(round(TIMED_OPERATIONS / k)))
    phase("first round")
    ns = timed_batches("wake_k%d" % k, rounds, run_rounds, k, between)
    phase("timed")
    for _ in range(k):
        send(None)  # leave the timed loop for the logging one
    schedule()
    check(ch.balance == -k and not log, "the receivers did not all block in the logging loop")
    for r in range(1, CHECK_ROUNDS + 1):
        for _ in range(k):
            send(0)
        check(ch.balance == 0 and stackless.getruncount() == k + 1,
              "after the sends: balance %d, run count %d" % (ch.balance, stackless.getruncount()))
        schedule()
        expect_round(r)
    phase("check")
    report(system, "bytes_k%d" % k, (after - before) / k)
    report(system, "wake_k%d_ns" % k, ns)  # checked: reported before the cleanup
    for _ in range(k):
        send(None)
    schedule()
    check(ended[0] == k and ch.balance == 0 and stackless.getruncount() == 1,
          "the receivers did not all end")
    phase("end")
    phase.show()


def stackless_sleepsort(system):
    """bench.py's sleepsort (the article's Listing 3), timed the same way."""
    import stackless

    numbers = list(range(SLEEPSORT_NUMBERS))
    random.Random(SLEEPSORT_SEED).shuffle(numbers)
    values = sleepsort_times(stackless, numbers, MEASURED_RUNS)
    verbose("sleepsort runs (ms): " + " ".join("%.1f" % v for v in values))
    report(system, "sleepsort_1000_ms", values[MEASURED_RUNS // 2])


def blocked_in_receive(ch):
    ch.receive()


def stackless_million(system):
    import stackless

    ch = stackless.channel()
    stackless.getruncount()  # creates this thread's scheduler before the baseline
    gc.collect()
    before = resident_bytes()
    start = time.perf_counter()
    tasklet = stackless.tasklet
    for _ in range(MILLION):
        tasklet(blocked_in_receive)(ch)
    stackless.run()  # returns once every tasklet is blocked in receive()
    blocked = resident_bytes()
    check(ch.balance == -MILLION, "not every tasklet is blocked on the channel")
    send = ch.send
    for _ in range(MILLION):
        send(None)  # default preference: the receiver runs at once, and ends
    stackless.run()
    elapsed = time.perf_counter() - start
    check(ch.balance == 0 and stackless.getruncount() == 1, "the tasklets did not all end")
    report(system, "million_blocked_rss_mib", (blocked - before) / MIB)
    report(system, "million_blocked_s", elapsed, 2)


# --- greenlet --------------------------------------------------------------------------------


def greenlet_schedule(system, k):
    import functools

    import greenlet

    main = greenlet.getcurrent()
    flags = [False, False]  # leave the timed loop; leave the logging loop
    log = []

    def member(successor):
        main.switch()  # started by the main greenlet: back to it at once
        switch = successor.switch
        while not flags[0]:
            switch()
        n = 0
        while not flags[1]:
            n += 1
            log.append(n)
            switch()

    def expect_round(r):
        check_round(log, r, k)

    ring = [None] * k  # allocated before the baseline
    gc.collect()
    phase = Phases("%s schedule_k%d" % (system, k))
    before = resident_bytes()
    successor = main
    for i in range(k - 1, -1, -1):  # the last one first: each is given its successor
        successor = ring[i] = greenlet.greenlet(functools.partial(member, successor))
    phase("create")
    # Untimed: each is started by the main greenlet, not by its predecessor (a greenlet started
    # from another one would nest in its stack and its recursion depth, k deep), and is left
    # suspended in member()'s first switch; one round then brings each into its ring loop.
    for g in ring:
        g.switch()
    ring[0].switch()
    after = resident_bytes()
    phase("start")
    check(all(not g.dead for g in ring), "a greenlet ended")
    first = ring[0].switch

    def run_rounds(n):
        for _ in range(n):
            first()

    def between():
        check(not ring[0].dead and not ring[-1].dead, "a greenlet ended")

    rounds = max(MIN_ROUNDS, int(round(TIMED_OPERATIONS / (k + 1))))
    ns = timed_batches("schedule_k%d" % k, rounds, run_rounds, k + 1, between)
    phase("timed")
    flags[0] = True
    first()  # every greenlet leaves the timed loop and logs 1
    expect_round(1)
    for r in range(2, CHECK_ROUNDS + 1):
        first()
        expect_round(r)
    phase("check")
    report(system, "bytes_k%d" % k, (after - before) / k)
    report(system, "schedule_k%d_ns" % k, ns)  # checked: reported before the cleanup
    flags[1] = True
    for g in ring:
        g.switch()  # it leaves its loop and ends: back to its parent, the main greenlet
    check(all(g.dead for g in ring), "greenlets did not end")
    phase("end")
    phase.show()


WORKERS = {
    ("ours", "schedule"): stackless_schedule, ("stackless37", "schedule"): stackless_schedule,
    ("ours", "wake"): stackless_wake, ("stackless37", "wake"): stackless_wake,
    ("ours", "sleepsort"): stackless_sleepsort, ("stackless37", "sleepsort"): stackless_sleepsort,
    ("ours", "million"): stackless_million, ("stackless37", "million"): stackless_million,
    ("greenlet", "schedule"): greenlet_schedule,
}


# --- driver (run by the script's interpreter, CPython 3.11) ----------------------------------


def worker_command(system):
    """The interpreter and environment that run a worker of `system`, or None."""
    if system == "ours":
        env = environment_for_ours("scale.py", note)
        return None if env is None else ([sys.executable], env)
    env = dict(os.environ)
    if system == "greenlet":
        python, probe = PEER_PYTHON, "import greenlet"
    else:
        python = os.environ.get("STACKLESS_PY")
        if not python:
            note("stackless37 skipped: the environment variable STACKLESS_PY (a Stackless "
                 "Python 3.7 interpreter) is not set")
            return None
        env.pop("PYTHONPATH", None)  # our module's directory is not for it
        env.pop("PYTHONHOME", None)
        probe = "import sys, stackless; assert 'Stackless' in sys.version, sys.version"
    try:
        r = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=env,
                           timeout=PROCESS_TIMEOUT)
        ok = r.returncode == 0
        why = (r.stderr.strip().splitlines() or ["status %d" % r.returncode])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, why = False, str(e)
    if not ok:
        note("%s skipped: `%s` failed with %s (%s)" % (system, probe, python, why))
        return None
    return [python], env


def run_worker(command, env, system, workload, k, timeout):
    """Runs one worker process; returns {figure: value as printed} of what it reported."""
    what = "%s %s%s" % (system, workload, "" if k is None else " k=%d" % k)
    args = command + [os.path.abspath(__file__), "--worker", system, workload]
    if k is not None:
        args.append(str(k))
    start = time.monotonic()
    try:
        r = subprocess.run(args, stdout=subprocess.PIPE, text=True, env=env, timeout=timeout)
        out, status = r.stdout, r.returncode
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed the worker
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = None
    figures = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[:2] == ["python", system]:
            figures[fields[2]] = fields[3]
        else:
            print(line, flush=True)
    if status is None and figures:
        note("%s: stopped after the %g s timeout while ending its tasklets, after its checked "
             "figures were reported" % (what, timeout))
    elif status is None:
        note("%s: stopped after the %g s timeout; no value" % (what, timeout))
    elif status != 0:
        note("%s exited with status %d" % (what, status))
    verbose("%s: %.1f s" % (what, time.monotonic() - start))
    return figures


def goal(figure, value, limit, digits=1):
    """A goal line: the printed (rounded) figures are compared, so each line agrees with itself."""
    if value is None:
        print("python goal %s n/a <= %.*f MISSED" % (figure, digits, limit), flush=True)
        return
    shown, bound = round(value, digits), round(limit, digits)
    print("python goal %s %.*f <= %.*f %s" % (figure, digits, shown, digits, bound,
                                              "met" if shown <= bound else "MISSED"), flush=True)


def parse_list(parser, text, allowed, what):
    """The comma-separated items of `text`, each in `allowed` (or, for k, a positive integer)."""
    try:
        items = [int(x) if what == "k" else x for x in text.split(",") if x]
    except ValueError:
        parser.error("--k takes comma-separated integers, not %r" % text)
    unknown = [x for x in items if (x < 1 if what == "k" else x not in allowed)]
    if unknown and what == "k":
        parser.error("k must be positive, not %s" % unknown)
    if unknown:
        parser.error("unknown %s %s; choose among %s" % (what, unknown, allowed))
    return items


def main(argv):
    if len(argv) >= 3 and argv[0] == "--worker":
        system, workload = argv[1], argv[2]
        WORKERS[(system, workload)](system, *[int(a) for a in argv[3:]])
        return 0
    import argparse

    parser = argparse.ArgumentParser(
        description="How switching, waking and memory scale with the number of tasklets: ours, "
        "greenlet and Stackless 3.7 ($STACKLESS_PY). The figures are defined in this script's "
        "docstring.")
    parser.add_argument("--k", default=",".join(map(str, KS)),
                        help="comma-separated k values (default %s)" % ",".join(map(str, KS)))
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated systems, among %s" % SYSTEMS)
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated workloads, among %s" % WORKLOADS)
    parser.add_argument("--repeat", type=int, default=0,
                        help="worker processes per figure of the k workloads (default: %d for "
                        "k <= %d, else 1)" % (SMALL_K_REPEAT, SMALL_K))
    parser.add_argument("--timeout", type=float, default=PROCESS_TIMEOUT,
                        help="seconds per worker process (default %d)" % PROCESS_TIMEOUT)
    args = parser.parse_args(argv)
    ks = parse_list(parser, args.k, KS, "k")
    systems = parse_list(parser, args.systems, SYSTEMS, "systems")
    workloads = parse_list(parser, args.workloads, WORKLOADS, "workloads")

    commands = {}
    for system in systems:
        command = worker_command(system)
        if command is not None:
            commands[system] = command
    order = [s for s in SYSTEMS if s in commands]
    results = {}
    attempted = set()
    start = time.monotonic()

    def measure(workload, systems_in_order, k=None, repeat=1):
        """Runs each system's worker `repeat` times (fresh processes, the systems interleaved),
        then prints each figure: the median over the processes that reported it."""
        runs = [s for s in systems_in_order if (s, workload) in WORKERS]
        collected = dict((s, {}) for s in runs)
        for _ in range(repeat):
            for system in runs:
                attempted.add((system, workload))
                command, env = commands[system]
                figures = run_worker(command, env, system, workload, k, args.timeout)
                for figure, text in figures.items():
                    collected[system].setdefault(figure, []).append(text)
        for system in runs:
            for figure, texts in collected[system].items():
                ordered = sorted(texts, key=float)
                chosen = ordered[(len(ordered) - 1) // 2]  # the median (the lower of two)
                if repeat > 1:
                    verbose("%s %s over %d processes: %s" % (system, figure, len(texts),
                                                             " ".join(ordered)))
                    if len(texts) < repeat:
                        note("%s %s: %d of %d processes reported it" % (system, figure,
                                                                        len(texts), repeat))
                print("python %s %s %s" % (system, figure, chosen), flush=True)
                results[(system, figure)] = float(chosen)

    for i, k in enumerate(ks):
        rotated = order[i % len(order):] + order[:i % len(order)] if order else []
        repeat = args.repeat or (SMALL_K_REPEAT if k <= SMALL_K else 1)
        for workload in ("schedule", "wake"):
            if workload in workloads:
                measure(workload, rotated, k, repeat)
    for workload in ("sleepsort", "million"):
        if workload in workloads:
            measure(workload, order)

    def value(system, figure):
        return results.get((system, figure))

    if ("ours", "schedule") in attempted or ("ours", "wake") in attempted:
        for workload in ("schedule", "wake"):
            if ("ours", workload) not in attempted:
                continue
            for k in ks:
                figure = "%s_k%d_ns" % (workload, k)
                limit = value("stackless37", figure)
                if limit is not None:
                    goal(figure, value("ours", figure), limit)
            low, high = ("%s_k%d_ns" % (workload, g) for g in GROWTH)
            theirs_low, theirs_high = value("stackless37", low), value("stackless37", high)
            if theirs_low and theirs_high is not None:
                ours_low, ours_high = value("ours", low), value("ours", high)
                ours = ours_high / ours_low if ours_low and ours_high is not None else None
                goal("%s_growth" % workload, ours, theirs_high / theirs_low, 2)
    if ("ours", "sleepsort") in attempted:
        limit = value("stackless37", "sleepsort_1000_ms")
        if limit is not None:
            goal("sleepsort_1000_ms", value("ours", "sleepsort_1000_ms"),
                 SLEEPSORT_FACTOR * limit)
    if ("ours", "million") in attempted:
        goal("million_blocked_rss_mib", value("ours", "million_blocked_rss_mib"),
             MILLION_RSS_GOAL)
        goal("million_blocked_s", value("ours", "million_blocked_s"), MILLION_SECONDS_GOAL, 2)
    note("done in %.0f s" % (time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
