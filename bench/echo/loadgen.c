// Load generator of the loopback echo benchmark (bench/echo/run.sh). One process, one thread,
// one epoll loop: C connections, each with one message of `size` bytes outstanding at a time,
// R round trips each. Prints `rps`, `p50_us`, `p99_us` and `connections` on stdout.
//
//   echo_loadgen --port P --connections C --round-trips R --size 64 [--host 127.0.0.1]
//                [--timeout-s 120]
//
// Between connecting and the timed phase it prints `connected` and waits for a byte on stdin
// (or for stdin to close), so that the caller can sample the server's memory. Every connection
// has made one untimed round trip by then: the server has accepted it and reached its steady
// state for it (a goroutine or coroutine waiting in read, its buffer allocated).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// Messages up to 4 KiB: one write always takes a whole one (a TCP socket's send buffer starts at
// 16 KiB and the last message has come back before the next goes).
enum { max_size = 4096, connect_batch = 512, event_batch = 1024 };

struct conn {
    int fd;
    int rounds_left;
    size_t received;      // bytes of the current message back so far
    uint64_t started_ns;  // when the current message was first written
    uint32_t round;       // numbers the message, so that its content differs from the last
};

static struct conn* conns;
static int connections, round_trips, message_size, epfd;
static uint64_t deadline_ns;
static uint64_t* latencies;  // ns, one per timed round trip
static size_t latency_count;

static _Noreturn void die(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("echo_loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Byte i of message `round` on connection `c`: differs between connections and between
// consecutive messages, so a byte echoed to the wrong connection or twice is noticed.
static unsigned char payload(const struct conn* c, size_t i) {
    return (unsigned char)((c - conns) * 131u + c->round * 7u + i);
}

static int wait_events(struct epoll_event* events, const char* phase) {
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline_ns) die("timed out while %s", phase);
        int ms = (int)((deadline_ns - now) / 1000000u) + 1;
        int n = epoll_wait(epfd, events, event_batch, ms);
        if (n > 0) return n;
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    }
}

static void send_message(struct conn* c, uint64_t now) {  // now: when the round trip starts
    unsigned char buf[max_size];
    for (size_t i = 0; i < (size_t)message_size; ++i) buf[i] = payload(c, i);
    c->received = 0;
    c->started_ns = now;
    // One write takes it all (see max_size); anything else is reported rather than handled.
    ssize_t n = write(c->fd, buf, (size_t)message_size);
    if (n != message_size)
        die("write (connection %d): %s", (int)(c - conns), n < 0 ? strerror(errno) : "short write");
}

// Reads what has arrived on c; returns 1 when the whole message is back (and checked).
static int receive(struct conn* c) {
    unsigned char buf[max_size];
    // Never more than the rest of this message: anything beyond it would be a server's error,
    // which the next message's check then catches.
    ssize_t n = read(c->fd, buf, (size_t)message_size - c->received);
    if (n == 0) die("connection %d: the server closed it", (int)(c - conns));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        die("read (connection %d): %s", (int)(c - conns), strerror(errno));
    }
    for (ssize_t i = 0; i < n; ++i)
        if (buf[i] != payload(c, c->received + (size_t)i))
            die("connection %d: byte %zu of message %u differs from what was sent",
                (int)(c - conns), c->received + (size_t)i, c->round);
    c->received += (size_t)n;
    return c->received == (size_t)message_size;
}

// Connections first..end-1 send their first message at once, then each its next one as soon
// as the last is back, until each has made `rounds` round trips. `timed` records each round
// trip's latency.
static void exchange(int first, int end, int rounds, int timed, const char* phase) {
    struct epoll_event events[event_batch];
    int busy = end - first;
    for (int i = first; i < end; ++i) {
        conns[i].rounds_left = rounds;
        send_message(&conns[i], now_ns());
    }
    while (busy > 0) {
        int n = wait_events(events, phase);
        for (int e = 0; e < n; ++e) {
            struct conn* c = events[e].data.ptr;
            if (!receive(c)) continue;
            uint64_t now = now_ns();  // ends this round trip and starts the next
            if (timed) latencies[latency_count++] = now - c->started_ns;
            ++c->round;
            if (--c->rounds_left > 0)
                send_message(c, now);
            else
                --busy;
        }
    }
}

