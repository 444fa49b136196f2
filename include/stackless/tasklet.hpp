// stackless::tasklet: a handle to a lightweight thread of execution.
//
// Lifetime: a tasklet is owned jointly by its handles, by the run queue while it is scheduled and
// by a channel while it is blocked on it. Dropping every handle to a scheduled or blocked tasklet
// is safe: it runs on, and is freed when it ends. Dropping the last handle to a started tasklet
// that is paused (alive, neither scheduled nor blocked) kills it as Stackless does: it is put
// back in the run queue with tasklet_exit pending, and unwinds the next time it runs. Tasklets
// still alive when their thread's scheduler is destroyed (at thread exit) are killed then.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "stackless/detail/callable.hpp"
#include "stackless/detail/tasklet_header.hpp"
#include "stackless/errors.hpp"

namespace stackless {

// Per-tasklet switch hooks for code that keeps its own per-tasklet state, such as the CPython
// binding's interpreter state. Called on the thread of the tasklet, with the tasklet's payload.
// A tasklet without hooks pays one predictable branch per switch.
struct tasklet_hooks {
    void (*switched_out)(void* payload) noexcept = nullptr;
    void (*switched_in)(void* payload) noexcept = nullptr;
    // The tasklet joined (true) or left (false) the scheduler's structures: the run queue or a
    // channel's waiting list. Lets a binding keep its object alive exactly while the tasklet is
    // scheduled. Called on the tasklet's thread, possibly while it is running; a "left" may be
    // followed at once by a "joined" (moving from a channel back to the run queue).
    void (*scheduled_changed)(void* payload, bool scheduled) noexcept = nullptr;
    // A killed tasklet whose function returns normally is reported as an error, unless its
    // binding lets it catch tasklet_exit (Python code may catch TaskletExit and carry on).
    bool may_catch_exit = false;
    // Asked when another tasklet needs a stack and no slot is free, about the tasklet being
    // switched out (its slot then goes to the next one: soft switching) or a suspended one
    // (instead of copying its stack to the heap): true if the binding can go on without that
    // stack, starting the tasklet's function afresh on a new stack when it next runs (the
    // CPython binding resumes its Python frames, which live elsewhere). The stack is then
    // dropped, and an exception thrown into the tasklet before it runs again is left for the
    // function (take_pending_exception). The tasklet stays started: it is killed at thread exit
    // like the others. Called during a switch, on the tasklet's thread: it must not switch or
    // run foreign code.
    bool (*discard_stack)(void* payload) noexcept = nullptr;
};

class tasklet {
  public:
    // A new tasklet with no function bound (Stackless: `stackless.tasklet()`).
    tasklet();
    // A new tasklet bound to `f` but not yet runnable; `t(args...)` or `t.setup(args...)`
    // binds the arguments and inserts it (Stackless: `stackless.tasklet(f)(args)`).
    // (Only callables: `stackless::tasklet(f)(x);` as a statement would otherwise declare a
    // tasklet named f; write `stackless::tasklet{f}(x);`.)
    template <class F>
    requires(!std::is_same_v<std::decay_t<F>, tasklet> &&
             (std::is_class_v<std::decay_t<F>> ||
              std::is_function_v<std::remove_pointer_t<std::decay_t<F>>>)) explicit tasklet(F&& f)
        : state_(detail::new_tasklet_state_with<detail::unbound_callable<std::decay_t<F>>>(
              std::forward<F>(f))) {}

