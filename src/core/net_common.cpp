// Helpers of the socket classes: waits that name the operation in their errors, errno to
// io_error, and setting up fds.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_impl.hpp"
#include "stackless/io.hpp"

namespace stackless::net::impl {

void throw_errno(const char* operation) {
    throw io_error(errno, operation);
}

void throw_timeout(const char* operation) {
    throw timeout_error(std::string(operation) + ": the deadline passed");
}

bool wait_ready(int fd, bool write, deadline until, const char* operation) {
    try {
        return write ? wait_writable(fd, until) : wait_readable(fd, until);
    } catch (const io_error& e) {
        // Closed while waiting (or not valid): reported as the operation the caller tried, with
        // the loop's explanation.
        const std::string_view what = e.what();
        const std::size_t colon = what.find(": ");
        throw io_error(e.code().value(), operation,
                       std::string(colon == what.npos ? what : what.substr(colon + 2)));
    }
}

int new_stream_socket(int family) {
    const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw_errno("socket");
    return fd;
}

void make_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) throw_errno("fcntl");
}

void close_quietly(int fd) noexcept {
    forget_fd(fd);
    ::close(fd);  // (even on EINTR the fd is released on Linux; no error matters here)
}

}  // namespace stackless::net::impl