// Non-blocking connects, `connect_batch` at a time, each batch making one untimed round trip
// before the next connects: the server has then accepted all of it, so that its accept queue
// never holds more than a batch (a full queue drops SYNs, and the retry waits a second).
static void connect_all(const struct sockaddr_in* addr) {
    struct epoll_event events[event_batch];
    for (int first = 0; first < connections; first += connect_batch) {
        int end = first + connect_batch < connections ? first + connect_batch : connections;
        for (int i = first; i < end; ++i) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) die("socket (connection %d): %s; raise ulimit -n?", i, strerror(errno));
            int one = 1;
            if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
                die("TCP_NODELAY: %s", strerror(errno));
            if (connect(fd, (const struct sockaddr*)addr, sizeof *addr) < 0 && errno != EINPROGRESS)
                die("connect (connection %d): %s", i, strerror(errno));
            conns[i].fd = fd;
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &conns[i]};
            if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
        }
        for (int pending = end - first; pending > 0;) {
            int n = wait_events(events, "connecting");
            for (int e = 0; e < n; ++e) {
                struct conn* c = events[e].data.ptr;
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
                if (err) die("connect (connection %d): %s", (int)(c - conns), strerror(err));
                // From now on only readability matters: a write always fits (see max_size).
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                    die("epoll_ctl: %s", strerror(errno));
                --pending;
            }
        }
        exchange(first, end, 1, 0, "making the untimed first round trips");
    }
}

// Waits (within the deadline) until a byte arrives on stdin or stdin closes.
static void wait_for_stdin(void) {
    struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline_ns) die("timed out waiting for a byte on stdin");
        int n = poll(&in, 1, (int)((deadline_ns - now) / 1000000u) + 1);
        if (n > 0) break;
        if (n < 0 && errno != EINTR) die("poll: %s", strerror(errno));
    }
    char byte;
    if (read(STDIN_FILENO, &byte, 1) < 0 && errno != EINTR) die("read stdin: %s", strerror(errno));
}

static int compare(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return (x > y) - (x < y);
}

static double percentile_us(double p) {
    size_t i = (size_t)(p * (double)(latency_count - 1) + 0.5);
    return (double)latencies[i] / 1000.0;
}

static long parse(const char* name, const char* value, long low, long high) {
    char* end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || *end || end == value || v < low || v > high)
        die("%s wants a number from %ld to %ld, not '%s'", name, low, high, value);
    return v;
}

int main(int argc, char** argv) {
    long port = -1, timeout_s = 120;
    const char* host = "127.0.0.1";
    connections = round_trips = message_size = -1;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) die("%s wants a value", argv[i]);
        const char *name = argv[i], *value = argv[i + 1];
        if (!strcmp(name, "--port"))
            port = parse(name, value, 1, 65535);
        else if (!strcmp(name, "--connections"))
            connections = (int)parse(name, value, 1, 1000000);
        else if (!strcmp(name, "--round-trips"))
            round_trips = (int)parse(name, value, 1, 100000000);
        else if (!strcmp(name, "--size"))
            message_size = (int)parse(name, value, 1, max_size);
        else if (!strcmp(name, "--host"))
            host = value;
        else if (!strcmp(name, "--timeout-s"))
            timeout_s = parse(name, value, 1, 86400);
        else
            die("unknown argument %s", name);
    }
    if (port < 0 || connections < 0 || round_trips < 0 || message_size < 0)
        die("usage: echo_loadgen --port P --connections C --round-trips R --size S "
            "[--host 127.0.0.1] [--timeout-s 120]");
    deadline_ns = now_ns() + (uint64_t)timeout_s * 1000000000u;

    // As many descriptors as the hard limit allows: 10,000 connections need more than 1024.
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        die("--host %s is not an IPv4 address", host);
    conns = calloc((size_t)connections, sizeof *conns);
    latencies = malloc((size_t)connections * (size_t)round_trips * sizeof *latencies);
    if (!conns || !latencies) die("out of memory");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));

    connect_all(&addr);

    printf("connected\n");
    fflush(stdout);
    wait_for_stdin();

    uint64_t start = now_ns();
    exchange(0, connections, round_trips, 1, "making the timed round trips");
    double seconds = (double)(now_ns() - start) / 1e9;

    qsort(latencies, latency_count, sizeof *latencies, compare);
    printf("rps %.0f\n", (double)latency_count / seconds);
    printf("p50_us %.1f\n", percentile_us(0.50));
    printf("p99_us %.1f\n", percentile_us(0.99));
    printf("connections %d\n", connections);
    return 0;
}
