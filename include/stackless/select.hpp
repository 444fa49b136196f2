// stackless::select: wait on several channel operations at once; exactly one completes (Go's
// select, with Stackless's channel rules). docs/select.md.
//
//   switch (stackless::select(stackless::on_receive(results, [&](int v) { total += v; }),
//                             stackless::on_send(jobs, next_job))) { ... }
//
// - select(cases...) blocks until one case completes and returns its index (0-based, in the
//   order written). A case is ready when a partner waits on its channel now; if several are,
//   one is chosen uniformly at random (seed_select makes that reproducible) and completed as
//   the plain send() or receive() would be: the same values, exceptions (a value sent with
//   send_exception is raised from select, before any handler), channel preference and
//   schedule_all. The other cases are left untouched.
// - If none is ready, the tasklet waits on every case's channel at once (each channel's
//   balance counts it) until a partner completes one case; it is then taken off the others.
//   Two tasklets in select can complete each other.
// - select_until(deadline, cases...) gives up at the deadline (a time point, or a duration from
//   now) and returns no_case_ready; try_select(cases...) never blocks: no_case_ready if no case
//   is ready now (Go's default).
// - The case's handler runs once the operation has completed (for a receive, with the value;
//   it may also take no argument). Its exceptions propagate from select.
// - A case on a closing channel, in a select that finds no case ready, raises
//   channel_closed_error, as a plain operation that would block does (also with a deadline or
//   from try_select). A tasklet with block_trap set raises stackless::error where it would
//   block.
// - Only channels private to a thread can be selected on: a channel made with across_threads
//   (or shared by a binding) raises stackless::error; a channel other threads' tasklets wait
//   on raises wrong_thread_error. A send case and a receive case on one channel in the same
//   select raise stackless::error.
// - A send case holds its value (moved from an rvalue, copied from an lvalue); if the case
//   does not complete, the value is dropped. A case object passed as an lvalue is copied from
//   at each use, so it may be used again.
// - While blocked, the tasklet is blocked() and scheduled(); blocked_on() reports no channel
//   (it waits on several); channel::waiting() and queue() list it where its case waits. Killing
//   it or throwing into it takes it off every channel.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

#include "stackless/channel.hpp"
#include "stackless/detail/channel_core.hpp"
#include "stackless/time.hpp"

namespace stackless {

// What select_until and try_select return when no case completed.
inline constexpr int no_case_ready = -1;

// Reseeds this thread's generator that picks among ready cases, making the choices of the
// selects that follow on this thread reproducible (tests). Each thread's generator is seeded at
// random when first used.
void seed_select(std::uint64_t seed) noexcept;

namespace detail {

struct channel_handle_access {
    template <class T>
    static channel_core* core_of(const channel<T>& ch) noexcept {
        return ch.core_;
    }
};

// A case as the untyped core sees it. It lives on the selecting tasklet's stack and is only
// read by that tasklet.
struct select_case_view {
    channel_core* core;
    int dir;  // +1 send, -1 receive
    // Send cases: puts the value to send in `into` (the tempval a partner takes it from).
    void (*offer)(void* a_case, tempval& into);
    void* a_case;
};

// The first step of every select: checks the cases and picks a ready one uniformly at random.
// ready: its index, or -1 if none; must_wait: none is ready and the deadline lies ahead.
// Raises the errors listed at the top of this file.
struct select_choice {
    int ready;
    bool must_wait;
};
select_choice select_choose(const select_case_view* cases, int count, std::int64_t deadline_ns);

// The blocking step. Owns the proxies that wait in the tasklet's place (src/core/
// select_proxies.hpp) and frees them.
class select_wait {
  public:
    select_wait() noexcept = default;
    select_wait(const select_wait&) = delete;
    select_wait& operator=(const select_wait&) = delete;
    ~select_wait() { release(); }

    // Waits on every case's channel until a partner completes one (its index is returned) or
    // the deadline passes (-1). Raises what is thrown into the tasklet meanwhile (a kill), or
    // deadlock_error if nothing could ever complete it.
    int wait(const select_case_view* cases, int count, std::int64_t deadline_ns);
    // The value (or exception) the partner of the completed receive case sent.
    tempval& received() noexcept { return *received_; }
    // Frees the proxies (dropping the values of the send cases that did not complete).
    void release() noexcept;

  private:
    tasklet_state* owner_ = nullptr;
    tempval* received_ = nullptr;
};

struct no_handler {
    template <class... Args>
    void operator()(Args&&...) const noexcept {}
};

template <class T>
struct is_select_case : std::false_type {};

}  // namespace detail

template <class T, class Handler>
class receive_case {
  public:
    receive_case(channel<T>& ch, Handler handler)
        : core_(detail::channel_handle_access::core_of(ch)), handler_(std::move(handler)) {}

