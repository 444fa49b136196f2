// Listing 3 of the article (sort.py): a "fairly inefficient sort algorithm". Each number n gets a
// tasklet that yields n times and then sends n on a channel, so the tasklets block on the channel
// in the order of their numbers; main then receives them while senders are waiting.
//
//   numbers = range(20)
//   random.shuffle(numbers)
//   print numbers
//   print 'Sorting...'
//
//   def counter(n, ch):
//       for i in xrange(n):
//           stackless.schedule()
//       ch.send(n)
//
//   ch = stackless.channel()
//   for each in numbers:
//       stackless.tasklet(counter)(each, ch)
//   stackless.run()
//   rlist = []
//   while ch.balance:
//       rlist.append(ch.receive())
//   print rlist
//
// Usage: sort [SEED | random]   (default: a fixed seed, so the output is reproducible)
#include <algorithm>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "stackless/stackless.hpp"

// Prints a list as Python does: [3, 1, 4]
void print_list(const std::vector<int>& list) {
    std::cout << '[';
    for (std::size_t i = 0; i < list.size(); ++i) std::cout << (i ? ", " : "") << list[i];
    std::cout << "]\n";
}

// A channel is a handle: the copy passed in refers to the same channel.
void counter(int n, stackless::channel<int> ch) {
    for (int i = 0; i < n; ++i) stackless::schedule();
    ch.send(n);
}

int main(int argc, char** argv) {
    std::mt19937::result_type seed = 2007;
    if (argc > 1)
        seed = std::string(argv[1]) == "random" ? std::random_device{}() : std::stoul(argv[1]);

    std::vector<int> numbers(20);
    std::iota(numbers.begin(), numbers.end(), 0);
    std::shuffle(numbers.begin(), numbers.end(), std::mt19937(seed));
    print_list(numbers);
    std::cout << "Sorting...\n";

    stackless::channel<int> ch;
    // Braces, not parentheses: `stackless::tasklet(counter)(each, ch);` would declare a
    // variable named counter.
    for (int each : numbers) stackless::tasklet{counter}(each, ch);
    stackless::run();

    std::vector<int> rlist;
    while (ch.balance() > 0) rlist.push_back(ch.receive());
    print_list(rlist);

    stackless::run();  // let the senders, runnable again, finish
}
