// Our server of the loopback echo benchmark (branch echo-bench: bench/echo/run.sh): one thread,
// one tasklet per connection, each echoing every byte back through stackless::net.
//
//   bench_echo_ours --port P [--buffer BYTES] [--stack-slots N]
//
// Listens on 127.0.0.1:P (P = 0: a free port) and prints `port <n>` on stdout, flushed, before it
// accepts. Runs until SIGTERM or SIGINT, then exits with 0 at once (_Exit: the connections'
// tasklets need no unwinding, and the kernel closes their sockets).
//
// --buffer: each connection tasklet's read buffer, on its stack (default 512; 256, 512, 1024,
// 4096 or 16384). It must be larger than a message, so that a read of a whole message is
// short and the socket knows the kernel buffer is empty (net_socket.cpp); beyond that, a small
// buffer keeps memory per connection small: a waiting tasklet's stack, buffer included, is
// copied to the heap when its stack slot is wanted by another one.
// --stack-slots: the scheduler's stack_slots (default: the library's default, 256).
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <stackless/stackless.hpp>

namespace net = stackless::net;

namespace {

template <std::size_t buffer_size>
void echo(net::socket connection) {
    char buffer[buffer_size];
    try {
        while (std::size_t got = connection.read_some(buffer, sizeof buffer))
            connection.write_all(buffer, got);
    } catch (const stackless::io_error&) {
        // The client reset the connection: this tasklet's work is over.
    }
}

using echo_function = void (*)(net::socket);

echo_function echo_with_buffer(long bytes) {
    switch (bytes) {
        case 256:
            return echo<256>;
        case 512:
            return echo<512>;
        case 1024:
            return echo<1024>;
        case 4096:
            return echo<4096>;
        case 16384:
            return echo<16384>;
        default:
            return nullptr;
    }
}

void accept_forever(net::listener& listener, echo_function echo) {
    for (;;) {
        try {
            stackless::spawn(echo, listener.accept());
        } catch (const stackless::io_error& e) {
            // Out of fds (EMFILE) or memory: report it, let connections end, and go on.
            std::fprintf(stderr, "bench_echo_ours: %s\n", e.what());
            stackless::sleep_for(std::chrono::milliseconds(10));
        }
    }
}

// SIGTERM and SIGINT arrive through a signalfd that a tasklet waits on.
void exit_on_signal(int signals) {
    stackless::wait_readable(signals);
    std::fflush(stdout);
    std::_Exit(0);
}

int blocked_signals_fd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

// 10,000 connections need more fds than the usual soft limit of 1,024.
void raise_fd_limit() {
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

[[noreturn]] void usage(const char* problem) {
    std::fprintf(stderr,
                 "bench_echo_ours: %s\nusage: bench_echo_ours --port P [--buffer 256|512|1024|"
                 "4096|16384] [--stack-slots N]\n",
                 problem);
    std::exit(2);
}

long number(const char* text, long low, long high) {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || value < low || value > high) usage("bad number");
    return value;
}

}  // namespace

int main(int argc, char** argv) {
    long port = -1, buffer = 512, stack_slots = 0;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) usage("an option without its value");
        if (std::strcmp(argv[i], "--port") == 0)
            port = number(argv[i + 1], 0, 65535);
        else if (std::strcmp(argv[i], "--buffer") == 0)
            buffer = number(argv[i + 1], 1, 1 << 20);
        else if (std::strcmp(argv[i], "--stack-slots") == 0)
            stack_slots = number(argv[i + 1], 2, 1 << 20);
        else
            usage("unknown option");
    }
    if (port < 0) usage("--port is required");
    const echo_function echo = echo_with_buffer(buffer);
    if (echo == nullptr) usage("unsupported --buffer");
    if (stack_slots > 0) {
        stackless::scheduler_config config;
        config.stack_slots = static_cast<std::size_t>(stack_slots);
        stackless::configure(config);
    }
    raise_fd_limit();
    const int signals = blocked_signals_fd();
    if (signals < 0) {
        std::perror("bench_echo_ours: signalfd");
        return 1;
    }
    try {
        net::listener listener =
            net::listen_tcp(net::endpoint("127.0.0.1", static_cast<std::uint16_t>(port)));
        std::printf("port %u\n", static_cast<unsigned>(listener.local_endpoint().port()));
        std::fflush(stdout);
        stackless::spawn(exit_on_signal, signals);
        stackless::spawn(accept_forever, std::ref(listener), echo);
        stackless::run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_echo_ours: %s\n", e.what());
        return 1;
    }
    return 0;
}
