// The part of a tasklet's state that inline code in the public headers touches. The rest of the
// state is private to src/core.
#pragma once

#include <cxxabi.h>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <typeinfo>
#include <utility>

#include "stackless/detail/callable.hpp"
#include "stackless/detail/tempval.hpp"

namespace stackless::detail {

struct tasklet_state;

struct tasklet_header {
    tempval value;                          // value being handed over by a channel
    std::atomic<std::uint32_t> handles{0};  // tasklet handles that refer to this tasklet
};

// Implemented in src/core. Handles count references; the scheduler and channels track their own
// membership, and a tasklet is freed when neither holds it.
void release_handle(tasklet_state* t) noexcept;
// A new state of this thread, with one handle counted.
tasklet_state* new_tasklet_state();
tasklet_header* header_of(tasklet_state* t) noexcept;
// Room for the tasklet's function inside its state, or nullptr if it does not fit there.
void* callable_space(tasklet_state* t, std::size_t size, std::size_t align) noexcept;
// Makes `fn` the tasklet's function (it lives in callable_space() if `in_place`).
void adopt_callable(tasklet_state* t, callable* fn, bool in_place) noexcept;

// Binds a function of type C built from `args` to `t`, whose function slot is empty: in place
// when it fits, else on the heap.
template <class C, class... Args>
void emplace_callable(tasklet_state* t, Args&&... args) {
    if (void* place = callable_space(t, sizeof(C), alignof(C))) {
        adopt_callable(t, ::new (place) C(std::forward<Args>(args)...), true);
    } else {
        adopt_callable(t, new C(std::forward<Args>(args)...), false);
    }
}

// A new state bound to a function of type C built from `args`, with one handle counted.
template <class C, class... Args>
tasklet_state* new_tasklet_state_with(Args&&... args) {
    tasklet_state* t = new_tasklet_state();
    try {
        emplace_callable<C>(t, std::forward<Args>(args)...);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        release_handle(t);
        throw;
    }
    return t;
}

}  // namespace stackless::detail
