"""The Python workloads of /work/shared/ANCHORS.md on our `stackless` module and its peers.

    /work/main/stackless bench/python/bench.py        # everything (about 2 minutes)
    /work/main/stackless bench/python/bench.py ours   # only the named systems
    BENCH_VERBOSE=1 ...                               # every run's figure on stderr

Systems:
  ours      `import stackless` (this project), run by the interpreter running this script
  greenlet  raw greenlet.switch() ping-pong (ns per switch); memory of suspended greenlets
  gevent    gevent.queue.Channel, gevent.sleep(0), gevent.spawn
  asyncio   asyncio.Queue(1), asyncio.sleep(0), loop.create_task (sleepsort: an unbounded Queue)
The peers run on Debian's /usr/bin/python3. Each system runs in its own processes: one for the
timing workloads (each the median of 5 runs after a warm-up run), a fresh one for memory.

Workloads (ANCHORS.md):
  pingpong   two tasklets pass an integer back and forth over two channels, 500,000 round
             trips; ns per channel transfer (one send matched by one receive, with the switch)
  schedule   100 tasklets each call schedule() 5,000 times; ns per switch
  spawn_run  create 200,000 tasklets that do nothing, run them all; ns per tasklet
  memory     100,000 tasklets each blocked in receive() on one channel; resident bytes
             (/proc/self/statm) added per blocked tasklet
  sleepsort  the article's Listing 3 with 1,000 numbers; total milliseconds
  watchdog   (ours only) a CPU-bound tasklet (3,000,000 loop iterations) under run(100000),
             inserted again after each interruption until it ends: its speed relative to the
             same tasklet under plain run() (issue 5's goal: at least 2/3)
  pickle     (ours only: the peers cannot pickle a running tasklet) a tasklet blocked in
             receive() 11 frames deep, with its channel: microseconds per pickle.dumps and per
             pickle.loads (the loaded tasklets are kept until the batch's time is taken, then
             dropped; dropping one kills it, which is not part of loads)

Output, one line per figure: `python <system> <figure> <value>`; then the Stackless 3.7
reference figures of ANCHORS.md (`python stackless37 <figure> <value> reference`: they cannot
be measured here), our ratios to them, and our goals:
`python goal <figure> <value> <= <limit> met|MISSED`. It is a report: it exits 0 even when a
goal is missed or a system cannot run (a note on stderr says why).
"""
import gc
import os
import random
import subprocess
import sys
import time

from workers import check, environment_for_ours, sleepsort_times  # (beside this script)

PEER_PYTHON = "/usr/bin/python3"
SYSTEMS = ["ours", "greenlet", "gevent", "asyncio"]

PINGPONG_ROUND_TRIPS = 500_000
SCHEDULE_TASKLETS = 100
SCHEDULE_YIELDS = 5_000
SPAWN_TASKLETS = 200_000
MEMORY_TASKLETS = 100_000
SLEEPSORT_NUMBERS = 1_000
SLEEPSORT_SEED = 2007
MEASURED_RUNS = 5  # per timing workload, after one warm-up run
PICKLE_DEPTH = 11  # frames of the pickled tasklet (ANCHORS.md), the last one blocked in receive()
PICKLE_BATCH = 200  # pickles made or loaded per timed batch
WATCHDOG_LOOP = 3_000_000  # iterations of the CPU-bound tasklet run under run(timeout)
WATCHDOG_BUDGET = 100_000  # run(timeout)'s instruction budget for it
WATCHDOG_GOAL = 2 / 3  # its speed relative to plain run(), at least

FIGURES = ["pingpong_ns_per_transfer", "schedule_ns_per_switch", "spawn_run_ns_per_tasklet",
           "memory_bytes_per_blocked_tasklet", "sleepsort_1000_ms", "pickle_dumps_us",
           "pickle_loads_us"]
GOALS = {"pingpong_ns_per_transfer": 40, "schedule_ns_per_switch": 35,
         "spawn_run_ns_per_tasklet": 450, "memory_bytes_per_blocked_tasklet": 1024,
         "sleepsort_1000_ms": 20, "pickle_dumps_us": 20, "pickle_loads_us": 8}
STACKLESS37 = {"pingpong_ns_per_transfer": 76, "schedule_ns_per_switch": 59,
               "spawn_run_ns_per_tasklet": 1160, "memory_bytes_per_blocked_tasklet": 600,
               "sleepsort_1000_ms": 29, "pickle_dumps_us": 40, "pickle_loads_us": 15}


