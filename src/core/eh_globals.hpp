// The C++ runtime keeps its "exceptions being handled" stack per thread (__cxa_eh_globals). Two
// tasklets of one thread that are each inside a catch block would corrupt it for one another, so
// every tasklet keeps its own copy, swapped on each switch.
//
// Relies on the Itanium C++ ABI (libstdc++ and libc++abi alike): __cxa_get_globals() returns the
// thread's {caughtExceptions, uncaughtExceptions} record.
#pragma once

#include <cxxabi.h>

#include <cstring>

namespace stackless::detail {

// The layout of the runtime's record: {caughtExceptions, uncaughtExceptions}.
struct eh_state {
    void* caught;
    unsigned int uncaught;
};

namespace eh {

using globals_layout = eh_state;

inline globals_layout* thread_globals() noexcept {
    return reinterpret_cast<globals_layout*>(abi::__cxa_get_globals());
}

// Whole-record copies: two 16-byte moves instead of four field moves.
inline void swap_out(globals_layout* g, eh_state& into) noexcept {
    std::memcpy(&into, g, sizeof into);
}

inline void swap_in(globals_layout* g, const eh_state& from) noexcept {
    std::memcpy(g, &from, sizeof from);
}

}  // namespace eh
}  // namespace stackless::detail