    // (The interface that select uses.)
    template <bool from_lvalue>
    detail::select_case_view view() noexcept {
        return {core_, -1, nullptr, this};
    }
    // A sender waits now: receive from it as receive() does.
    template <bool from_lvalue>
    void complete_now() {
        detail::tempval& offered = core_->partner(-1)->value;
        if (offered.holds_exception()) {
            std::exception_ptr e = offered.take_exception();
            core_->hand_over(-1);
            std::rethrow_exception(e);
        }
        T value = offered.template take<T>();
        core_->hand_over(-1);
        run(std::move(value));
    }
    // A sender completed this case while select waited.
    void complete_waited(detail::select_wait& w) {
        detail::tempval& got = w.received();
        if (got.holds_exception()) {
            std::exception_ptr e = got.take_exception();
            w.release();
            std::rethrow_exception(e);
        }
        T value = got.template take<T>();
        w.release();
        run(std::move(value));
    }

  private:
    void run(T&& value) {
        if constexpr (std::is_invocable_v<Handler&, T&&>)
            std::invoke(handler_, std::move(value));
        else
            std::invoke(handler_);
    }
    detail::channel_core* core_;
    Handler handler_;
};

template <class T, class Handler>
class send_case {
  public:
    template <class U>
    send_case(channel<T>& ch, U&& value, Handler handler)
        : core_(detail::channel_handle_access::core_of(ch)),
          value_(std::forward<U>(value)),
          handler_(std::move(handler)) {}

    template <bool from_lvalue>
    detail::select_case_view view() noexcept {
        return {core_, +1, &offer<from_lvalue>, this};
    }
    // A receiver waits now: send to it as send() does.
    template <bool from_lvalue>
    void complete_now() {
        offer<from_lvalue>(this, core_->partner(+1)->value);
        core_->hand_over(+1);
        std::invoke(handler_);
    }
    // A receiver took the value while select waited.
    void complete_waited(detail::select_wait& w) {
        w.release();
        std::invoke(handler_);
    }

  private:
    template <bool from_lvalue>
    static void offer(void* a_case, detail::tempval& into) {
        auto* self = static_cast<send_case*>(a_case);
        if constexpr (from_lvalue)
            into.template emplace<T>(self->value_);
        else
            into.template emplace<T>(std::move(self->value_));
    }
    detail::channel_core* core_;
    T value_;
    Handler handler_;
};

namespace detail {
template <class T, class H>
struct is_select_case<receive_case<T, H>> : std::true_type {};
template <class T, class H>
struct is_select_case<send_case<T, H>> : std::true_type {};
}  // namespace detail

template <class C>
concept select_case = detail::is_select_case<std::remove_cvref_t<C>>::value;

// A receive case; the handler takes the value (or nothing).
template <class T>
receive_case<T, detail::no_handler> on_receive(channel<T>& ch) {
    return {ch, {}};
}
template <class T, class F>
receive_case<T, std::decay_t<F>> on_receive(channel<T>& ch, F&& handler) {
    static_assert(
        std::is_invocable_v<std::decay_t<F>&, T&&> || std::is_invocable_v<std::decay_t<F>&>,
        "on_receive: the handler must take the value received, or nothing");
    return {ch, std::forward<F>(handler)};
}
// A send case of `value` (converted to T now); the handler takes nothing.
template <class T, class U>
send_case<T, detail::no_handler> on_send(channel<T>& ch, U&& value) {
    return {ch, std::forward<U>(value), {}};
}
template <class T, class U, class F>
send_case<T, std::decay_t<F>> on_send(channel<T>& ch, U&& value, F&& handler) {
    static_assert(std::is_invocable_v<std::decay_t<F>&>,
                  "on_send: the handler must take no argument");
    return {ch, std::forward<U>(value), std::forward<F>(handler)};
}

namespace detail {

template <class Case>
void complete_now(std::remove_reference_t<Case>& c) {
    c.template complete_now<std::is_lvalue_reference_v<Case>>();
}

template <class... Cases>
int run_select(std::int64_t deadline_ns, Cases&&... cases) {
    constexpr int count = sizeof...(Cases);
    static_assert(count <= 32767, "select: at most 32,767 cases");
    const select_case_view views[count] = {
        cases.template view<std::is_lvalue_reference_v<Cases>>()...};
    const select_choice choice = select_choose(views, count, deadline_ns);
    if (choice.ready >= 0) {
        int i = 0;
        ((i++ == choice.ready ? complete_now<Cases>(cases) : void()), ...);
        return choice.ready;
    }
    if (!choice.must_wait) return no_case_ready;
    select_wait w;
    const int done = w.wait(views, count, deadline_ns);
    if (done >= 0) {
        int i = 0;
        ((i++ == done ? cases.complete_waited(w) : void()), ...);
    }
    return done;
}

}  // namespace detail

// Blocks until one case completes; returns its index.
template <select_case... Cases>
requires(sizeof...(Cases) > 0) int select(Cases&&... cases) {
    return detail::run_select(deadline::never().ns(), std::forward<Cases>(cases)...);
}
// select() that gives up at `until`: the index, or no_case_ready. A deadline that has passed
// never blocks (try_select).
template <select_case... Cases>
requires(sizeof...(Cases) > 0) int select_until(deadline until, Cases&&... cases) {
    return detail::run_select(until.ns(), std::forward<Cases>(cases)...);
}
// Completes a ready case (its index) or returns no_case_ready at once.
template <select_case... Cases>
requires(sizeof...(Cases) > 0) int try_select(Cases&&... cases) {
    return detail::run_select(deadline::passed().ns(), std::forward<Cases>(cases)...);
}

}  // namespace stackless
