#include "stackless/detail/channel_core.hpp"

#include <cxxabi.h>
#include <sched.h>

#include <stdexcept>

#include "channel_access.hpp"
#include "scheduler.hpp"
#include "select_proxies.hpp"
#include "stackless/errors.hpp"

namespace stackless::detail {

const char channel_core::shared_marker_byte = 0;

channel_core::channel_core(sharing mode) noexcept : mode_(mode) {
    if (mode == sharing::shared) waiters_of_ = shared_marker();
}

tempval& channel_core::first_value() {
    return scheduler::get().running()->value;
}

tasklet_state* channel_core::head() const noexcept {
    return select_proxies::visible(state_of(head_));
}

tasklet_header* channel_core::next_entry(tasklet_header* entry) noexcept {
    return state_of(entry)->next;
}

tasklet_state* channel_core::waiter_of(tasklet_header* entry) noexcept {
    return select_proxies::visible(state_of(entry));
}

void channel_core::set_preference(int preference) {
    if (preference < -1 || preference > 1)
        throw std::invalid_argument("channel preference must be -1, 0 or 1");
    preference_ = static_cast<std::int8_t>(preference);
}

void channel_core::release() noexcept {
    // (A shared channel's waiters hold references: no references left means none waits.)
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1 && balance_ == 0) delete this;
}

void channel_core::share() noexcept {
    if (shared()) return;
    mode_ = sharing::shared;
    const int waiting = balance_ < 0 ? -balance_ : balance_;
    if (waiting != 0) {
        // Its waiters (all of one thread) now hold references and wait for other threads too.
        refs_.fetch_add(static_cast<std::uint32_t>(waiting), std::memory_order_relaxed);
        waiters_of_->note_shared_waiters(waiting);
    }
    waiters_of_ = shared_marker();
}

// Held around every operation on a shared channel. Only list and value updates happen under it
// (never a switch, a callback or another lock but a scheduler's inbox), so it is held briefly.
class shared_channel_lock {
  public:
    explicit shared_channel_lock(channel_core* ch) noexcept : ch_(ch) {
        for (int spins = 0; ch_->locked_.exchange(true, std::memory_order_acquire); ++spins) {
            if (spins < 64)
                __builtin_ia32_pause();
            else
                sched_yield();  // its holder was preempted
        }
    }
    ~shared_channel_lock() {
        if (held_) unlock();
    }
    shared_channel_lock(const shared_channel_lock&) = delete;
    shared_channel_lock& operator=(const shared_channel_lock&) = delete;
    void unlock() noexcept {
        held_ = false;
        ch_->locked_.store(false, std::memory_order_release);
    }

  private:
    channel_core* ch_;
    bool held_ = true;
};

void channel_access::append_shared(channel_core* ch, tasklet_state* t, int dir) noexcept {
    link_tail(ch, t, dir);
    ch->refs_.fetch_add(1, std::memory_order_relaxed);
    t->sched.load(std::memory_order_relaxed)->note_shared_waiters(1);
}

bool channel_access::unlink_shared(tasklet_state* t) noexcept {
    channel_core* ch = t->blocked_on;  // its waiter's reference keeps it
    {
        shared_channel_lock lock(ch);
        if (t->where != place::channel) return false;  // in transit: its thread inserts it
        unlink_from_list(ch, t);
    }
    t->blocked_on = nullptr;
    t->sched.load(std::memory_order_relaxed)->note_shared_waiters(-1);
    ch->release();
    tell_unscheduled(t);
    return true;
}

