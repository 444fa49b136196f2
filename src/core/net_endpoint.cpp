// endpoint: IP literals and Unix paths to sockaddrs and back.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstddef>
#include <cstring>
#include <ostream>

#include "stackless/net.hpp"

namespace stackless::net {

namespace {

constexpr std::size_t unix_path_offset = offsetof(sockaddr_un, sun_path);
constexpr std::size_t unix_path_capacity = sizeof(sockaddr_un::sun_path);

[[noreturn]] void bad_address(std::string_view what, std::string_view text) {
    throw address_error(std::string(what) + ": \"" + std::string(text) + "\"");
}

std::uint16_t parse_port(std::string_view text, std::string_view whole) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 65535)
        bad_address("not a port number", whole);
    return static_cast<std::uint16_t>(value);
}

// The interface of an IPv6 scope ("eth0" or its index); 0 if there is no such interface.
std::uint32_t parse_scope(std::string_view text) {
    std::uint32_t index = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
    if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) return index;
    return if_nametoindex(std::string(text).c_str());
}

}  // namespace

endpoint::endpoint() noexcept : data_{}, size_(0) {
    data_.ss_family = AF_UNSPEC;
}

endpoint::endpoint(std::string_view ip, std::uint16_t port) : endpoint() {
    std::optional<endpoint> parsed = try_parse_ip(ip, port);
    if (!parsed) bad_address("not an IP address", ip);
    *this = *parsed;
}

std::optional<endpoint> endpoint::try_parse_ip(std::string_view ip, std::uint16_t port) {
    const std::string text(ip);  // (inet_pton wants a terminated string)
    endpoint e;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&e.data_);
    if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        e.size_ = sizeof(sockaddr_in);
        return e;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.data_);
    const std::size_t percent = text.find('%');
    if (inet_pton(AF_INET6, text.substr(0, percent).c_str(), &v6->sin6_addr) != 1)
        return std::nullopt;
    if (percent != std::string::npos) {
        v6->sin6_scope_id = parse_scope(std::string_view(text).substr(percent + 1));
        if (v6->sin6_scope_id == 0) return std::nullopt;
    }
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    e.size_ = sizeof(sockaddr_in6);
    return e;
}

endpoint endpoint::parse(std::string_view text) {
    if (!text.empty() && text.front() == '[') {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            bad_address("expected [address]:port", text);
        return endpoint(text.substr(1, close - 1), parse_port(text.substr(close + 2), text));
    }
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) bad_address("expected address:port", text);
    if (text.find(':') != colon)
        bad_address("an IPv6 address needs brackets: [address]:port", text);
    return endpoint(text.substr(0, colon), parse_port(text.substr(colon + 1), text));
}

endpoint endpoint::unix_path(std::string_view path) {
    if (path.empty()) bad_address("empty Unix socket path", path);
    const bool abstract = path.front() == '@';
    // A file path needs its terminating NUL inside sun_path; an abstract name has none.
    if (path.size() + (abstract ? 0 : 1) > unix_path_capacity)
        bad_address("Unix socket path too long", path);
    endpoint e;
    auto* un = reinterpret_cast<sockaddr_un*>(&e.data_);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    if (abstract) {
        un->sun_path[0] = '\0';
        e.size_ = static_cast<socklen_t>(unix_path_offset + path.size());
    } else {
        e.size_ = static_cast<socklen_t>(unix_path_offset + path.size() + 1);
    }
    return e;
}

endpoint endpoint::from_native(const sockaddr* address, socklen_t length) {
    endpoint e;
    if (length > sizeof e.data_) length = sizeof e.data_;
    std::memcpy(&e.data_, address, length);
    e.size_ = length;
    return e;
}

net::family endpoint::family() const noexcept {
    switch (data_.ss_family) {
        case AF_INET:
            return net::family::ipv4;
        case AF_INET6:
            return net::family::ipv6;
        case AF_UNIX:
            return net::family::unix_domain;
        default:
            return net::family::none;
    }
}

std::uint16_t endpoint::port() const noexcept {
    switch (family()) {
        case net::family::ipv4:
            return ntohs(reinterpret_cast<const sockaddr_in*>(&data_)->sin_port);
        case net::family::ipv6:
            return ntohs(reinterpret_cast<const sockaddr_in6*>(&data_)->sin6_port);
        default:
            return 0;
    }
}

endpoint endpoint::with_port(std::uint16_t port) const {
    endpoint e = *this;
    switch (family()) {
        case net::family::ipv4:
            reinterpret_cast<sockaddr_in*>(&e.data_)->sin_port = htons(port);
            break;
        case net::family::ipv6:
            reinterpret_cast<sockaddr_in6*>(&e.data_)->sin6_port = htons(port);
            break;
        default:
            throw address_error("with_port: not an IP endpoint");
    }
    return e;
}

std::string endpoint::address() const {
    char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    switch (family()) {
        case net::family::ipv4:
            inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&data_)->sin_addr, text,
                      sizeof text);
            return text;
        case net::family::ipv6: {
            const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&data_);
            inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
            std::string result = text;
            if (v6->sin6_scope_id != 0) {
                char name[IF_NAMESIZE];
                result += '%';
                result += if_indextoname(v6->sin6_scope_id, name) != nullptr
                              ? std::string(name)
                              : std::to_string(v6->sin6_scope_id);
            }
            return result;
        }
        case net::family::unix_domain: {
            if (size_ <= unix_path_offset) return "";  // unnamed
            const char* path = reinterpret_cast<const sockaddr_un*>(&data_)->sun_path;
            const std::size_t length = size_ - unix_path_offset;
            if (path[0] == '\0') return std::string("@").append(path + 1, length - 1);
            return std::string(path, strnlen(path, length));
        }
        default:
            return "";
    }
}

std::string endpoint::to_string() const {
    switch (family()) {
        case net::family::ipv4:
            return address() + ":" + std::to_string(port());
        case net::family::ipv6:
            // (Appended, not "[" + ...: GCC 12 warns wrongly about that form, -Wrestrict.)
            return std::string("[").append(address()).append("]:").append(std::to_string(port()));
        default:
            return address();
    }
}

bool operator==(const endpoint& a, const endpoint& b) noexcept {
    if (a.family() != b.family()) return false;
    switch (a.family()) {
        case family::ipv4: {
            const auto* x = reinterpret_cast<const sockaddr_in*>(&a.data_);
            const auto* y = reinterpret_cast<const sockaddr_in*>(&b.data_);
            return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        case family::ipv6: {
            const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.data_);
            const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.data_);
            return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                   std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
        }
        case family::unix_domain:
            return a.address() == b.address();  // (the kernel's lengths may count the NUL or not)
        default:
            return true;
    }
}

std::ostream& operator<<(std::ostream& out, const endpoint& e) {
    return out << e.to_string();
}

}  // namespace stackless::net
