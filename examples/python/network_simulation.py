"""Listings 4 and 5 of the article (network_simulation.py): a network of nodes (computers) and
hubs, in Python 3. It mirrors examples/cpp/network_simulation.cpp line for line, and prints the
same lines (examples/cpp/expected/network_simulation.txt).

Every element is an actor: it owns one reception channel and a tasklet that loops receiving
from it (Listing 4). A node prints the packets addressed to it and forwards the others; a hub
passes every packet on to all the devices connected to it, but only sends when somebody is
listening at the other end (out.balance < 0), and meanwhile picks up incoming packets
(in_channel.balance > 0) and yields (Listing 5).

The network built here:

    n1 --+                  +-- n3 -- n4
         hub1 ---------- hub2
    n2 --+

A link is a pair of connections, one each way. A hub never sends a packet back over the link
it came from, and a node forwards a packet that is not for it over its other links (n3 passes
packets on between hub2 and n4; n1, n2 and n4 have nowhere else to send and drop them), so
packets cannot circle. Main sends one packet at a time and calls stackless.run(), which
returns once every element is blocked waiting for input.
"""
from collections import namedtuple

import stackless

# source: the node that sent it; last_hop: the element that handed it over
Packet = namedtuple('Packet', 'source destination payload last_hop')

# name: the element at the other end; out: its reception channel
Connector = namedtuple('Connector', 'name out')


class Actor:
    """Listing 4's Element, with Listing 5's name: Actor(name, in_channel)."""

    def __init__(self, name, in_channel):
        self.name = name
        self.in_channel = in_channel
        self.connectors = []
        self.task = stackless.tasklet(self.taskloop)(in_channel)

    def connect(self, other):
        """Connects two elements both ways."""
        self.connectors.append(Connector(other.name, other.in_channel))
        other.connectors.append(Connector(self.name, self.in_channel))

    def taskloop(self, channel):
        while True:
            message = channel.receive()
            self.action(message)

    def action(self, msg):
        raise NotImplementedError


class Node(Actor):
    def __init__(self, name):
        Actor.__init__(self, name, stackless.channel())

    def transmit(self, destination, payload):
        """Called by main: puts a new packet on every link of this node."""
        print('%s sends "%s" to %s' % (self.name, payload, destination))
        for c in self.connectors:
            c.out.send(Packet(self.name, destination, payload, self.name))

    def action(self, msg):
        if msg.destination == self.name:
            print('%s received "%s" from %s' % (self.name, msg.payload, msg.source))
            for i in range(3):  # handling it takes a while
                stackless.schedule()
            return
        forwarded = False
        for c in self.connectors:
            if c.name == msg.last_hop:
                continue
            print('%s forwards the packet for %s to %s' % (self.name, msg.destination, c.name))
            c.out.send(Packet(msg.source, msg.destination, msg.payload, self.name))
            forwarded = True
        if not forwarded:
            print('%s drops the packet for %s' % (self.name, msg.destination))


class HUB(Actor):
    def __init__(self, name):
        Actor.__init__(self, name, stackless.channel())
        self.messages = []

    def action(self, msg):
        """Listing 5: dispatch an incoming packet to all connected devices."""
        self.messages.append(msg)
        while self.messages:
            msg = self.messages.pop()
            conn = [c for c in self.connectors if c.name != msg.last_hop]
            while conn:
                out = conn.pop()
                if out.out.balance < 0:
                    # somebody is listening at the other end
                    out.out.send(Packet(msg.source, msg.destination, msg.payload, self.name))
                else:
                    # nobody listening there yet: try the others first, pick up what is
                    # waiting to come in, and let the other tasklets run
                    conn.insert(0, out)
                    if self.in_channel.balance > 0:
                        self.messages.append(self.in_channel.receive())
                        print('%s picks up a packet for %s while %s is busy'
                              % (self.name, self.messages[-1].destination, out.name))
                    stackless.schedule()


def main():
    hub1, hub2 = HUB('hub1'), HUB('hub2')
    n1, n2, n3, n4 = Node('n1'), Node('n2'), Node('n3'), Node('n4')
    hub1.connect(n1)
    hub1.connect(n2)
    hub1.connect(hub2)
    hub2.connect(n3)
    n3.connect(n4)

    stackless.run()  # every element starts its loop and waits for input

    n1.transmit('n3', 'hello n3')
    stackless.run()  # returns when every element is blocked again
    print('-- network idle')

    n2.transmit('n4', 'hello n4')
    stackless.run()
    print('-- network idle')

    n4.transmit('n1', 'reply from n4')
    stackless.run()
    print('-- network idle')

    # A burst: main hands hub1 the next packet while the previous ones are still on their way,
    # so the hubs have to wait for busy listeners and pick up incoming packets meanwhile.
    for text in ('burst 1', 'burst 2', 'burst 3', 'burst 4', 'burst 5'):
        n1.transmit('n3', text)
    stackless.run()
    print('-- network idle')

    # End the receive loops (blocked on their channels), as the C++ version's destructors do.
    for element in (n4, n3, n2, n1, hub2, hub1):
        element.task.kill()


if __name__ == '__main__':
    main()
