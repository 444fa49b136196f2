// The private state of a tasklet. Kept small: a blocked tasklet costs this struct plus the used
// part of its stack (see docs/design.md).
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>

#include "eh_globals.hpp"
#include "stackless/detail/callable.hpp"
#include "stackless/detail/channel_core.hpp"
#include "stackless/detail/tasklet_header.hpp"
#include "stackless/tasklet.hpp"

namespace stackless::detail {

class scheduler;
struct stack_slot;

enum class life : std::uint8_t {
    unbound,  // no function
    bound,    // function without arguments: not alive yet
    ready,    // function and arguments: alive, not started
    started,  // has a stack and a context
    dead,     // ended
};

enum class place : std::uint8_t {
    none,     // floating: paused, new or dead
    ring,     // in the run queue
    channel,  // blocked on a channel
    transit,  // completed by another thread; queued for its own thread's run queue
    waiting,  // waits on its scheduler's reactor: a deadline, an fd, or another thread's work
    // blocked in select(): its proxies, one per case, wait on the channels in its place
    // (select_proxies.hpp); its own links are unused
    selecting,
};

// Why a tasklet that waited on its scheduler's reactor runs again.
enum class wait_result : std::uint8_t {
    pending,  // not woken by the reactor (a channel partner or an exception woke it)
    ready,    // the fd became ready, or another thread completed the wait
    timeout,  // its deadline passed
    closed,   // the fd was closed (close_fd/forget_fd) while it waited
};

// The tasklet's function: in place when small (the common lambda), else on the heap.
class callable_holder {
  public:
    // Room for a callable of four pointers (a lambda capturing a few handles, or a function and
    // an argument); larger ones go to the heap. Part of every tasklet's memory.
    static constexpr std::size_t in_place_size = 32;
    callable_holder() = default;
    callable_holder(const callable_holder&) = delete;
    callable_holder& operator=(const callable_holder&) = delete;
    ~callable_holder() { reset(); }

    callable* get() const noexcept { return fn_; }
    callable* operator->() const noexcept { return fn_; }
    explicit operator bool() const noexcept { return fn_ != nullptr; }
    void* space(std::size_t size, std::size_t align) noexcept {
        return fn_ == nullptr && size <= in_place_size && align <= 16 ? buf_ : nullptr;
    }
    void adopt(callable* fn, bool in_place) noexcept {
        reset();
        fn_ = fn;
        in_place_ = in_place;
    }
    void reset() noexcept {
        callable* fn = fn_;
        if (fn == nullptr) return;
        fn_ = nullptr;
        if (in_place_)
            fn->~callable();
        else
            delete fn;
    }

  private:
    callable* fn_ = nullptr;
    bool in_place_ = false;
    alignas(16) unsigned char buf_[in_place_size];
};

// What every switch touches, first, so that it shares one cache line (64 bytes).
struct tasklet_links {
    // Links in the run queue ring, or in a channel's waiting list (nullptr-terminated there).
    tasklet_state* next = nullptr;
    tasklet_state* prev = nullptr;
    boost::context::detail::fcontext_t ctx = nullptr;  // saved context while not running
    const tasklet_hooks* hooks = nullptr;
    eh_state eh{};  // the C++ runtime's caught-exception stack while switched out
    place where = place::none;
    bool resident = false;  // its stack is in its home slot (always true for main)
    bool is_main = false;
    std::int8_t block_dir = 0;
    life state = life::unbound;
    bool block_trap = false;
    bool exit_requested = false;  // tasklet_exit was raised in it
    // A select's stand-in on a channel's waiting list, not a tasklet (select_proxies.hpp). Here
    // because the partner that pops a waiter reads this line anyway.
    bool is_select_proxy = false;
    // (The rest fill the line's spare bytes, so that tasklet_state stays within 256 bytes.)
    bool function_takes_pending = false;  // see tasklet::set_function_takes_pending
    bool wait_write = false;              // its fd wait is for writing
    wait_result woke = wait_result::pending;
    // A proxy's case index; in a selecting tasklet, the case a partner completed (-1: none yet).
    std::int16_t select_case = -1;
};

struct tasklet_state : tasklet_links, tasklet_header {
    std::exception_ptr pending;  // raised in the tasklet when it next resumes
    // Owning thread's scheduler; nullptr once that thread ended. Atomic because a handle dropped
    // on another thread reads it.
    std::atomic<scheduler*> sched{nullptr};
    // The channel it waits on; for a shared channel, also while in transit (its own thread
    // clears it: another thread never writes it).
    channel_core* blocked_on = nullptr;
    stack_slot* slot = nullptr;      // home slot: the stack's addresses never change once started
    unsigned char* saved = nullptr;  // the used stack, copied out while another owns the slot
    std::uint32_t saved_size = 0;    // bytes of stack in `saved` (0 while resident)
    std::uint32_t saved_capacity = 0;

    // While it waits on the reactor (place::waiting), or on a channel with a deadline. (A wait
    // that another thread completes is found in the reactor: reactor::remote_of.)
    std::uint32_t timer = UINT32_MAX;  // timer_heap::id, or none
    std::int32_t wait_fd = -1;

    callable_holder fn;
    union {
        void* payload = nullptr;  // a tasklet's: its binding's object
        // A select proxy's (it has no binding, so no payload): its selecting tasklet.
        tasklet_state* select_owner;
    };
    // select() (select_proxies.hpp): the next proxy of the same select; in a selecting tasklet,
    // its first proxy.
    tasklet_state* select_next = nullptr;

    // Every state of a scheduler, so that the scheduler can detach them when its thread ends.
    tasklet_state* all_next = nullptr;
    tasklet_state* all_prev = nullptr;

    bool alive() const noexcept { return state == life::ready || state == life::started; }

    // States come from a per-thread pool: spawning is the hot path of many programs.
    static void* operator new(std::size_t size);
    static void operator delete(void* p) noexcept;
};

static_assert(sizeof(tasklet_links) <= 64, "the switch's fields must fit one cache line");
// Four cache lines: the state pool's stride, and most of what a blocked tasklet costs.
static_assert(sizeof(tasklet_state) <= 256, "a tasklet's state must stay within 256 bytes");

// Gives this thread's free states to the other threads (its scheduler is ending).
void donate_free_states() noexcept;
std::size_t state_chunks() noexcept;  // chunks of states allocated so far, by all threads

inline tasklet_state* state_of(tasklet_header* h) noexcept {
    return static_cast<tasklet_state*>(h);
}

}  // namespace stackless::detail
