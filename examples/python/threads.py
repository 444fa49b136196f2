"""Tasklets in two threads (the scenarios of Stackless's "Threads and Stackless" chapter): each
thread has its own scheduler, and a channel carries commands from a tasklet of one thread to a
tasklet of another, which runs in its own thread."""
import threading

import stackless

# A scheduler per thread: the new thread's run queue holds only its own main tasklet.
counted = []

def count():
    counted.append(stackless.getruncount())

def watch(thread):
    print("first thread: watching the second one")
    while thread.is_alive():
        stackless.schedule()
    print("first thread: the second one has ended; it had %d tasklet in its scheduler"
          % counted[0])

second = threading.Thread(target=count)
stackless.tasklet(watch)(second)
second.start()
stackless.run()

# A channel between threads: commands sent by a tasklet of a worker thread, executed by a
# tasklet of the main thread.
commands = stackless.channel()

def give_orders():
    for order in ("ECHO hello", "ECHO world", "QUIT"):
        commands.send(order)

def obey():
    print("obeying, in the main thread:", threading.current_thread() is threading.main_thread())
    while True:
        order = commands.receive()
        print("order:", order)
        if order == "QUIT":
            break
    print("done obeying")

def drive(function):
    t = stackless.tasklet(function)()
    while t.alive:
        stackless.run(threadblock=True)  # waits for the other thread instead of spinning

boss = threading.Thread(target=drive, args=(give_orders,))
boss.start()
drive(obey)
boss.join()
