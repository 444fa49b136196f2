// Errors the library reports. Every misuse gets one of these with a message that says what
// was wrong; none of them is undefined behaviour.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

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

// A deadline passed before the operation could complete (operations that report a timeout by
// their result, such as channel::receive_for, do not raise it).
class timeout_error : public error {
  public:
    using error::error;
};

// A system call failed: carries errno (code()) and the operation that failed (operation()).
class io_error : public error {
  public:
    io_error(int errno_value, const char* operation)
        : error(std::string(operation) + ": " + std::generic_category().message(errno_value)),
          code_(errno_value, std::generic_category()),
          operation_(operation) {}
    io_error(int errno_value, const char* operation, const std::string& detail)
        : error(std::string(operation) + ": " + detail),
          code_(errno_value, std::generic_category()),
          operation_(operation) {}
    const std::error_code& code() const noexcept { return code_; }
    const char* operation() const noexcept { return operation_; }

  private:
    std::error_code code_;
    const char* operation_;  // a string literal
};

// Thrown into a tasklet by tasklet::kill(). It deliberately does not derive from
// std::exception, so `catch (const std::exception&)` in user code does not swallow it.
// A tasklet whose function returns normally after catching it is reported as an error.
struct tasklet_exit {};

}  // namespace stackless
