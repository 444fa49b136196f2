// Listing 2 of the article (example.py): two tasklets started by stackless.run(). run() takes
// the main tasklet out of the scheduler until no other tasklet is runnable (Figure 2), so both
// tasklets get to their second line:
//
//   def f(c):
//       print c, 'before'
//       stackless.schedule()
//       print c, 'after'
//
//   stackless.tasklet(f)('a')
//   stackless.tasklet(f)('b')
//   stackless.run()
#include <iostream>

#include "stackless/stackless.hpp"

void f(const char* c) {
    std::cout << c << " before\n";
    stackless::schedule();
    std::cout << c << " after\n";
}

int main() {
    // Braces, not parentheses: `stackless::tasklet(f)("a");` would declare a tasklet named f.
    stackless::tasklet{f}("a");
    stackless::tasklet{f}("b");
    stackless::run();
}
