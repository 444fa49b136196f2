// The scheduler's side of time and I/O: parking a tasklet on the reactor, waking it, sleeping in
// the reactor when nothing is runnable, and the public calls of stackless/time.hpp and
// stackless/io.hpp.
#include <cxxabi.h>
#include <unistd.h>

#include "remote_wait.hpp"
#include "scheduler.hpp"
#include "select_proxies.hpp"
#include "stackless/errors.hpp"
#include "stackless/io.hpp"
#include "stackless/time.hpp"

namespace stackless::detail {

wait_result scheduler::park_in_reactor() {
    leave_ring_to_wait(running_);
    return switch_away_waiting();
}

void scheduler::leave_ring_to_wait(tasklet_state* self) noexcept {
    self->woke = wait_result::pending;
    leave_ring(self);
    self->next = self->prev = nullptr;
    self->where = place::waiting;
}

wait_result scheduler::switch_away_waiting() {
    tasklet_state* self = running_;
    // A scheduling point, once the tasklet waits: what the reactor finds may be this tasklet's
    // own fd or timer (an fd registered by this very wait reports that it is ready already, as a
    // connect that completed at once does), and a wake of a tasklet still in the ring would be
    // lost. Woken here, it is back in the ring, and switch_to(self) returns at once.
    attend();
    tasklet_state* next = head_;
    if (next == nullptr) {
        try {
            next = when_ring_empty(self);  // (the reactor has a waiter: self)
        } catch (abi::__forced_unwind&) {
            throw;
        } catch (...) {
            if (unblock(self)) ring_insert_end(self);
            throw;
        }
    }
    switch_to(next);  // (raises what was thrown into it; unblock() cancelled its waits then)
    return self->woke;
}

bool scheduler::wake_from_reactor(tasklet_state* t, wait_result why) noexcept {
    switch (t->where) {
        case place::waiting:
            t->woke = why;
            insert_woken(t);  // (it counted as scheduled all along: no hook call)
            return true;
        case place::channel:
        case place::transit:                         // a channel wait with a deadline
            if (!take_off_channel(t)) return false;  // another thread completed it first
            t->woke = why;
            insert_woken(t);
            return true;
        case place::selecting:  // a select with a deadline
            select_proxies::withdraw(t);
            t->woke = why;
            insert_woken(t);
            return true;
        default:  // a partner completed it and it has not run yet: its wait is over
            return false;
    }
}

bool scheduler::unblock(tasklet_state* t) noexcept {
    if (reactor_ != nullptr) {
        reactor_->cancel_timer(t);
        reactor_->cancel_fd_wait(t);
    }
    if (t->where == place::waiting) {
        if (reactor_ != nullptr && reactor_->remote_of(t) != nullptr && !cancel_remote_wait(t))
            return false;
        t->where = place::none;
        if (t->hooks != nullptr) [[unlikely]]
            notify_scheduled(t, false);
        return true;
    }
    if (t->where == place::selecting) {
        select_proxies::withdraw(t);
        return true;
    }
    return take_off_channel(t);
}

tasklet_state* scheduler::wait_for_world(tasklet_state* leaving) {
    for (;;) {
        reactor_->poll(-1, true);
        drain_remote_if_any();
        if (head_ != nullptr) return head_;
        if (reactor_->waiters() == 0) return when_ring_empty(leaving);
    }
}

void scheduler::create_event_loop() {
    reactor_ = std::make_unique<reactor>(*this);
    attention_.fetch_or(reactor_bit, std::memory_order_relaxed);
}

void scheduler::attend_slow() {
    drain_remote_if_any();
    if (reactor_ != nullptr && reactor_->waiters() != 0 && reactor_->tick())
        reactor_->poll_while_busy();
}

void scheduler::insert_woken(tasklet_state* t) noexcept {
    // What the reactor wakes runs before the rest of the run queue (as Go readies a goroutine
    // into runnext), so that a timer's lateness does not grow with the number of runnable
    // tasklets, and after what it woke earlier and has not run yet, so that deadlines keep
    // their order.
    tasklet_state* after = last_woken_;
    if (after == nullptr || after->where != place::ring)
        after = running_->where == place::ring ? running_ : nullptr;
    if (after != nullptr)
        ring_insert_after(after, t);
    else
        ring_insert_front(t);  // (the running tasklet has just left the ring)
    last_woken_ = t;
}

// ---------------------------------------------------------------------------------------------
// Waits that other threads complete

void scheduler::arm_remote_wait(remote_wait& w) noexcept {
    w.owner = this;
    w.waiter = running_;
}

wait_result scheduler::wait_remote(remote_wait& w) {
    tasklet_state* self = running_;
    {
        std::lock_guard lock(w.mutex);
        if (w.state == remote_wait::phase::completed) return wait_result::ready;
        if (w.state == remote_wait::phase::cancelled || w.waiter != self)
            throw error("remote_wait: not armed for this tasklet");
        event_loop().add_remote(self, &w);  // (first: it may fail)
        // Out of the ring before complete() can see `waiting`: it links the tasklet into this
        // thread's inbox through the same fields.
        leave_ring_to_wait(self);
        w.waiting = true;
    }
    return switch_away_waiting();
}

bool scheduler::cancel_remote_wait(tasklet_state* t) noexcept {
    remote_wait& w = *reactor_->remote_of(t);
    {
        std::lock_guard lock(w.mutex);
        if (w.state == remote_wait::phase::armed) {
            w.state = remote_wait::phase::cancelled;
            w.waiting = false;
            reactor_->erase_remote(t);
            return true;
        }
    }
    drain_remote();  // completed: it is in the inbox
    return false;
}

void remote_wait::complete() noexcept {
    std::lock_guard lock(mutex);
    if (state != phase::armed) return;
    state = phase::completed;
    if (waiting) owner->push_remote(waiter);  // (cancelled before its thread could end)
}

}  // namespace stackless::detail

