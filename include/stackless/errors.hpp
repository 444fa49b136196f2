// Errors the library reports. Every misuse gets one of these with a message that says what
// was wrong; none of them is undefined behaviour.
#pragma once

#include <stdexcept>

namespace stackless {

// Base of every error this library raises.
class error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The operation would block the last runnable tasklet (Stackless: RuntimeError "Deadlock").
class deadlock_error : public error {
  public:
    using error::error;
};

// A blocking send or receive on a closing or closed channel (Stackless: ValueError).
class channel_closed_error : public error {
  public:
    using error::error;
};

// The tasklet is in the wrong state for the operation: dead, blocked, not bound, ...
class tasklet_state_error : public error {
  public:
    using error::error;
};

// A tasklet or channel touched from a thread other than the one it belongs to.
class wrong_thread_error : public error {
  public:
    using error::error;
};

// Thrown into a tasklet by tasklet::kill(). It deliberately does not derive from
// std::exception, so `catch (const std::exception&)` in user code does not swallow it.
// A tasklet whose function returns normally after catching it is reported as an error.
struct tasklet_exit {};

}  // namespace stackless