namespace {

// The partner runs first (or both go through the queue): a switch, kept out of hand_over so that
// its common path, where the caller runs on, saves no registers.
__attribute__((noinline)) void hand_over_switching(scheduler& s, tasklet_state* self,
                                                   tasklet_state* target, bool all) {
    if (all) {
        s.ring_insert_end(target);
        s.switch_to(self->next);
    } else {
        s.ring_insert_after(self, target);
        s.switch_to(target);
    }
}

// The waiter popped is a select's proxy: its selecting tasklet is the partner, scheduled by the
// same rules. (Out of line: plain waiters pay one test of a flag on a line the pop has read.)
__attribute__((noinline)) void hand_over_to_select(scheduler& s, const channel_core* ch,
                                                   tasklet_state* proxy, int dir) {
    // The rules are read first: completing the select takes its other proxies off their
    // channels, which frees a channel that only those proxies held.
    const bool all = ch->schedule_all();
    const bool partner_first = all || ch->preference() == -dir;
    tasklet_state* selecting = select_proxies::complete(proxy);
    if (partner_first)
        hand_over_switching(s, s.running(), selecting, all);
    else
        s.ring_insert_end(selecting);
}

}  // namespace

void channel_core::hand_over(int dir) {
    scheduler& s = *current_scheduler;  // partner() found a waiter of this thread
    tasklet_state* target = channel_access::pop_head(this);
    if (target->is_select_proxy) [[unlikely]] {
        hand_over_to_select(s, this, target, dir);
        return;
    }
    if (schedule_all_ || preference_ == -dir) {
        hand_over_switching(s, s.running(), target, schedule_all_);
        return;
    }
    s.ring_insert_end(target);
}

void channel_core::append_restored(tasklet_state* t, int dir) {
    scheduler& s = scheduler::get();
    if (dir != 1 && dir != -1)
        throw std::invalid_argument("channel: a waiting tasklet's direction is -1 or 1");
    if (t->sched.load(std::memory_order_acquire) != &s)
        throw wrong_thread_error("channel: the tasklet belongs to another thread");
    if (t->is_main || t->state != life::ready || t->where != place::none)
        throw tasklet_state_error(
            "channel: only a tasklet that is alive, has not started and is neither scheduled nor "
            "blocked can be restored as waiting on a channel");
    if (shared()) {
        shared_channel_lock lock(this);
        if (balance_ != 0 && (balance_ > 0) != (dir > 0))
            throw error("channel: tasklets waiting in the other direction are queued on it");
        channel_access::append_shared(this, t, dir);
    } else {
        if (balance_ != 0 && waiters_of_ != &s)
            throw wrong_thread_error("channel: tasklets of another thread are waiting on it");
        if (balance_ != 0 && (balance_ > 0) != (dir > 0))
            throw error("channel: tasklets waiting in the other direction are queued on it");
        channel_access::append(this, t, dir, &s);
    }
    if (t->hooks != nullptr) scheduler::notify_scheduled(t, true);
}

namespace {

// Why the current tasklet may not block, or nullptr.
const char* refusal(const tasklet_state* self, const channel_core* ch) noexcept {
    if (self->block_trap)
        return "channel: this tasklet does not like to be blocked (block_trap is set)";
    if (ch->closing()) return "channel: send/receive operation on a closed channel";
    return nullptr;
}

[[noreturn]] void refuse(const tasklet_state* self, const char* why) {
    if (self->block_trap) throw error(why);
    throw channel_closed_error(why);
}

}  // namespace

// Inlined into both callers: a call between the blocking operation and its switch costs every
// blocking send and receive (measured: ~8 instructions).
STACKLESS_ALWAYS_INLINE tempval& channel_core::sleep_on(scheduler& s, tasklet_state* self,
                                                        const char* deadlock) {
    tempval& mine = self->value;
    s.attend();
    tasklet_state* next = s.head();
    if (next == nullptr) {
        try {
            next = s.when_ring_empty(self);
        } catch (abi::__forced_unwind&) {
            // The thread is being ended (pthread_exit, pthread_cancel) in its wait: the tasklet
            // stays on the channel for the thread's teardown to take off, and its value stays
            // too (releasing it may need a lock the ending thread cannot take, a binding's GIL).
            throw;
        } catch (...) {
            if (s.take_off_channel(self)) s.ring_insert_end(self);
            mine.reset();
            throw;
        }
        if (next == nullptr) {
            if (s.take_off_channel(self)) {
                s.ring_insert_end(self);
                mine.reset();
                throw deadlock_error(deadlock);
            }
            next = s.head();  // another thread completed it meanwhile
        }
    }
    try {
        s.switch_to(next);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        mine.reset();
        throw;
    }
    return mine;
}