    tasklet(const tasklet& other) noexcept : state_(other.state_) { acquire(); }
    tasklet(tasklet&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    tasklet& operator=(tasklet other) noexcept {
        std::swap(state_, other.state_);
        return *this;
    }
    ~tasklet() {
        if (state_ != nullptr) detail::release_handle(state_);
    }

    // Binds a function, replacing any previous binding. Allowed when the tasklet is not alive, or
    // when it is alive but neither current nor scheduled nor started.
    template <class F>
    tasklet& bind(F&& f) {
        detail::emplace_callable<detail::unbound_callable<std::decay_t<F>>>(prepare_rebind(),
                                                                            std::forward<F>(f));
        return *this;
    }
    // Binds a function and its arguments without inserting: the tasklet becomes alive and
    // paused. Arguments are converted as by std::invoke.
    template <class F, class... Args>
    tasklet& bind(F&& f, Args&&... args) {
        using bound = detail::bound_callable<std::decay_t<F>, std::tuple<std::decay_t<Args>...>>;
        detail::emplace_callable<bound>(
            prepare_rebind(), std::forward<F>(f),
            std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...));
        return *this;
    }
    // bind() of a tasklet of another thread, for a binding with a lock of its own, as the
    // *_remote operations below: the same rules, and the tasklet stays on its thread.
    template <class F, class... Args>
    tasklet& bind_remote(F&& f, Args&&... args) {
        if constexpr (sizeof...(Args) == 0) {
            detail::emplace_callable<detail::unbound_callable<std::decay_t<F>>>(
                prepare_rebind(true), std::forward<F>(f));
        } else {
            using bound =
                detail::bound_callable<std::decay_t<F>, std::tuple<std::decay_t<Args>...>>;
            detail::emplace_callable<bound>(
                prepare_rebind(true), std::forward<F>(f),
                std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...));
        }
        return *this;
    }
    // Binds arguments for the bound function and inserts the tasklet in the run queue. The
    // arguments' decayed types must equal the function's parameter types (they are matched at
    // run time; std::invalid_argument otherwise). Raises tasklet_state_error if alive.
    template <class... Args>
    tasklet& setup(Args&&... args) {
        std::tuple<std::decay_t<Args>...> packed(std::forward<Args>(args)...);
        setup_erased(typeid(packed), &packed);
        return *this;
    }
    template <class... Args>
    tasklet& operator()(Args&&... args) {
        return setup(std::forward<Args>(args)...);
    }

    // Appends the tasklet to the end of the run queue (no-op if it is there already).
    tasklet& insert();
    // Takes the tasklet out of the run queue; it stays alive, paused.
    tasklet& remove();
    // Switches to this tasklet now; the current one stays in the run queue.
    void run();
    // Switches to this tasklet now; the current one is paused (removed from the queue).
    void switch_to();
    // Raises tasklet_exit in the tasklet and, unless `pending`, switches to it at once. Unblocks
    // it first if it is blocked on a channel. Does nothing if the tasklet has ended.
    void kill(bool pending = false);
    // Raises `e` in the tasklet, as kill() does with tasklet_exit.
    void throw_exception(std::exception_ptr e, bool pending = false);
    template <class E>
    void raise_exception(E e, bool pending = false) {
        throw_exception(std::make_exception_ptr(std::move(e)), pending);
    }

    // Several of the queries below in one call (for bindings that check a few at a time).
    struct status_flags {
        bool alive;
        bool scheduled;
        bool blocked;
        bool current;
        bool started;  // has a stack (ran at least once and has not ended)
    };
    status_flags status() const;
    // The same, read from any thread, for a binding whose threads take turns under a lock of its
    // own (the CPython binding: the GIL), so that the tasklet's thread changes nothing meanwhile.
    // Raises tasklet_state_error for an empty handle.
    status_flags status_from_any_thread() const;

    bool alive() const;
    bool blocked() const;
    bool scheduled() const;  // in the run queue, or blocked on a channel
    bool paused() const;     // alive, neither in the run queue nor blocked
    bool is_current() const;
    bool is_main() const;
    // The channel a blocked tasklet waits on, as the payload its binding gave the channel
    // (channel::set_payload), and the direction: -1 receiving, 1 sending; {nullptr, 0} if the
    // tasklet is not blocked on one channel (also in select(), which waits on several, and while
    // it waits for time or I/O).
    struct blocking {
        void* channel_payload;
        int direction;
    };
    blocking blocked_on() const;
    bool block_trap() const;
    void set_block_trap(bool trap);
    // Neighbours in the chain the tasklet is linked into (run queue or channel); empty if none.
    tasklet next() const;
    tasklet prev() const;
    // A number that identifies the thread the tasklet belongs to, unique in the process (not an
    // OS thread id; 0 once that thread has ended).
    std::uint64_t thread_id() const;

    // For a tasklet whose function resumes earlier work (the CPython binding's unpickled
    // tasklets): an exception thrown into it before it has started is left for its function to
    // take with take_pending_exception(), instead of ending it before the function runs. Set it
    // before the tasklet starts.
    void set_function_takes_pending(bool on);

    // Drops the stack of a started tasklet that is paused (neither current, scheduled nor
    // blocked, and not main) without unwinding it, and leaves it unbound: for a binding that has
    // ended by other means what ran on that stack (the CPython binding clears the Python frames
    // of a tasklet rebound without C state, as Stackless does). Nothing on the stack runs again,
    // so it must hold nothing that needs destroying. Raises tasklet_state_error otherwise, or if
    // the C++ runtime is handling an exception on that stack.
    void abandon();
    // Moves a tasklet that has not started and is neither scheduled nor blocked to the thread
    // that `other` belongs to, where it will run (Stackless's bind_thread, for a tasklet just
    // made or just unpickled). Neither thread may be using its scheduler meanwhile (the CPython
    // binding holds the GIL). Raises tasklet_state_error otherwise, wrong_thread_error if either
    // thread has ended.
    void move_to_thread_of(const tasklet& other);

