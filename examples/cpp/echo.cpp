// An echo server and its clients in one program, one thread: a server tasklet accepts
// connections on a loopback port and gives each one a tasklet of its own, which echoes what it
// reads; client tasklets connect and make round trips, all at once. Every blocking call suspends
// only its tasklet; the thread waits in the event loop when none can run.
//
//   echo [clients] [round trips]      (default: 100 clients, 10 round trips each)
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "stackless/stackless.hpp"

using namespace std::chrono_literals;
namespace net = stackless::net;

namespace {

struct server_counts {
    int connections = 0;
    long bytes_echoed = 0;
};

// One connection's tasklet: echoes until the client ends its stream.
void echo(net::socket connection, server_counts& counts) {
    char buffer[256];  // (small: the tasklet's stack is copied aside while it waits)
    while (std::size_t got = connection.read_some(buffer, sizeof buffer)) {
        connection.write_all(buffer, got);
        counts.bytes_echoed += static_cast<long>(got);
    }
}

void serve(net::listener& listener, int connections, server_counts& counts) {
    for (int i = 0; i < connections; ++i) {
        stackless::spawn(echo, listener.accept(10s), std::ref(counts));
        ++counts.connections;
    }
}

struct client_counts {
    int round_trips = 0;
    int mismatches = 0;
    std::string last_reply_of_client_0;
};

void client(int id, int round_trips, const net::endpoint& server, client_counts& counts) {
    net::socket connection = net::connect_tcp(server, 10s);
    for (int round = 0; round < round_trips; ++round) {
        const std::string message =
            "client " + std::to_string(id) + ", message " + std::to_string(round) + "\n";
        connection.write_all(message, 10s);
        std::string reply(message.size(), '\0');
        if (!connection.read_exact(reply.data(), reply.size(), 10s) || reply != message)
            ++counts.mismatches;
        ++counts.round_trips;
        if (id == 0) counts.last_reply_of_client_0 = reply;
    }
}  // (closing the connection ends its server tasklet)

int positive_argument(int argc, char** argv, int index, int fallback) {
    if (argc <= index) return fallback;
    const int value = std::atoi(argv[index]);
    if (value <= 0) throw std::invalid_argument("arguments must be positive numbers");
    return value;
}

}  // namespace

int main(int argc, char** argv) try {
    const int clients = positive_argument(argc, argv, 1, 100);
    const int round_trips = positive_argument(argc, argv, 2, 10);

    // Port 0: the system picks a free one.
    net::listener listener = net::listen_tcp(net::endpoint("127.0.0.1", 0));
    const net::endpoint server = listener.local_endpoint();
    std::cout << "echo server listening on " << server.address() << "\n";

    server_counts served;
    client_counts clients_saw;
    stackless::spawn(serve, std::ref(listener), clients, std::ref(served));
    for (int id = 0; id < clients; ++id)
        stackless::spawn(client, id, round_trips, std::cref(server), std::ref(clients_saw));
    stackless::run();  // returns when every tasklet has ended

    std::cout << clients << " clients made " << clients_saw.round_trips << " round trips, "
              << clients_saw.mismatches << " replies differed from their message\n";
    std::cout << "the server accepted " << served.connections << " connections and echoed "
              << served.bytes_echoed << " bytes\n";
    std::cout << "client 0's last reply: " << clients_saw.last_reply_of_client_0;
    return clients_saw.mismatches == 0 ? 0 : 1;
} catch (const std::exception& e) {
    std::cerr << "echo: " << e.what() << "\n";
    return 1;
}
