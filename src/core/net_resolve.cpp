// resolve: host names to endpoints through getaddrinfo, which blocks (it reads files and asks
// DNS servers itself), so it runs on stackless::blocking's threads.
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "stackless/blocking.hpp"
#include "stackless/net.hpp"

namespace stackless::net {

namespace {

std::string describe(int gai_code, int system_errno) {
    if (gai_code == EAI_SYSTEM && system_errno != 0) return std::strerror(system_errno);
    return gai_strerror(gai_code);
}

// What a lookup found, made on the pool thread: the addrinfo list stays there (freed there), so
// nothing of it depends on the caller, which may have been killed meanwhile.
struct lookup {
    int gai_code = 0;
    int system_errno = 0;
    std::vector<endpoint> found;
};

lookup look_up(const std::string& host, std::uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address (not one per socket type)
    hints.ai_flags = AI_NUMERICSERV;
    // (No AI_ADDRCONFIG: with only a loopback interface, it drops "localhost"'s addresses.)
    addrinfo* list = nullptr;
    lookup result;
    result.gai_code = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
    if (result.gai_code != 0) {
        result.system_errno = errno;
        return result;
    }
    for (const addrinfo* a = list; a != nullptr; a = a->ai_next)
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
            result.found.push_back(endpoint::from_native(a->ai_addr, a->ai_addrlen));
    ::freeaddrinfo(list);
    return result;
}

}  // namespace

resolve_error::resolve_error(int gai_code, const std::string& host, int system_errno)
    : error("resolve \"" + host + "\": " + describe(gai_code, system_errno)), code_(gai_code) {}

std::vector<endpoint> resolve(std::string_view host, std::uint16_t port) {
    if (std::optional<endpoint> literal = endpoint::try_parse_ip(host, port)) return {*literal};
    lookup result = blocking([name = std::string(host), port] { return look_up(name, port); });
    if (result.gai_code != 0)
        throw resolve_error(result.gai_code, std::string(host), result.system_errno);
    if (result.found.empty()) throw resolve_error(EAI_NONAME, std::string(host));
    return std::move(result.found);
}

}  // namespace stackless::net