    // Operations on a tasklet of another thread (Stackless's inter-thread scheduling), for a
    // binding whose threads take turns under a lock of its own (the CPython binding: the GIL),
    // so that the tasklet's thread is not using its scheduler meanwhile: it runs none of its
    // code, or sleeps in a wait for other threads. They change that thread's run queue, and wake
    // the thread if it waits; the tasklet runs there, at that thread's next scheduling point,
    // never on the calling thread. The checks are those of the same-thread operations;
    // wrong_thread_error if the tasklet's thread has ended.
    // Appends it to the end of its thread's run queue (no-op if it is there already).
    void insert_remote();
    // Takes it out of its thread's run queue (no-op if it is not there).
    void remove_remote();
    // Makes it run next in its thread: right after that thread's running tasklet (no-op if it is
    // scheduled already, as in Stackless).
    void run_remote();
    // Raises `e` in it when it runs next in its thread: unblocks it if it is blocked on a
    // channel and appends it to its thread's run queue (Stackless: a throw or kill across
    // threads never switches, pending or not). kill_remote does nothing if it has ended.
    void throw_remote(std::exception_ptr e);
    void kill_remote();
    // Neighbours in its chain, read from any thread under the binding's lock.
    tasklet next_from_any_thread() const;
    tasklet prev_from_any_thread() const;
    void* payload_from_any_thread() const noexcept;
    bool block_trap_from_any_thread() const;
    void set_block_trap_from_any_thread(bool trap);

    void set_hooks(const tasklet_hooks* hooks, void* payload);
    void* payload() const;
    // The running tasklet's payload on this thread (nullptr if none), without making a handle.
    static void* current_payload() noexcept;
    // Snapshot of the run queue length of the thread this tasklet belongs to, read from any
    // thread (-1 if that thread has ended). Only meaningful while that thread is not changing
    // its queue (the CPython binding reads it under the GIL).
    int owner_runcount() const noexcept;

    explicit operator bool() const noexcept { return state_ != nullptr; }
    friend bool operator==(const tasklet& a, const tasklet& b) noexcept {
        return a.state_ == b.state_;
    }
    detail::tasklet_state* state() const noexcept { return state_; }
    // A new handle to `s` (for the core and the bindings).
    static tasklet from_state(detail::tasklet_state* s) noexcept {
        tasklet t(adopt_tag{}, s);
        t.acquire();
        return t;
    }
    // Takes over a handle count that the caller already holds on `s`.
    static tasklet adopt(detail::tasklet_state* s) noexcept { return tasklet(adopt_tag{}, s); }

  private:
    struct adopt_tag {};
    tasklet(adopt_tag, detail::tasklet_state* s) noexcept : state_(s) {}
    void acquire() noexcept {
        if (state_ != nullptr)
            detail::header_of(state_)->handles.fetch_add(1, std::memory_order_relaxed);
    }
    detail::tasklet_state* checked() const;
    void bind_callable(std::unique_ptr<detail::callable> fn);
    // Checks that the tasklet may be rebound and drops its current function (`remote`: a tasklet
    // of another thread, see bind_remote).
    detail::tasklet_state* prepare_rebind(bool remote = false);
    void setup_erased(const std::type_info& type, void* args);

    detail::tasklet_state* state_;
};

// The exception thrown into the running tasklet before it started, if its function takes it
// (tasklet::set_function_takes_pending); empty otherwise. Clears it.
std::exception_ptr take_pending_exception() noexcept;

namespace detail {
void insert_new(tasklet_state* t);  // appends a tasklet this thread just created to the run queue
}

// Creates a tasklet running f(args...) and inserts it at the end of the run queue. Arguments are
// converted as by std::invoke (the idiomatic C++ one-step form of `stackless.tasklet(f)(args)`).
template <class F, class... Args>
tasklet spawn(F&& f, Args&&... args) {
    using bound = detail::bound_callable<std::decay_t<F>, std::tuple<std::decay_t<Args>...>>;
    tasklet t = tasklet::adopt(detail::new_tasklet_state_with<bound>(
        std::forward<F>(f), std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)));
    detail::insert_new(t.state());
    return t;
}

}  // namespace stackless

template <>
struct std::hash<stackless::tasklet> {
    std::size_t operator()(const stackless::tasklet& t) const noexcept {
        return std::hash<const void*>()(t.state());
    }
};
