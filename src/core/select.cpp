// select(): the choice among ready cases, the wait on several channels through proxies, and what
// ends that wait (select_proxies.hpp has the design; docs/select.md the semantics).
#include "stackless/select.hpp"

#include <cxxabi.h>

#include <random>

#include "channel_access.hpp"
#include "scheduler.hpp"
#include "select_proxies.hpp"
#include "stackless/errors.hpp"

namespace stackless::detail {

namespace {

// The generator that picks among ready cases: splitmix64, one per thread (no locking, and a
// thread's choices do not depend on other threads).
struct select_random {
    std::uint64_t state = 0;
    bool seeded = false;

    std::uint64_t next() noexcept {
        if (!seeded) [[unlikely]]
            seed(std::random_device{}() * 0x9E3779B97F4A7C15ull ^ std::random_device{}());
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, n): the high 32 bits scaled (the bias, n / 2^32, is far below what any
    // select could show).
    int below(int n) noexcept {
        return static_cast<int>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
    }
    void seed(std::uint64_t s) noexcept {
        state = s;
        seeded = true;
    }
};

thread_local select_random random_choice;

// Raises if the case cannot take part in a select of this thread's tasklets.
void check_case(const select_case_view* cases, int i, const scheduler& s) {
    const channel_core* ch = cases[i].core;
    if (!channel_access::private_to_a_thread(ch))
        throw error(
            "select: the channel is shared across threads (made with stackless::across_threads, "
            "or by a binding); select supports channels private to a thread");
    if (channel_access::others_wait_on(ch, &s))
        throw wrong_thread_error(
            "select: tasklets of another thread are waiting on the channel; select supports "
            "channels private to a thread");
    // One waiting list cannot hold waiters of both directions: the select's own send and
    // receive proxies would be each other's partners.
    for (int j = 0; j < i; ++j)
        if (cases[j].core == ch && cases[j].dir != cases[i].dir)
            throw error("select: a send case and a receive case on the same channel");
}

}  // namespace

select_choice select_choose(const select_case_view* cases, int count, std::int64_t deadline_ns) {
    scheduler& s = scheduler::get();
    int ready = 0;
    bool closing = false;
    for (int i = 0; i < count; ++i) {
        check_case(cases, i, s);
        ready += cases[i].core->partner(cases[i].dir) != nullptr;
        closing |= cases[i].core->closing();
    }
    if (ready > 0) {
        int pick = ready == 1 ? 0 : random_choice.below(ready);
        for (int i = 0;; ++i)
            if (cases[i].core->partner(cases[i].dir) != nullptr && pick-- == 0) return {i, false};
    }
    // None is ready: every case would block, and on a closing channel that raises.
    if (closing)
        throw channel_closed_error(
            "select: send/receive operation on a closed channel (no case was ready)");
    // (try_select's deadline::passed() needs no look at the clock.)
    if (deadline_ns <= deadline::passed().ns() ||
        (deadline_ns != deadline::never().ns() && deadline_ns <= reactor::now_ns()))
        return {-1, false};
    if (s.running()->block_trap)
        throw error("select: this tasklet does not like to be blocked (block_trap is set)");
    return {-1, true};
}

int select_wait::wait(const select_case_view* cases, int count, std::int64_t deadline_ns) {
    scheduler& s = scheduler::get();
    tasklet_state* self = s.running();
    owner_ = self;
    self->select_case = -1;
    // Everything that may fail (allocations, the copy of a value to send, the timer) comes
    // before the first proxy is linked: release() frees what was made.
    tasklet_state** link = &self->select_next;
    for (int i = 0; i < count; ++i) {
        auto* proxy = new tasklet_state;  // (from the state pool; never adopted by a scheduler)
        *link = proxy;
        link = &proxy->select_next;
        proxy->is_select_proxy = true;
        proxy->select_owner = self;
        proxy->select_case = static_cast<std::int16_t>(i);
        proxy->sched.store(&s, std::memory_order_relaxed);
        if (cases[i].dir > 0) cases[i].offer(cases[i].a_case, proxy->value);
    }
    reactor* loop = nullptr;
    if (deadline_ns != deadline::never().ns()) {
        loop = &s.event_loop();
        loop->add_timer(self, deadline_ns);
    }
    self->woke = wait_result::pending;
    int i = 0;
    for (tasklet_state* p = self->select_next; p != nullptr; p = p->select_next, ++i)
        channel_access::append(cases[i].core, p, cases[i].dir, &s);
    s.leave_ring(self);
    self->next = self->prev = nullptr;
    self->where = place::selecting;

    // As a blocking channel operation does (channel_core::sleep_on).
    s.attend();
    tasklet_state* next = s.head();
    if (next == nullptr) {
        try {
            next = s.when_ring_empty(self);
        } catch (abi::__forced_unwind&) {
            throw;  // (release(), unwound, takes the proxies off their channels)
        } catch (...) {
            if (s.unblock(self)) s.ring_insert_end(self);
            throw;
        }
        if (next == nullptr) {
            s.unblock(self);
            s.ring_insert_end(self);
            throw deadlock_error("Deadlock: the last runnable tasklet cannot be blocked (select)");
        }
    }
    s.switch_to(next);  // (raises what was thrown into it: unblock() took the proxies off then)

    const int done = self->select_case;
    if (done < 0) return -1;  // its deadline passed (the timer is gone: it fired)
    if (loop != nullptr) loop->cancel_timer(self);
    tasklet_state* p = self->select_next;
    for (int k = 0; k < done; ++k) p = p->select_next;
    received_ = &p->value;
    return done;
}

void select_wait::release() noexcept {
    tasklet_state* self = owner_;
    if (self == nullptr) return;
    owner_ = nullptr;
    received_ = nullptr;
    scheduler& s = *current_scheduler;
    if (self->where == place::selecting) {
        // A forced unwind (pthread_exit) left the wait: the proxies must leave their channels
        // before they are freed. The tasklet stays out of the run queue, as one left blocked on
        // a channel does, for the thread's teardown.
        s.unblock(self);
    } else if (reactor* loop = s.event_loop_if_any()) {
        loop->cancel_timer(self);  // (set if the wait failed before it blocked)
    }
    select_proxies::free_all(self);
}

// ---------------------------------------------------------------------------------------------
// What ends the wait

tasklet_state* select_proxies::complete(tasklet_state* proxy) noexcept {
    tasklet_state* owner = proxy->select_owner;
    proxy->where = place::none;  // (popped: its links are stale)
    proxy->next = proxy->prev = nullptr;
    owner->select_case = proxy->select_case;
    for (tasklet_state* p = owner->select_next; p != nullptr; p = p->select_next)
        if (p->where == place::channel) channel_access::unlink_private(p);
    return owner;
}

void select_proxies::withdraw(tasklet_state* owner) noexcept {
    for (tasklet_state* p = owner->select_next; p != nullptr; p = p->select_next)
        if (p->where == place::channel) channel_access::unlink_private(p);
    owner->where = place::none;
    if (owner->hooks != nullptr) [[unlikely]]
        scheduler::notify_scheduled(owner, false);
}

void select_proxies::free_all(tasklet_state* owner) noexcept {
    tasklet_state* p = owner->select_next;
    owner->select_next = nullptr;
    while (p != nullptr) {
        tasklet_state* after = p->select_next;
        delete p;
        p = after;
    }
}

}  // namespace stackless::detail

void stackless::seed_select(std::uint64_t seed) noexcept {
    detail::random_choice.seed(seed);
}