void channel_core::share_on_contact_or_refuse() {
    if (mode_ != sharing::share_on_contact) {
        current_value().reset();
        throw wrong_thread_error(
            "channel: tasklets of another thread are waiting on this channel; make it with "
            "stackless::across_threads to use it from several threads");
    }
    share();
}

tempval& channel_core::wait(int dir) {
    scheduler& s = scheduler::get();
    tasklet_state* self = s.running();
    tempval& mine = self->value;
    if (waiters_of_ != &s && waiters_of_ != nullptr) [[unlikely]] {
        // Shared, or another thread's tasklets wait on it.
        if (!shared()) share_on_contact_or_refuse();
        return *wait_shared(dir, true);
    }
    if (const char* why = refusal(self, this)) [[unlikely]] {
        mine.reset();
        refuse(self, why);
    }
    s.ring_to_channel(self, this, dir);
    return sleep_on(s, self, "Deadlock: the last runnable tasklet cannot be blocked");
}

tempval* channel_core::wait_until(int dir, std::int64_t deadline_ns) {
    scheduler& s = scheduler::get();
    tasklet_state* self = s.running();
    tempval& mine = self->value;
    if (deadline_ns <= reactor::now_ns()) {
        // Never blocks. (The typed layer found no partner of this thread waiting.)
        if (waiters_of_ == &s || waiters_of_ == nullptr) {
            if (closing_) {
                mine.reset();
                throw channel_closed_error("channel: send/receive operation on a closed channel");
            }
            mine.reset();
            return nullptr;
        }
        if (!shared()) share_on_contact_or_refuse();
        return wait_shared(dir, false);
    }
    reactor& loop = s.event_loop();
    try {
        loop.add_timer(self, deadline_ns);
    } catch (...) {
        mine.reset();
        throw;
    }
    self->woke = wait_result::pending;
    tempval* got;
    try {
        got = &wait(dir);
    } catch (...) {
        loop.cancel_timer(self);
        throw;
    }
    if (self->woke == wait_result::timeout) {  // (the timer is gone: it fired)
        got->reset();
        return nullptr;
    }
    loop.cancel_timer(self);
    return got;
}

tempval* channel_core::wait_shared(int dir, bool may_block) {
    scheduler& s = scheduler::get();
    tasklet_state* self = s.running();
    tempval& mine = self->value;
    shared_channel_lock lock(this);
    if (dir > 0 ? balance_ < 0 : balance_ > 0) {
        tasklet_state* partner = channel_access::pop_head_shared(this);
        if (dir > 0)
            partner->value.take_from(mine);
        else
            mine.take_from(partner->value);
        scheduler* owner = partner->sched.load(std::memory_order_acquire);
        if (owner != &s) {
            owner->push_remote(partner);  // (under the lock: its thread cannot end meanwhile)
            return &mine;
        }
        lock.unlock();
        s.take_from_transit(partner);
        if (schedule_all_ || preference_ == -dir) {
            hand_over_switching(s, self, partner, schedule_all_);
            return &mine;
        }
        s.ring_insert_end(partner);
        return &mine;
    }
    if (!may_block) {
        const bool closed = closing_;
        lock.unlock();
        mine.reset();
        if (closed)
            throw channel_closed_error("channel: send/receive operation on a closed channel");
        return nullptr;
    }
    if (const char* why = refusal(self, this)) {
        lock.unlock();
        mine.reset();
        refuse(self, why);
    }
    s.leave_ring(self);
    channel_access::append_shared(this, self, dir);
    lock.unlock();
    return &sleep_on(s, self,
                     "Deadlock: the last runnable tasklet cannot be blocked, and no other thread "
                     "can wake it");
}

}  // namespace stackless::detail
