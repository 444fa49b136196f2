// socket: reading, writing, closing and options of a connected stream socket.
//
// The cost of an echo server's message is what this file is about: one read() and one write()
// system call, no epoll_ctl (the loop registers an fd once, edge-triggered, at its first wait),
// and a share of one epoll_wait for all the connections that became ready together.
//
// The usual way with an edge-triggered loop is to try the operation and wait only after EAGAIN.
// For a connection that answers one message at a time that costs a third system call per
// message: after answering, the tasklet reads again, finds the buffer empty (EAGAIN), and only
// then waits. So a socket remembers what its last operation told it:
//
// - A read that returned fewer bytes than asked emptied the kernel's receive buffer: a stream
//   read copies everything queued up to the size asked (TCP and Unix stream sockets both), so
//   "short" means "nothing left". The next read waits for readability first. That is safe
//   because every arrival of data after that read signals an edge (the kernel notifies epoll at
//   each arrival, not only when the buffer goes from empty to non-empty), and the loop keeps an
//   edge that came while no tasklet waited (io.hpp: the wait then returns at once). An edge for
//   data the short read already took only costs a read() that says EAGAIN, after which the
//   socket waits again. The end of the stream may be queued behind the data a short read took,
//   its edge seen already: the loop keeps a peer's hang-up as a state (every later wait for
//   reading returns at once), so the next read finds the end.
// - A write that took fewer bytes than offered filled the send buffer; the kernel then marks the
//   socket as wanting room (SOCK_NOSPACE) and signals an edge when room is made. The next write
//   waits for writability first.
// - A read of 0 bytes (end of stream) is not "short": the stream stays at its end, and a wait
//   would find no new edge.
//
// A wait that times out is followed by one last attempt of the operation: the loop collects
// edges only when it polls, so data may be there although no edge was seen yet (a deadline that
// has passed, used to try without blocking, must still get data that is there).
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "net_impl.hpp"
#include "stackless/io.hpp"

namespace stackless::net {

using impl::throw_errno;
using impl::throw_timeout;
using impl::wait_ready;

unexpected_eof_error::unexpected_eof_error(std::size_t bytes_read)
    : error("read: the connection ended after " + std::to_string(bytes_read) +
            " bytes of a message"),
      bytes_read_(bytes_read) {}

socket socket::adopt(int fd) {
    if (fd < 0) throw io_error(EBADF, "adopt");
    impl::make_nonblocking(fd);
    return socket(fd);
}

socket& socket::operator=(socket&& other) noexcept {
    if (this != &other) {
        close();
        take(other);
    }
    return *this;
}

void socket::take(socket& other) noexcept {
    fd_ = std::exchange(other.fd_, -1);
    read_drained_ = std::exchange(other.read_drained_, false);
    write_full_ = std::exchange(other.write_full_, false);
}

int socket::checked_fd(const char* operation) const {
    if (fd_ < 0) throw io_error(EBADF, operation, "the socket is closed");
    return fd_;
}

std::size_t socket::read_some(void* buffer, std::size_t size, deadline until) {
    const int fd = checked_fd("read");
    if (size == 0) return 0;
    bool wait_first = read_drained_;
    bool last_try = false;
    for (;;) {
        // After a wake that reports the fd closed, wait_ready raises: `this` may be gone.
        if (wait_first && !wait_ready(fd, false, until, "read")) last_try = true;
        const ssize_t got = ::recv(fd, buffer, size, 0);
        if (got >= 0) {
            read_drained_ = got > 0 && static_cast<std::size_t>(got) < size;
            return static_cast<std::size_t>(got);
        }
        if (errno == EINTR) {
            wait_first = false;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) throw_errno("read");
        if (last_try) throw_timeout("read");
        wait_first = true;
    }
}

bool socket::read_exact(void* buffer, std::size_t size, deadline until) {
    auto* bytes = static_cast<unsigned char*>(buffer);
    std::size_t done = 0;
    while (done < size) {
        const std::size_t got = read_some(bytes + done, size - done, until);
        if (got == 0) {
            if (done == 0) return false;
            throw unexpected_eof_error(done);
        }
        done += got;
    }
    return true;
}

std::size_t socket::write_some(const void* data, std::size_t size, deadline until) {
    const int fd = checked_fd("write");
    if (size == 0) return 0;
    bool wait_first = write_full_;
    bool last_try = false;
    for (;;) {
        if (wait_first && !wait_ready(fd, true, until, "write")) last_try = true;
        // send() with MSG_NOSIGNAL, not write(): a peer that closed gives EPIPE, not SIGPIPE.
        const ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
        if (sent >= 0) {
            write_full_ = static_cast<std::size_t>(sent) < size;
            return static_cast<std::size_t>(sent);
        }
        if (errno == EINTR) {
            wait_first = false;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) throw_errno("write");
        if (last_try) throw_timeout("write");
        wait_first = true;
    }
}

void socket::write_all(const void* data, std::size_t size, deadline until) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    while (size > 0) {
        const std::size_t sent = write_some(bytes, size, until);
        bytes += sent;
        size -= sent;
    }
}

void socket::shutdown(shutdown_how how) {
    if (::shutdown(checked_fd("shutdown"), static_cast<int>(how)) < 0) throw_errno("shutdown");
}

void socket::close() noexcept {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    read_drained_ = write_full_ = false;
    impl::close_quietly(fd);  // wakes a waiter; it will not touch this object
}

int socket::release() noexcept {
    if (fd_ >= 0) forget_fd(fd_);
    read_drained_ = write_full_ = false;
    return std::exchange(fd_, -1);
}

void socket::set_nodelay(bool on) {
    const int value = on ? 1 : 0;
    if (::setsockopt(checked_fd("setsockopt"), IPPROTO_TCP, TCP_NODELAY, &value, sizeof value) < 0)
        throw_errno("setsockopt");
}

endpoint socket::local_endpoint() const {
    sockaddr_storage address;
    socklen_t length = sizeof address;
    if (::getsockname(checked_fd("getsockname"), reinterpret_cast<sockaddr*>(&address), &length) <
        0)
        throw_errno("getsockname");
    return endpoint::from_native(reinterpret_cast<sockaddr*>(&address), length);
}

endpoint socket::peer_endpoint() const {
    sockaddr_storage address;
    socklen_t length = sizeof address;
    if (::getpeername(checked_fd("getpeername"), reinterpret_cast<sockaddr*>(&address), &length) <
        0)
        throw_errno("getpeername");
    return endpoint::from_native(reinterpret_cast<sockaddr*>(&address), length);
}

}  // namespace stackless::net
