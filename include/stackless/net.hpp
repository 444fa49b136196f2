// Cooperative sockets for tasklets: TCP (IPv4, IPv6) and Unix-domain stream sockets whose
// blocking operations suspend only the calling tasklet while the others run (the thread's event
// loop, stackless/io.hpp, waits for the fds).
//
//   auto server = stackless::net::listen_tcp({"127.0.0.1", 0});
//   stackless::spawn([&] {
//       for (;;) stackless::spawn(serve, server.accept());       // one tasklet per connection
//   });
//   auto conn = stackless::net::connect_tcp(server.local_endpoint(), 2s);
//   conn.write_all("ping");
//
// Every blocking operation takes an optional deadline (default: never) and raises
// stackless::timeout_error when it passes; a failed system call raises stackless::io_error with
// errno and the operation ("connect", "read", "write", "accept", ...). Writing to a connection
// the peer closed raises io_error (EPIPE), never SIGPIPE. A socket belongs to the thread whose
// tasklets use it: its waits go to that thread's loop (to hand it to another thread, release()
// the fd and adopt() it there). One tasklet at a time may read from a socket, and one at a time
// may write to it (another gets stackless::error).
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stackless/errors.hpp"
#include "stackless/time.hpp"

namespace stackless::net {

namespace impl {
struct construct;  // (net_*.cpp: makes sockets and listeners from fds already set up)
}

// An address string that is not an IP literal (endpoint's constructor, endpoint::parse), or a
// Unix socket path too long for sockaddr_un.
class address_error : public error {
  public:
    using error::error;
};

// getaddrinfo() failed: code() is its EAI_* value (EAI_NONAME: no such host).
class resolve_error : public error {
  public:
    // (EAI_SYSTEM: `system_errno` says what failed.)
    resolve_error(int gai_code, const std::string& host, int system_errno = 0);
    int code() const noexcept { return code_; }

  private:
    int code_;
};

// A connection that ended in the middle of a message that read_exact was reading.
class unexpected_eof_error : public error {
  public:
    explicit unexpected_eof_error(std::size_t bytes_read);
    std::size_t bytes_read() const noexcept { return bytes_read_; }

  private:
    std::size_t bytes_read_;
};

enum class family { none, ipv4, ipv6, unix_domain };

// Where a socket is bound or connected: an IPv4 or IPv6 address with a port, or a Unix-domain
// socket path. A value type (it holds a sockaddr_storage).
class endpoint {
  public:
    endpoint() noexcept;  // family::none
    // An IP literal and a port: "127.0.0.1", "::1", "fe80::1%eth0". No name lookup (resolve()
    // does that); raises address_error for anything else.
    endpoint(std::string_view ip, std::uint16_t port);
    // The same, without raising: nullopt for anything but an IP literal.
    static std::optional<endpoint> try_parse_ip(std::string_view ip, std::uint16_t port);
    // "127.0.0.1:8080" or "[::1]:8080". Raises address_error.
    static endpoint parse(std::string_view address_and_port);
    // A Unix-domain socket path; "@name" is Linux's abstract namespace (no file), as in Go.
    static endpoint unix_path(std::string_view path);
    // From a sockaddr the system returned (accept, getsockname, getaddrinfo).
    static endpoint from_native(const sockaddr* address, socklen_t length);

    net::family family() const noexcept;
    bool is_ip() const noexcept {
        return family() == net::family::ipv4 || family() == net::family::ipv6;
    }
    std::uint16_t port() const noexcept;  // 0 for Unix-domain endpoints
    endpoint with_port(std::uint16_t port) const;
    // The address alone: "127.0.0.1", "::1", or the Unix path ("@name" for abstract ones, ""
    // for an unnamed socket such as the client end of a Unix connection).
    std::string address() const;
    // "127.0.0.1:8080", "[::1]:8080", or the Unix path as address() gives it.
    std::string to_string() const;

    const sockaddr* native() const noexcept { return reinterpret_cast<const sockaddr*>(&data_); }
    socklen_t native_size() const noexcept { return size_; }

    friend bool operator==(const endpoint& a, const endpoint& b) noexcept;

  private:
    sockaddr_storage data_;
    socklen_t size_;
};
std::ostream& operator<<(std::ostream& out, const endpoint& e);

// The addresses of `host` (a name or an IP literal) for TCP to `port`, in getaddrinfo's order of
// preference. Names are looked up by getaddrinfo on stackless::blocking's threads, so the other
// tasklets run meanwhile; IP literals are parsed at once. Raises resolve_error.
std::vector<endpoint> resolve(std::string_view host, std::uint16_t port);

enum class shutdown_how { read = SHUT_RD, write = SHUT_WR, both = SHUT_RDWR };

// A connected stream socket: the owner of a non-blocking fd, closed by the destructor.
class socket {
  public:
    socket() noexcept = default;  // no fd
    // Takes ownership of a connected stream socket's fd and makes it non-blocking.
    static socket adopt(int fd);

