// Making connections: connect_tcp, connect_unix, socket_pair.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "net_impl.hpp"

namespace stackless::net {

using impl::fd_guard;
using impl::throw_errno;

namespace {

// After a non-blocking connect said EINPROGRESS: waits until the handshake ends, then reports
// how it ended (SO_ERROR).
void finish_connect(int fd, deadline until) {
    const bool ready = impl::wait_ready(fd, true, until, "connect");
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) throw_errno("getsockopt");
    if (error != 0) throw io_error(error, "connect");
    if (ready) return;
    // The deadline passed: connected all the same if the handshake ended before the loop looked.
    sockaddr_storage peer;
    socklen_t peer_length = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0) return;
    impl::throw_timeout("connect");
}

}  // namespace

socket connect_tcp(const endpoint& to, deadline until) {
    if (!to.is_ip())
        throw address_error("connect_tcp: not an IP endpoint: \"" + to.to_string() + "\"");
    fd_guard fd(impl::new_stream_socket(to.native()->sa_family));
    // Small messages go out at once, as Go does for every TCP connection: request/response
    // protocols would otherwise wait for the peer's delayed ACK (Nagle's algorithm).
    const int one = 1;
    if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        throw_errno("setsockopt");
    if (::connect(fd.get(), to.native(), to.native_size()) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) throw_errno("connect");
        finish_connect(fd.get(), until);
    }
    return impl::construct::make_socket(fd.release());
}

socket connect_tcp(std::string_view host, std::uint16_t port, deadline until) {
    std::exception_ptr last_failure;
    for (const endpoint& address : resolve(host, port)) {
        try {
            return connect_tcp(address, until);
        } catch (const io_error&) {
            // Refused, unreachable, ...: the next address may answer. (A timeout ends it all:
            // the deadline is common to every attempt.)
            last_failure = std::current_exception();
        }
    }
    std::rethrow_exception(last_failure);  // (resolve() returns at least one address)
}

socket connect_unix(std::string_view path, deadline until) {
    const endpoint to = endpoint::unix_path(path);
    fd_guard fd(impl::new_stream_socket(AF_UNIX));
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
        if (::connect(fd.get(), to.native(), to.native_size()) == 0) break;
        if (errno == EINPROGRESS) {
            finish_connect(fd.get(), until);
            break;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw_errno("connect");
        // The listener's backlog is full. Nothing signals when it has room, so try again later.
        if (until.has_passed()) impl::throw_timeout("connect");
        sleep_until(deadline(std::min(clock::now() + pause, until.at())));
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
    return impl::construct::make_socket(fd.release());
}

std::pair<socket, socket> socket_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
        throw_errno("socketpair");
    return {impl::construct::make_socket(fds[0]), impl::construct::make_socket(fds[1])};
}

}  // namespace stackless::net
