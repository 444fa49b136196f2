// The article's network simulation (Listings 4 and 5) with real link latency: every link takes
// time to cross, and a packet on a link is a tasklet that sleeps for the link's latency before
// it hands the packet to the element at the other end. Many packets are on the wires at once,
// so the whole exchange takes as long as the slowest path, not the sum of all of them.
//
//     n1 --10ms--+                           +--10ms-- n3 --40ms-- n4
//                hub1 --------30ms-------- hub2
//     n2 --25ms--+
//
// Each element is an actor as in the article: a tasklet that loops receiving from its channel.
// Nodes take packets addressed to them and forward the others; hubs repeat a packet on every
// link but the one it came from. The output is deterministic: it prints the path each packet
// took and its latency, then checks the wall time against the slowest path.
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "stackless/stackless.hpp"

using namespace std::chrono_literals;
using stackless::channel;

struct Packet {
    std::string source;
    std::string destination;
    std::string payload;
    std::vector<std::string> path;  // the elements it went through
    std::chrono::milliseconds latency{0};
};

class Element {
  public:
    explicit Element(std::string name) : name_(std::move(name)) {
        task_ = stackless::spawn([this] {
            for (;;) action(inbox_.receive());
        });
    }
    Element(const Element&) = delete;
    Element& operator=(const Element&) = delete;
    virtual ~Element() { task_.kill(); }

    const std::string& name() const { return name_; }

    // A link both ways, crossed in `latency`.
    void connect(Element& other, std::chrono::milliseconds latency) {
        links_.push_back({&other, latency});
        other.links_.push_back({this, latency});
    }

  protected:
    virtual void action(Packet packet) = 0;

    // Puts the packet on every link but the one it came in on. Each copy travels in a tasklet of
    // its own, so this element is free at once to take the next packet.
    void send_on_links(const Packet& packet) {
        const std::string& came_from =
            packet.path.size() > 1 ? packet.path[packet.path.size() - 2] : "";
        for (const Link& link : links_) {
            if (link.peer->name() == came_from) continue;
            Packet copy = packet;
            copy.latency += link.latency;
            stackless::spawn([peer = link.peer, latency = link.latency, copy]() mutable {
                stackless::sleep_for(latency);  // on the wire
                copy.path.push_back(peer->name());
                peer->inbox_.send(std::move(copy));
            });
        }
    }

    struct Link {
        Element* peer;
        std::chrono::milliseconds latency;
    };
    std::string name_;
    channel<Packet> inbox_;
    std::vector<Link> links_;
    stackless::tasklet task_;
};

class Node : public Element {
  public:
    using Element::Element;
    void transmit(const std::string& destination, const std::string& payload) {
        send_on_links(Packet{name_, destination, payload, {name_}, 0ms});
    }
    std::vector<std::string> received;

  protected:
    void action(Packet packet) override {
        if (packet.destination != name_) {
            if (links_.size() > 1) send_on_links(packet);  // an end node just drops it
            return;
        }
        std::string line =
            name_ + " received \"" + packet.payload + "\" from " + packet.source + " via";
        for (const std::string& hop : packet.path) line += " " + hop;
        line += " (" + std::to_string(packet.latency.count()) + " ms of links)";
        received.push_back(line);
        std::cout << line << '\n';
    }
};

class Hub : public Element {
  public:
    using Element::Element;

  protected:
    void action(Packet packet) override { send_on_links(packet); }
};

int main() {
    Hub hub1("hub1"), hub2("hub2");
    Node n1("n1"), n2("n2"), n3("n3"), n4("n4");
    hub1.connect(n1, 10ms);
    hub1.connect(n2, 25ms);
    hub1.connect(hub2, 30ms);
    hub2.connect(n3, 10ms);
    n3.connect(n4, 40ms);

    const auto start = stackless::clock::now();
    n1.transmit("n3", "hello n3");
    n2.transmit("n4", "hello n4");
    n4.transmit("n1", "reply from n4");
    stackless::run();  // returns when no packet is on a wire and every element waits for input
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(stackless::clock::now() - start);

    std::cout << "-- network idle\n";
    const bool all_arrived = n1.received.size() == 1 && n3.received.size() == 1 &&
                             n4.received.size() == 1 && n2.received.empty();
    std::cout << "every packet arrived once: " << (all_arrived ? "yes" : "no") << '\n';
    // The packets travelled at once: the slowest path (105 ms) bounds the time, not the sum.
    std::cout << "took at least the slowest path (105 ms): " << (elapsed >= 105ms ? "yes" : "no")
              << '\n';
    std::cout << "took less than the three paths one after another (245 ms): "
              << (elapsed < 245ms ? "yes" : "no") << '\n';
    return all_arrived && elapsed >= 105ms ? 0 : 1;
}
