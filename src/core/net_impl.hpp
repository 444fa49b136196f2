// What the net_*.cpp files share: waiting for a socket with an operation's name on the errors,
// raising errno, and making socket and listener objects from fds that are already set up.
#pragma once

#include <string>

#include "stackless/net.hpp"

namespace stackless::net::impl {

struct construct {
    static socket make_socket(int fd) noexcept { return socket(fd); }
    static listener make_listener(int fd, std::string unlink_path = {}) noexcept {
        return listener(fd, std::move(unlink_path));
    }
};

[[noreturn]] void throw_errno(const char* operation);
[[noreturn]] void throw_timeout(const char* operation);

// Waits until fd is readable (or writable): true when it is, false when the deadline passed.
// Raises io_error(EBADF) naming `operation` if the fd is closed meanwhile; after that the caller
// must not touch its socket object, which may be gone.
bool wait_ready(int fd, bool write, deadline until, const char* operation);

// A new non-blocking, close-on-exec stream socket of that family (io_error "socket").
int new_stream_socket(int family);
// Sets O_NONBLOCK on an fd given to adopt() (io_error "fcntl").
void make_nonblocking(int fd);
// Closes an fd the loop may know, ignoring errors (the fd is gone either way).
void close_quietly(int fd) noexcept;
// RAII for an fd while it is being set up, so that an exception does not leak it.
class fd_guard {
  public:
    explicit fd_guard(int fd) noexcept : fd_(fd) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() {
        if (fd_ >= 0) close_quietly(fd_);
    }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }

  private:
    int fd_;
};

}  // namespace stackless::net::impl
