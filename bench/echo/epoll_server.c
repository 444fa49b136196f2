// The physical reference of the echo benchmark: a hand-written single-threaded epoll echo
// server, about the least work per message Linux allows. Level-triggered, so each readiness
// costs one read (whatever is left stays signalled) and one write; one buffer for all
// connections, because each message is written back before the next read. Only a write the
// socket cannot take whole keeps bytes per connection, until EPOLLOUT lets them go.
//
//   echo_epoll_server --port P     (P = 0: any free port; `port <n>` is printed either way)
//
// Runs until killed.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { buffer_size = 65536, event_batch = 1024 };

// Bytes a connection still owes its client, by descriptor; NULL for almost every connection.
struct backlog {
    size_t length, done;
    char bytes[];
};
static struct backlog** backlogs;
static size_t backlog_slots;
static int epfd;

static void die(const char* what) {
    fprintf(stderr, "echo_epoll_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void close_connection(int fd) {
    if ((size_t)fd < backlog_slots) {
        free(backlogs[fd]);
        backlogs[fd] = NULL;
    }
    close(fd);  // also leaves the epoll set
}

static void watch(int fd, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

static void accept_all(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
            die("accept4");  // EMFILE included: the benchmark would be wrong anyway
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
}

// Keeps what the socket did not take and waits for EPOLLOUT instead of EPOLLIN, so that a
// client that does not read cannot make the server buffer without bound.
static void keep_rest(int fd, const char* bytes, size_t length) {
    if ((size_t)fd >= backlog_slots) {
        size_t slots = (size_t)fd * 2 + 64;
        backlogs = realloc(backlogs, slots * sizeof *backlogs);
        if (!backlogs) die("realloc");
        memset(backlogs + backlog_slots, 0, (slots - backlog_slots) * sizeof *backlogs);
        backlog_slots = slots;
    }
    struct backlog* b = malloc(sizeof *b + length);
    if (!b) die("malloc");
    b->length = length;
    b->done = 0;
    memcpy(b->bytes, bytes, length);
    backlogs[fd] = b;
    watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
}

static void echo(int fd) {
    static char buffer[buffer_size];
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        close_connection(fd);  // end of stream or a reset
        return;
    }
    ssize_t written = write(fd, buffer, (size_t)n);
    if (written == n) return;
    if (written < 0) {
        if (errno != EAGAIN) {
            close_connection(fd);
            return;
        }
        written = 0;
    }
    keep_rest(fd, buffer + written, (size_t)(n - written));
}

static void flush_backlog(int fd) {
    struct backlog* b = backlogs[fd];
    ssize_t written = write(fd, b->bytes + b->done, b->length - b->done);
    if (written < 0) {
        if (errno != EAGAIN && errno != EINTR) close_connection(fd);
        return;
    }
    b->done += (size_t)written;
    if (b->done < b->length) return;
    free(b);
    backlogs[fd] = NULL;
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
}

int main(int argc, char** argv) {
    long port = -1;
    if (argc == 3 && !strcmp(argv[1], "--port")) port = strtol(argv[2], NULL, 10);
    if (port < 0 || port > 65535) {
        fprintf(stderr, "usage: echo_epoll_server --port P   (0: any free port)\n");
        return 2;
    }
    struct rlimit lim;  // 10,000 connections need more than the usual soft limit of 1024
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 65535) < 0) die("listen");  // the kernel caps it at somaxconn
    if (getsockname(listener, (struct sockaddr*)&addr, &len) < 0) die("getsockname");
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    watch(listener, EPOLLIN, EPOLL_CTL_ADD);
    static struct epoll_event events[event_batch];
    for (;;) {
        int n = epoll_wait(epfd, events, event_batch, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == listener)
                accept_all(listener);
            else if ((size_t)fd < backlog_slots && backlogs[fd])
                flush_backlog(fd);
            else
                echo(fd);
        }
    }
}
