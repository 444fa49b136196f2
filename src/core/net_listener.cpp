// listener: listen_tcp, listen_unix, accept.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_impl.hpp"
#include "stackless/io.hpp"

namespace stackless::net {

using impl::fd_guard;
using impl::throw_errno;

namespace {

void set_option(int fd, int level, int name, const char* operation) {
    const int one = 1;
    if (::setsockopt(fd, level, name, &one, sizeof one) < 0) throw_errno(operation);
}

void bind_and_listen(int fd, const endpoint& where, int backlog) {
    if (::bind(fd, where.native(), where.native_size()) < 0) throw_errno("bind");
    if (::listen(fd, backlog) < 0) throw_errno("listen");
}

}  // namespace

listener listen_tcp(const endpoint& where, int backlog) {
    if (!where.is_ip())
        throw address_error("listen_tcp: not an IP endpoint: \"" + where.to_string() + "\"");
    fd_guard fd(impl::new_stream_socket(where.native()->sa_family));
    set_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, "setsockopt");
    // Linux copies the listener's TCP_NODELAY into every connection it accepts, which saves a
    // setsockopt per accept.
    set_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, "setsockopt");
    bind_and_listen(fd.get(), where, backlog);
    return impl::construct::make_listener(fd.release());
}

listener listen_unix(std::string_view path, int backlog) {
    const endpoint where = endpoint::unix_path(path);
    fd_guard fd(impl::new_stream_socket(AF_UNIX));
    bind_and_listen(fd.get(), where, backlog);
    // (An abstract name has no file to remove.)
    return impl::construct::make_listener(fd.release(),
                                          path.front() == '@' ? "" : std::string(path));
}

listener listener::adopt(int fd) {
    if (fd < 0) throw io_error(EBADF, "adopt");
    impl::make_nonblocking(fd);
    return listener(fd);
}

listener& listener::operator=(listener&& other) noexcept {
    if (this != &other) {
        close();
        take(other);
    }
    return *this;
}

void listener::take(listener& other) noexcept {
    fd_ = std::exchange(other.fd_, -1);
    unlink_path_ = std::move(other.unlink_path_);
    other.unlink_path_.clear();
}

socket listener::accept(deadline until) {
    if (fd_ < 0) throw io_error(EBADF, "accept", "the listener is closed");
    const int fd = fd_;
    bool last_try = false;
    for (;;) {
        const int connection = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (connection >= 0) return impl::construct::make_socket(connection);
        switch (errno) {
            case EINTR:
            case ECONNABORTED:  // the client gave up before we took it: take the next one
                continue;
            case EAGAIN:
                break;
            default:
                throw_errno("accept");
        }
        if (last_try) impl::throw_timeout("accept");
        // (After a wake that reports the fd closed, wait_ready raises: `this` may be gone.)
        if (!impl::wait_ready(fd, false, until, "accept")) last_try = true;
    }
}

endpoint listener::local_endpoint() const {
    if (fd_ < 0) throw io_error(EBADF, "getsockname", "the listener is closed");
    sockaddr_storage address;
    socklen_t length = sizeof address;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) < 0)
        throw_errno("getsockname");
    return endpoint::from_native(reinterpret_cast<sockaddr*>(&address), length);
}

void listener::close() noexcept {
    if (fd_ < 0) return;
    impl::close_quietly(std::exchange(fd_, -1));
    if (!unlink_path_.empty()) {
        ::unlink(unlink_path_.c_str());
        unlink_path_.clear();
    }
}

int listener::release() noexcept {
    if (fd_ >= 0) forget_fd(fd_);
    unlink_path_.clear();
    return std::exchange(fd_, -1);
}

}  // namespace stackless::net
