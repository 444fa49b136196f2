// Helpers of the socket tests: loopback listeners and connections, what the process holds.
#pragma once

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "stackless/net.hpp"

namespace net_test {

namespace net = stackless::net;

inline net::listener loopback_listener() {
    return net::listen_tcp(net::endpoint("127.0.0.1", 0));
}

// A client socket and the server's end of its connection, made in one tasklet (the kernel
// completes the handshake without the server accepting).
inline std::pair<net::socket, net::socket> connected_tcp_pair(net::listener& server) {
    using namespace std::chrono_literals;
    net::socket client = net::connect_tcp(server.local_endpoint(), 10s);
    net::socket served = server.accept(10s);
    return {std::move(client), std::move(served)};
}
inline std::pair<net::socket, net::socket> connected_tcp_pair() {
    net::listener server = loopback_listener();
    return connected_tcp_pair(server);
}

// Makes close() send a reset instead of the orderly end of the stream (SO_LINGER, 0 seconds).
inline void reset_on_close(net::socket& s) {
    const linger option{1, 0};
    if (::setsockopt(s.fd(), SOL_SOCKET, SO_LINGER, &option, sizeof option) != 0)
        throw std::runtime_error("setsockopt SO_LINGER");
}

inline bool nodelay(const net::socket& s) {
    int value = 0;
    socklen_t length = sizeof value;
    if (::getsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &value, &length) != 0)
        throw std::runtime_error("getsockopt TCP_NODELAY");
    return value != 0;
}

// Open file descriptors of the process.
inline int open_fd_count() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) throw std::runtime_error("opendir /proc/self/fd");
    int count = 0;
    while (const dirent* entry = ::readdir(dir))
        if (entry->d_name[0] != '.') ++count;
    ::closedir(dir);
    return count - 1;  // (the directory's own fd)
}

// Resident memory of the process, in bytes.
inline long resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * ::sysconf(_SC_PAGESIZE);
}

// A path for a Unix-domain socket that no other test (or test process) uses.
inline std::string temporary_socket_path() {
    static std::atomic<int> counter{0};
    return "/tmp/stackless-net-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter++) + ".sock";
}

}  // namespace net_test
