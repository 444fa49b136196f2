// Listing 1 of the article, "First Steps": a tasklet prints 1, yields, prints 2. The main tasklet
// calls schedule() twice, as the interactive session does with `stackless.schedule(None)`:
//
//   >>> def f():
//   ...     print "1"
//   ...     stackless.schedule()
//   ...     print "2"
//   >>> f_task = stackless.tasklet(f)()
//   >>> stackless.schedule(None)
//   1
//   >>> stackless.schedule(None)
//   2
#include <iostream>

#include "stackless/stackless.hpp"

void f() {
    std::cout << "1\n";
    stackless::schedule();
    std::cout << "2\n";
}

int main() {
    stackless::tasklet f_task = stackless::tasklet(f)();
    stackless::schedule();  // main hands over to f_task, which prints 1 and hands back
    stackless::schedule();  // f_task prints 2 and ends; main goes on
    return f_task.alive() ? 1 : 0;
}
