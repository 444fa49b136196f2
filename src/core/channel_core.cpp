#include "stackless/detail/channel_core.hpp"

#include <stdexcept>

#include "channel_access.hpp"
#include "scheduler.hpp"
#include "stackless/errors.hpp"

namespace stackless::detail {

tempval& channel_core::first_value() {
    return scheduler::get().running()->value;
}

tasklet_state* channel_core::head() const noexcept {
    return state_of(head_);
}

void channel_core::set_preference(int preference) {
    if (preference < -1 || preference > 1)
        throw std::invalid_argument("channel preference must be -1, 0 or 1");
    preference_ = static_cast<std::int8_t>(preference);
}

void channel_core::release() noexcept {
    if (--refs_ == 0 && balance_ == 0) delete this;
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

}  // namespace

void channel_core::hand_over(int dir) {
    scheduler& s = *current_scheduler;  // partner() found a waiter of this thread
    tasklet_state* target = channel_access::pop_head(this);
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
    if (balance_ != 0 && waiters_of_ != &s)
        throw wrong_thread_error("channel: tasklets of another thread are waiting on it");
    if (balance_ != 0 && (balance_ > 0) != (dir > 0))
        throw error("channel: tasklets waiting in the other direction are queued on it");
    channel_access::append(this, t, dir, &s);
    if (t->hooks != nullptr) scheduler::notify_scheduled(t, true);
}

tempval& channel_core::wait(int dir) {
    scheduler& s = scheduler::get();
    tasklet_state* self = s.running();
    tempval& mine = self->value;
    if (balance_ != 0 && waiters_of_ != &s) {
        mine.reset();
        throw wrong_thread_error(
            "channel: tasklets of another thread are waiting on this channel; channels across "
            "threads are not supported yet");
    }
    if (self->block_trap) {
        mine.reset();
        throw error("channel: this tasklet does not like to be blocked (block_trap is set)");
    }
    if (closing_) {
        mine.reset();
        throw channel_closed_error("channel: send/receive operation on a closed channel");
    }
    s.ring_to_channel(self, this, dir);
    tasklet_state* next = s.head();
    if (next == nullptr) {
        next = s.wake_for_empty_ring(self);
        if (next == nullptr) {
            channel_access::unlink(self);
            s.ring_insert_end(self);
            mine.reset();
            throw deadlock_error("Deadlock: the last runnable tasklet cannot be blocked");
        }
    }
    try {
        s.switch_to(next);
    } catch (...) {
        mine.reset();
        throw;
    }
    return mine;
}

}  // namespace stackless::detail