def note(message):
    print("bench.py: " + message, file=sys.stderr, flush=True)


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def report(system, figure, value):
    print("python %s %s %.1f" % (system, figure, value), flush=True)


def median_of_runs(figure, workload, scale):
    """Median over MEASURED_RUNS runs of workload() after a warm-up run; each run's elapsed
    seconds times `scale` (e.g. 1e9 / operations for ns per operation)."""
    def once():
        gc.collect()
        start = time.perf_counter()
        workload()
        return (time.perf_counter() - start) * scale

    once()
    values = sorted(once() for _ in range(MEASURED_RUNS))
    if os.environ.get("BENCH_VERBOSE"):
        print("%s runs: %s" % (figure, " ".join("%.1f" % v for v in values)), file=sys.stderr)
    return values[MEASURED_RUNS // 2]


def shuffled_numbers():
    numbers = list(range(SLEEPSORT_NUMBERS))
    random.Random(SLEEPSORT_SEED).shuffle(numbers)
    return numbers



# --- ours ------------------------------------------------------------------------------------


def blocked_deep(ch, n):
    """The pickle workload's tasklet: n frames of this function, the last blocked in receive().
    (At module level, as a program's functions are: found by name when it is unpickled.)"""
    if n == 1:
        return ch.receive()
    return blocked_deep(ch, n - 1) + 1


def ours(family):
    import stackless

    def pingpong():
        ping, pong = stackless.channel(), stackless.channel()

        def a(n):
            for i in range(n):
                ping.send(i)
                pong.receive()

        def b(n):
            for i in range(n):
                pong.send(ping.receive())

        stackless.tasklet(a)(PINGPONG_ROUND_TRIPS)
        stackless.tasklet(b)(PINGPONG_ROUND_TRIPS)
        stackless.run()

    def schedule():
        def f(n):
            for i in range(n):
                stackless.schedule()

        for _ in range(SCHEDULE_TASKLETS):
            stackless.tasklet(f)(SCHEDULE_YIELDS)
        stackless.run()

    def spawn_run():
        def nothing():
            pass

        tasklet = stackless.tasklet
        for _ in range(SPAWN_TASKLETS):
            tasklet(nothing)()
        stackless.run()

    def pickling():
        import pickle

        ch = stackless.channel()
        t = stackless.tasklet(blocked_deep)(ch, PICKLE_DEPTH)
        stackless.run()
        check(t.blocked, "the pickled tasklet is not blocked")
        data = pickle.dumps(t, pickle.HIGHEST_PROTOCOL)
        check(pickle.loads(data).blocked, "the unpickled tasklet is not blocked")
        t2, ch2 = pickle.loads(pickle.dumps((t, ch)))
        ch2.send(0)  # it resumes, returns through its 11 frames and ends
        check(not t2.alive, "the unpickled tasklet did not finish")
        dumps_times, loads_times = [], []
        for _ in range(MEASURED_RUNS + 1):
            start = time.perf_counter()
            for _ in range(PICKLE_BATCH):
                pickle.dumps(t, pickle.HIGHEST_PROTOCOL)
            dumps_times.append((time.perf_counter() - start) * 1e6 / PICKLE_BATCH)
            kept = []
            start = time.perf_counter()
            for _ in range(PICKLE_BATCH):
                kept.append(pickle.loads(data))
            loads_times.append((time.perf_counter() - start) * 1e6 / PICKLE_BATCH)
            del kept
        t.kill()
        dumps_times, loads_times = sorted(dumps_times[1:]), sorted(loads_times[1:])
        if os.environ.get("BENCH_VERBOSE"):
            print("pickle dumps runs: %s; loads runs: %s" % (
                " ".join("%.1f" % v for v in dumps_times),
                " ".join("%.1f" % v for v in loads_times)), file=sys.stderr)
        return dumps_times[MEASURED_RUNS // 2], loads_times[MEASURED_RUNS // 2]

    def watchdog():
        """Speed of a CPU-bound tasklet under run(WATCHDOG_BUDGET), interrupted and inserted
        again until it ends, relative to the same tasklet under plain run() (issue 5: >= 2/3)."""
        def work(n):
            total = 0
            for i in range(n):
                total += i
            return total

        def plain():
            stackless.tasklet(work)(WATCHDOG_LOOP)
            start = time.perf_counter()
            stackless.run()
            return time.perf_counter() - start

        def timed():
            stackless.tasklet(work)(WATCHDOG_LOOP)
            start = time.perf_counter()
            interruptions = 0
            while True:
                t = stackless.run(WATCHDOG_BUDGET)
                if t is None:
                    break
                interruptions += 1
                t.insert()
            return time.perf_counter() - start, interruptions

        ratios = []
        for _ in range(MEASURED_RUNS + 1):
            p = plain()
            t, interruptions = timed()
            check(interruptions > 0, "the watchdog interrupted nothing")
            ratios.append(p / t)
        ratios = sorted(ratios[1:])
        if os.environ.get("BENCH_VERBOSE"):
            print("watchdog ratios: %s" % " ".join("%.2f" % r for r in ratios), file=sys.stderr)
        return ratios[MEASURED_RUNS // 2]

    if family == "time":
        print("python ours watchdog_speed_ratio %.2f" % watchdog(), flush=True)
        dumps_us, loads_us = pickling()
        report("ours", "pickle_dumps_us", dumps_us)
        report("ours", "pickle_loads_us", loads_us)
        report("ours", "pingpong_ns_per_transfer",
               median_of_runs("pingpong", pingpong, 1e9 / (2 * PINGPONG_ROUND_TRIPS)))
        report("ours", "schedule_ns_per_switch",
               median_of_runs("schedule", schedule, 1e9 / (SCHEDULE_TASKLETS * SCHEDULE_YIELDS)))
        report("ours", "spawn_run_ns_per_tasklet",
               median_of_runs("spawn_run", spawn_run, 1e9 / SPAWN_TASKLETS))
        values = sleepsort_times(stackless, shuffled_numbers(), MEASURED_RUNS)
        if os.environ.get("BENCH_VERBOSE"):
            print("sleepsort runs: " + " ".join("%.1f" % v for v in values), file=sys.stderr)
        report("ours", "sleepsort_1000_ms", values[MEASURED_RUNS // 2])
    else:
        ch = stackless.channel()
        stackless.getruncount()  # creates this thread's scheduler before the baseline
        gc.collect()
        before = resident_bytes()
        for _ in range(MEMORY_TASKLETS):
            stackless.tasklet(ch.receive)()
        stackless.run()  # returns once every tasklet is blocked in receive()
        after = resident_bytes()
        check(ch.balance == -MEMORY_TASKLETS, "not every tasklet is blocked on the channel")
        report("ours", "memory_bytes_per_blocked_tasklet", (after - before) / MEMORY_TASKLETS)
        for i in range(MEMORY_TASKLETS):
            ch.send(i)
        stackless.run()


# --- greenlet --------------------------------------------------------------------------------


def greenlet_system(family):
    import greenlet

    main = greenlet.getcurrent()
    if family == "time":
        def pingpong():
            def echo(v):
                while True:
                    v = main.switch(v + 1)

            g = greenlet.greenlet(echo)
            v = 0
            for _ in range(PINGPONG_ROUND_TRIPS):
                v = g.switch(v)
            check(v == PINGPONG_ROUND_TRIPS, "greenlet ping-pong lost a value")
            g.throw(greenlet.GreenletExit)

        # two switches per round trip: the figure is ns per switch
        report("greenlet", "pingpong_ns_per_transfer",
               median_of_runs("pingpong", pingpong, 1e9 / (2 * PINGPONG_ROUND_TRIPS)))
    else:
        def blocked():
            main.switch()

        gc.collect()
        before = resident_bytes()
        greenlets = []
        for _ in range(MEMORY_TASKLETS):
            g = greenlet.greenlet(blocked)
            g.switch()  # runs until it switches back: suspended in its function
            greenlets.append(g)
        after = resident_bytes()
        check(all(not g.dead for g in greenlets), "a greenlet ended")
        report("greenlet", "memory_bytes_per_blocked_tasklet",
               (after - before) / MEMORY_TASKLETS)
        for g in greenlets:
            g.switch()


# --- gevent ----------------------------------------------------------------------------------


def gevent_system(family):
    import gevent
    from gevent.queue import Channel

    gevent.sleep(0)  # starts the hub
    if family == "time":
        def pingpong():
            ping, pong = Channel(), Channel()

            def a(n):
                for i in range(n):
                    ping.put(i)
                    pong.get()

            def b(n):
                for i in range(n):
                    pong.put(ping.get())

            gevent.joinall([gevent.spawn(a, PINGPONG_ROUND_TRIPS),
                            gevent.spawn(b, PINGPONG_ROUND_TRIPS)])

        def schedule():
            def f(n):
                for i in range(n):
                    gevent.sleep(0)

            gevent.joinall([gevent.spawn(f, SCHEDULE_YIELDS) for _ in range(SCHEDULE_TASKLETS)])

        def spawn_run():
            def nothing():
                pass

            spawn = gevent.spawn
            gevent.joinall([spawn(nothing) for _ in range(SPAWN_TASKLETS)])

        def sleepsort():
            numbers = shuffled_numbers()

            def counter(n, ch):
                for i in range(n):
                    gevent.sleep(0)
                ch.put(n)

            ch = Channel()
            greenlets = [gevent.spawn(counter, each, ch) for each in numbers]
            rlist = [ch.get() for _ in numbers]
            gevent.joinall(greenlets)
            check(rlist == sorted(numbers), "sleepsort did not sort")

        report("gevent", "pingpong_ns_per_transfer",
               median_of_runs("pingpong", pingpong, 1e9 / (2 * PINGPONG_ROUND_TRIPS)))
        report("gevent", "schedule_ns_per_switch",
               median_of_runs("schedule", schedule, 1e9 / (SCHEDULE_TASKLETS * SCHEDULE_YIELDS)))
        report("gevent", "spawn_run_ns_per_tasklet",
               median_of_runs("spawn_run", spawn_run, 1e9 / SPAWN_TASKLETS))
        report("gevent", "sleepsort_1000_ms", median_of_runs("sleepsort", sleepsort, 1e3))
    else:
        ch = Channel()
        gc.collect()
        before = resident_bytes()
        greenlets = [gevent.spawn(ch.get) for _ in range(MEMORY_TASKLETS)]
        gevent.sleep(0)  # every one runs until it blocks in get()
        after = resident_bytes()
        check(ch.balance == -MEMORY_TASKLETS, "not every greenlet is blocked on the channel")
        report("gevent", "memory_bytes_per_blocked_tasklet", (after - before) / MEMORY_TASKLETS)
        for i in range(MEMORY_TASKLETS):
            ch.put(i)
        gevent.joinall(greenlets)


# --- asyncio ---------------------------------------------------------------------------------


def asyncio_system(family):
    import asyncio

    async def pingpong():
        ping, pong = asyncio.Queue(1), asyncio.Queue(1)

        async def a(n):
            for i in range(n):
                await ping.put(i)
                await pong.get()

        async def b(n):
            for i in range(n):
                await pong.put(await ping.get())

        await asyncio.gather(a(PINGPONG_ROUND_TRIPS), b(PINGPONG_ROUND_TRIPS))

    async def schedule():
        async def f(n):
            for i in range(n):
                await asyncio.sleep(0)

        await asyncio.gather(*[f(SCHEDULE_YIELDS) for _ in range(SCHEDULE_TASKLETS)])

    async def spawn_run():
        async def nothing():
            pass

        create_task = asyncio.get_running_loop().create_task
        await asyncio.gather(*[create_task(nothing()) for _ in range(SPAWN_TASKLETS)])

    async def sleepsort():
        numbers = shuffled_numbers()

        async def counter(n, q):
            for i in range(n):
                await asyncio.sleep(0)
            await q.put(n)

        q = asyncio.Queue()  # unbounded: a bounded queue is no rendezvous, the order would mix
        tasks = [asyncio.get_running_loop().create_task(counter(each, q)) for each in numbers]
        rlist = [await q.get() for _ in numbers]
        await asyncio.gather(*tasks)
        check(rlist == sorted(numbers), "sleepsort did not sort")

    async def median_async(figure, workload, scale):
        async def once():
            gc.collect()
            start = time.perf_counter()
            await workload()
            return (time.perf_counter() - start) * scale

        await once()
        values = sorted([await once() for _ in range(MEASURED_RUNS)])
        if os.environ.get("BENCH_VERBOSE"):
            print("%s runs: %s" % (figure, " ".join("%.1f" % v for v in values)),
                  file=sys.stderr)
        return values[MEASURED_RUNS // 2]

    async def timing():
        report("asyncio", "pingpong_ns_per_transfer",
               await median_async("pingpong", pingpong, 1e9 / (2 * PINGPONG_ROUND_TRIPS)))
        report("asyncio", "schedule_ns_per_switch",
               await median_async("schedule", schedule,
                                  1e9 / (SCHEDULE_TASKLETS * SCHEDULE_YIELDS)))
        report("asyncio", "spawn_run_ns_per_tasklet",
               await median_async("spawn_run", spawn_run, 1e9 / SPAWN_TASKLETS))
        report("asyncio", "sleepsort_1000_ms", await median_async("sleepsort", sleepsort, 1e3))

    async def memory():
        q = asyncio.Queue()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        gc.collect()
        before = resident_bytes()
        tasks = [loop.create_task(q.get()) for _ in range(MEMORY_TASKLETS)]
        await asyncio.sleep(0)  # every task runs until it blocks in get()
        after = resident_bytes()
        check(all(not t.done() for t in tasks), "a task is not blocked")
        report("asyncio", "memory_bytes_per_blocked_tasklet", (after - before) / MEMORY_TASKLETS)
        for i in range(MEMORY_TASKLETS):
            q.put_nowait(i)
        await asyncio.gather(*tasks)

    asyncio.run(timing() if family == "time" else memory())


WORKERS = {"ours": ours, "greenlet": greenlet_system, "gevent": gevent_system,
           "asyncio": asyncio_system}


# --- driver ----------------------------------------------------------------------------------


def worker_command(system):
    """The command and environment that run a worker of `system`, or None if it cannot run."""
    env = dict(os.environ)
    if system == "ours":
        env = environment_for_ours("bench.py", note)
        if env is None:
            return None
        python = sys.executable
    else:
        python = PEER_PYTHON
        probe = subprocess.run([python, "-c", "import " + system], capture_output=True,
                               text=True, env=env)
        if probe.returncode != 0:
            note("%s skipped: `import %s` failed with %s" % (system, system, python))
            return None
    return [python, os.path.abspath(__file__), "--worker", system], env


def main(argv):
    if len(argv) >= 3 and argv[0] == "--worker":
        WORKERS[argv[1]](argv[2])
        return 0
    systems = argv or SYSTEMS
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        note("unknown systems %s; choose among %s" % (unknown, SYSTEMS))
        return 2
    commands = {}
    for system in systems:
        command = worker_command(system)
        if command is not None:
            commands[system] = command
    results = {}
    start = time.monotonic()
    # Timing first, then memory in fresh processes; the systems alternate, so that slow drifts
    # of a shared machine hit them alike.
    for family in ("time", "memory"):
        for system, (command, env) in commands.items():
            try:
                r = subprocess.run(command + [family], stdout=subprocess.PIPE, text=True,
                                   env=env, timeout=600)
            except subprocess.TimeoutExpired:
                note("%s %s timed out" % (system, family))
                continue
            for line in r.stdout.splitlines():
                print(line, flush=True)
                fields = line.split()
                if len(fields) == 4 and fields[0] == "python":
                    results[(fields[1], fields[2])] = float(fields[3])
            if r.returncode != 0:
                note("%s %s exited with status %d" % (system, family, r.returncode))
    for figure in FIGURES:
        print("python stackless37 %s %s reference" % (figure, STACKLESS37[figure]))
    for figure in FIGURES:
        if ("ours", figure) in results:
            print("python ours/stackless37 %s %.3f"
                  % (figure, results[("ours", figure)] / STACKLESS37[figure]))
    for figure in FIGURES:
        value = results.get(("ours", figure))
        if value is None:
            print("python goal %s n/a <= %s MISSED" % (figure, GOALS[figure]))
        else:
            # the printed (rounded) value is the one compared, so each line agrees with itself
            shown = "%.1f" % value
            verdict = "met" if float(shown) <= GOALS[figure] else "MISSED"
            print("python goal %s %s <= %s %s" % (figure, shown, GOALS[figure], verdict))
    ratio = results.get(("ours", "watchdog_speed_ratio"))
    if ratio is not None:
        print("python goal watchdog_speed_ratio %.2f >= %.2f %s"
              % (ratio, WATCHDOG_GOAL, "met" if ratio >= WATCHDOG_GOAL else "MISSED"))
    note("done in %.0f s" % (time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
