// The waiting list of a channel, for the scheduler (which unblocks tasklets to raise exceptions in
// them) and the channel operations.
#pragma once

#include "stackless/detail/channel_core.hpp"
#include "tasklet_state.hpp"

namespace stackless::detail {

struct channel_access {
    // Appends the current tasklet `t`, which has left the run queue, to the waiting list.
    static void append(channel_core* ch, tasklet_state* t, int dir, scheduler* s) noexcept {
        if (ch->balance_ == 0) ch->waiters_of_ = s;
        link_tail(ch, t, dir);
    }

    // Takes the first waiter off the list, for a partner that has exchanged the value with it.
    // The partner holds a handle, so the channel stays.
    static tasklet_state* pop_head(channel_core* ch) noexcept {
        tasklet_state* t = unlink_head(ch);
        if (ch->balance_ == 0) ch->waiters_of_ = nullptr;
        t->blocked_on = nullptr;
        return t;
    }

    // Shared channels, under the channel's lock. A waiter holds a reference to the channel until
    // its own thread takes it off (it may be completed by another thread, which must not free
    // the channel under it) and counts as waiting for other threads in its scheduler.
    static void append_shared(channel_core* ch, tasklet_state* t, int dir) noexcept;
    // Takes the first waiter off for a partner that completes it; it is in transit to its run
    // queue until its own thread inserts it (scheduler::take_from_transit).
    static tasklet_state* pop_head_shared(channel_core* ch) noexcept {
        tasklet_state* t = unlink_head(ch);
        t->next = t->prev = nullptr;
        t->where = place::transit;
        return t;
    }
    // Takes a waiter `t` of the calling thread off the shared channel's list; false if another
    // thread completed it first (it is in transit then).
    static bool unlink_shared(tasklet_state* t) noexcept;

    // Takes `t` off its private channel's waiting list. Frees the channel if that was all that
    // held it.
    static void unlink_private(tasklet_state* t) noexcept {
        channel_core* ch = t->blocked_on;
        unlink_from_list(ch, t);
        t->blocked_on = nullptr;
        if (ch->balance_ == 0) {
            ch->waiters_of_ = nullptr;
            if (ch->refs_.load(std::memory_order_acquire) == 0) delete ch;
        }
        tell_unscheduled(t);
    }

    // Whether select() may queue proxies on the channel: waiters of another thread are never
    // completed by select's rules, so only a channel private to a thread qualifies, and the
    // calling thread's `s` must be the one whose tasklets wait on it (if any do).
    static bool private_to_a_thread(const channel_core* ch) noexcept {
        return ch->mode_ == channel_core::sharing::private_to_a_thread;
    }
    static bool others_wait_on(const channel_core* ch, const scheduler* s) noexcept {
        return ch->waiters_of_ != nullptr && ch->waiters_of_ != s;
    }

    // Whether another thread may still complete a waiter of this channel: a shared channel, or
    // one that becomes shared when another thread meets its waiters (a binding's).
    static bool other_threads_may_complete(const channel_core* ch) noexcept {
        return ch->shared() || ch->mode_ == channel_core::sharing::share_on_contact;
    }

  private:
    // The waiting list itself, shared by the private and the shared forms above.
    static void link_tail(channel_core* ch, tasklet_state* t, int dir) noexcept {
        t->next = nullptr;
        t->prev = state_of(ch->tail_);
        if (ch->tail_ != nullptr)
            state_of(ch->tail_)->next = t;
        else
            ch->head_ = t;
        ch->tail_ = t;
        ch->balance_ += dir;
        t->where = place::channel;
        t->blocked_on = ch;
        t->block_dir = static_cast<std::int8_t>(dir);
    }
    // Takes the head off (its own links are left to the caller).
    static tasklet_state* unlink_head(channel_core* ch) noexcept {
        tasklet_state* t = state_of(ch->head_);
        tasklet_state* after = t->next;
        ch->head_ = after;
        if (after != nullptr)
            after->prev = nullptr;
        else
            ch->tail_ = nullptr;
        ch->balance_ -= t->block_dir;
        return t;
    }
    // Takes `t` off wherever it is in the list; it is floating then.
    static void unlink_from_list(channel_core* ch, tasklet_state* t) noexcept {
        if (t->prev != nullptr)
            t->prev->next = t->next;
        else
            ch->head_ = t->next;
        if (t->next != nullptr)
            t->next->prev = t->prev;
        else
            ch->tail_ = t->prev;
        ch->balance_ -= t->block_dir;
        t->next = t->prev = nullptr;
        t->where = place::none;
    }
    static void tell_unscheduled(tasklet_state* t) noexcept {
        if (t->hooks != nullptr && t->hooks->scheduled_changed != nullptr) [[unlikely]]
            t->hooks->scheduled_changed(t->payload, false);
    }
};

}  // namespace stackless::detail
