// Listings 4 and 5 of the article (network_simulation.py): a network of nodes (computers) and
// hubs. Every element is an actor: it owns one reception channel and a tasklet that loops
// receiving from it (Listing 4). A node prints the packets addressed to it and forwards the
// others; a hub passes every packet on to all the devices connected to it, but only sends when
// somebody is listening at the other end (out.balance() < 0), and meanwhile picks up incoming
// packets (in_channel.balance() > 0) and yields (Listing 5).
//
// The network built here:
//
//     n1 --+                  +-- n3 -- n4
//          hub1 ---------- hub2
//     n2 --+
//
// A link is a pair of connections, one each way. A hub never sends a packet back over the link
// it came from, and a node forwards a packet that is not for it over its other links (n3 passes
// packets on between hub2 and n4; n1, n2 and n4 have nowhere else to send and drop them), so
// packets cannot circle. Main sends one packet at a time and calls stackless::run(), which
// returns once every element is blocked waiting for input.
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "stackless/stackless.hpp"

using stackless::channel;

struct Packet {
    std::string source;       // the node that sent it
    std::string destination;  // the node it is for
    std::string payload;
    std::string last_hop;  // the element that handed it over
};

// Listing 4's Element, with Listing 5's name: Actor(name, in_channel).
class Actor {
  public:
    Actor(std::string name, channel<Packet> in_channel)
        : name_(std::move(name)), in_channel_(in_channel) {
        // stackless.tasklet(self.taskloop)(channel)
        task_ = stackless::spawn(&Actor::taskloop, this, in_channel_);
    }
    Actor(const Actor&) = delete;
    Actor& operator=(const Actor&) = delete;
    // Ends the receive loop: its tasklet is blocked on in_channel, and unwinds when killed.
    virtual ~Actor() { task_.kill(); }

    const std::string& name() const { return name_; }
    channel<Packet>& in_channel() { return in_channel_; }

    // Connects two elements both ways.
    void connect(Actor& other) {
        connectors_.push_back(Connector{other.name(), other.in_channel()});
        other.connectors_.push_back(Connector{name(), in_channel()});
    }

  protected:
    struct Connector {
        std::string name;  // the element at the other end
        channel<Packet> out;
    };

    virtual void action(Packet msg) = 0;

    void taskloop(channel<Packet> channel) {
        for (;;) {
            Packet message = channel.receive();
            action(std::move(message));
        }
    }

    std::string name_;
    channel<Packet> in_channel_;
    std::vector<Connector> connectors_;

  private:
    stackless::tasklet task_;
};

class Node : public Actor {
  public:
    explicit Node(std::string name) : Actor(std::move(name), channel<Packet>()) {}

    // Called by main: puts a new packet on every link of this node.
    void transmit(const std::string& destination, const std::string& payload) {
        std::cout << name_ << " sends \"" << payload << "\" to " << destination << '\n';
        for (Connector& c : connectors_) c.out.send(Packet{name_, destination, payload, name_});
    }

  protected:
    void action(Packet msg) override {
        if (msg.destination == name_) {
            std::cout << name_ << " received \"" << msg.payload << "\" from " << msg.source << '\n';
            for (int i = 0; i < 3; ++i) stackless::schedule();  // handling it takes a while
            return;
        }
        bool forwarded = false;
        for (Connector& c : connectors_) {
            if (c.name == msg.last_hop) continue;
            std::cout << name_ << " forwards the packet for " << msg.destination << " to " << c.name
                      << '\n';
            c.out.send(Packet{msg.source, msg.destination, msg.payload, name_});
            forwarded = true;
        }
        if (!forwarded) std::cout << name_ << " drops the packet for " << msg.destination << '\n';
    }
};

class Hub : public Actor {
  public:
    explicit Hub(std::string name) : Actor(std::move(name), channel<Packet>()) {}

  protected:
    // Listing 5: dispatch an incoming packet to all connected devices.
    void action(Packet msg) override {
        messages_.push_back(std::move(msg));
        while (!messages_.empty()) {
            Packet current = std::move(messages_.back());
            messages_.pop_back();
            std::vector<Connector*> conn;
            for (Connector& c : connectors_)
                if (c.name != current.last_hop) conn.push_back(&c);
            while (!conn.empty()) {
                Connector* out = conn.back();
                conn.pop_back();
                if (out->out.balance() < 0) {
                    // somebody is listening at the other end
                    out->out.send(
                        Packet{current.source, current.destination, current.payload, name_});
                } else {
                    // nobody listening there yet: try the others first, pick up what is
                    // waiting to come in, and let the other tasklets run
                    conn.insert(conn.begin(), out);
                    if (in_channel_.balance() > 0) {
                        messages_.push_back(in_channel_.receive());
                        std::cout << name_ << " picks up a packet for "
                                  << messages_.back().destination << " while " << out->name
                                  << " is busy\n";
                    }
                    stackless::schedule();
                }
            }
        }
    }

  private:
    std::vector<Packet> messages_;
};

int main() {
    Hub hub1("hub1"), hub2("hub2");
    Node n1("n1"), n2("n2"), n3("n3"), n4("n4");
    hub1.connect(n1);
    hub1.connect(n2);
    hub1.connect(hub2);
    hub2.connect(n3);
    n3.connect(n4);

    stackless::run();  // every element starts its loop and waits for input

    n1.transmit("n3", "hello n3");
    stackless::run();  // returns when every element is blocked again
    std::cout << "-- network idle\n";

    n2.transmit("n4", "hello n4");
    stackless::run();
    std::cout << "-- network idle\n";

    n4.transmit("n1", "reply from n4");
    stackless::run();
    std::cout << "-- network idle\n";

    // A burst: main hands hub1 the next packet while the previous ones are still on their way,
    // so the hubs have to wait for busy listeners and pick up incoming packets meanwhile.
    for (const char* text : {"burst 1", "burst 2", "burst 3", "burst 4", "burst 5"})
        n1.transmit("n3", text);
    stackless::run();
    std::cout << "-- network idle\n";
}