    socket(socket&& other) noexcept { take(other); }
    socket& operator=(socket&& other) noexcept;
    socket(const socket&) = delete;
    socket& operator=(const socket&) = delete;
    ~socket() { close(); }

    // Reads up to `size` bytes (at least one, waiting for them); 0 means the peer closed its end
    // (or size was 0). io_error: "read" (ECONNRESET when the peer reset the connection).
    std::size_t read_some(void* buffer, std::size_t size, deadline until = {});
    // Reads exactly `size` bytes. False when the stream ended before the first of them (a clean
    // end between messages); unexpected_eof_error when it ended after some.
    [[nodiscard]] bool read_exact(void* buffer, std::size_t size, deadline until = {});
    // Writes some of the bytes (at least one, waiting for room); returns how many.
    std::size_t write_some(const void* data, std::size_t size, deadline until = {});
    // Writes all the bytes. On timeout_error or io_error an unknown part of them was written.
    void write_all(const void* data, std::size_t size, deadline until = {});
    void write_all(std::string_view text, deadline until = {}) {
        write_all(text.data(), text.size(), until);
    }

    void shutdown(shutdown_how how);
    // Closes the fd now. A tasklet of this thread waiting on the socket wakes with io_error
    // (EBADF); the socket object may even be destroyed before that tasklet runs again, since it
    // does not touch the object after such a wake.
    void close() noexcept;
    // TCP_NODELAY (on by default for TCP connections made or accepted here, as in Go).
    void set_nodelay(bool on);

    endpoint local_endpoint() const;
    endpoint peer_endpoint() const;
    int fd() const noexcept { return fd_; }
    // Gives up the fd (still non-blocking) without closing it; the loop forgets it.
    int release() noexcept;
    bool is_open() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return is_open(); }

  private:
    explicit socket(int fd) noexcept : fd_(fd) {}
    friend struct impl::construct;
    void take(socket& other) noexcept;
    int checked_fd(const char* operation) const;

    int fd_ = -1;
    // The last read returned less than asked: it emptied the kernel's receive buffer, so the
    // next read waits for readiness first instead of costing a read() that says EAGAIN. (The
    // same for writes: the last write was short, the send buffer is full.) net_socket.cpp
    // explains why this is safe with an edge-triggered loop.
    bool read_drained_ = false;
    bool write_full_ = false;
};

// Connects to a TCP endpoint (IPv4 or IPv6). io_error "connect" (ECONNREFUSED, ...).
socket connect_tcp(const endpoint& to, deadline until = {});
// Resolves host (resolve()) and tries its addresses in order until one connects; the deadline
// covers the connection attempts, not the lookup. Raises what the last attempt raised.
socket connect_tcp(std::string_view host, std::uint16_t port, deadline until = {});
// Connects to a Unix-domain stream socket ("@name": abstract). When the listener's backlog is
// full the kernel refuses at once (EAGAIN) and offers no readiness to wait for, so the attempt
// is repeated with growing pauses (1 ms to 50 ms) until the deadline.
socket connect_unix(std::string_view path, deadline until = {});
// Two connected Unix-domain stream sockets (socketpair).
std::pair<socket, socket> socket_pair();

// A listening stream socket.
class listener {
  public:
    listener() noexcept = default;
    // Takes ownership of a listening socket's fd and makes it non-blocking.
    static listener adopt(int fd);

    listener(listener&& other) noexcept { take(other); }
    listener& operator=(listener&& other) noexcept;
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;
    ~listener() { close(); }

    // The next connection; waits for one. io_error "accept" (EMFILE when out of fds, ...).
    socket accept(deadline until = {});
    endpoint local_endpoint() const;
    // Closes the fd (waking a tasklet that waits in accept with io_error) and removes the socket
    // file of a listen_unix listener.
    void close() noexcept;
    int fd() const noexcept { return fd_; }
    int release() noexcept;
    bool is_open() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return is_open(); }

  private:
    explicit listener(int fd, std::string unlink_path = {}) noexcept
        : fd_(fd), unlink_path_(std::move(unlink_path)) {}
    friend struct impl::construct;
    void take(listener& other) noexcept;

    int fd_ = -1;
    std::string unlink_path_;  // the socket file listen_unix made, removed at close
};

constexpr int default_backlog = SOMAXCONN;

// Listens on a TCP endpoint, with SO_REUSEADDR (a restarted server can bind while connections of
// the old one linger in TIME_WAIT). Port 0 picks a free port: see local_endpoint(). Accepted
// connections inherit TCP_NODELAY from the listener.
listener listen_tcp(const endpoint& where, int backlog = default_backlog);
// Listens on a Unix-domain path ("@name": abstract). An existing file there is an error
// (EADDRINUSE), as in Go; the listener removes the file it made when it closes.
listener listen_unix(std::string_view path, int backlog = default_backlog);

}  // namespace stackless::net
