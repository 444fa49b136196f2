// Tasklets in two threads, as examples/python/threads.py: a tasklet of a worker thread sends
// commands over a channel made for threads to a tasklet of the main thread, which runs them in
// its own thread. Each thread drives its tasklets with run(true) (threadblock): it sleeps while
// its tasklet waits for the other thread instead of spinning.
#include <iostream>
#include <string>
#include <thread>

#include "stackless/stackless.hpp"

namespace {

stackless::channel<std::string> commands(stackless::across_threads);

void drive(void (*function)()) {
    stackless::tasklet t = stackless::spawn(function);
    while (t.alive()) stackless::run(true);
}

void give_orders() {
    for (const char* order : {"ECHO hello", "ECHO world", "QUIT"}) commands.send(order);
}

const std::thread::id main_thread = std::this_thread::get_id();

void obey() {
    std::cout << "obeying, in the main thread: "
              << (std::this_thread::get_id() == main_thread ? "True" : "False") << "\n";
    for (;;) {
        std::string order = commands.receive();
        std::cout << "order: " << order << "\n";
        if (order == "QUIT") break;
    }
    std::cout << "done obeying\n";
}

}  // namespace

int main() {
    stackless::getcurrent();  // this thread uses stackless: the boss may wait for it
    std::thread boss([] {
        stackless::getcurrent();
        drive(give_orders);
    });
    drive(obey);
    boss.join();
}