namespace stackless {

using detail::reactor;
using detail::scheduler;
using detail::tasklet_state;
using detail::wait_result;

void sleep_until(deadline until) {
    scheduler& s = scheduler::get();
    if (until.ns() <= reactor::now_ns()) {
        s.schedule();
        return;
    }
    tasklet_state* self = s.running();
    s.event_loop().add_timer(self, until.ns());
    s.park_in_reactor();
}

namespace {

bool wait_fd(int fd, deadline until, bool write) {
    scheduler& s = scheduler::get();
    reactor& r = s.event_loop();
    if (r.take_readiness(fd, write)) return true;
    if (until.has_passed()) return false;
    tasklet_state* self = s.running();
    r.add_fd_wait(self, fd, write);
    if (!until.is_never()) {
        try {
            r.add_timer(self, until.ns());
        } catch (...) {
            r.cancel_fd_wait(self);
            throw;
        }
    }
    switch (s.park_in_reactor()) {
        case wait_result::ready:
            return true;
        case wait_result::timeout:
            return false;
        case wait_result::closed:
            throw io_error(EBADF, write ? "wait_writable" : "wait_readable",
                           "the file descriptor was closed while the tasklet waited on it");
        default:
            return true;  // (woken by other means: let the caller try its operation again)
    }
}

}  // namespace

bool wait_readable(int fd, deadline until) {
    return wait_fd(fd, until, false);
}

bool wait_writable(int fd, deadline until) {
    return wait_fd(fd, until, true);
}

void forget_fd(int fd) {
    if (scheduler* s = scheduler::get_if_exists())
        if (reactor* r = s->event_loop_if_any()) r->forget(fd);
}

void close_fd(int fd) {
    forget_fd(fd);
    if (::close(fd) < 0 && errno != EINTR) throw io_error(errno, "close");
}

}  // namespace stackless
