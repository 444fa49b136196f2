// The untyped part of a channel: the queue of blocked tasklets and the scheduling rules. The
// typed layer (channel<T>) only moves values between tempvals around these calls.
#pragma once

#include <atomic>
#include <cstdint>

#include "stackless/detail/tasklet_header.hpp"

namespace stackless::detail {

class scheduler;
// This thread's scheduler (nullptr before its first use). constinit: read without a TLS wrapper.
__attribute__((
    tls_model("initial-exec"))) extern constinit thread_local scheduler* current_scheduler;
// The running tasklet's tempval (nullptr before the scheduler's first use), kept by every switch
// so that a blocking send reaches it without a call.
__attribute__((tls_model("initial-exec"))) extern constinit thread_local tempval* current_tempval;

// A channel is private to one thread at a time (its waiters' thread) unless it is shared: then
// every operation takes its lock, and a partner of another thread is woken in its own thread
// (docs/threads.md). Private channels pay nothing for threads: partner() fails for a shared
// channel (waiters_of_ is then a marker no scheduler equals) and wait() takes the shared path.
class channel_core {
  public:
    enum class sharing : std::uint8_t {
        private_to_a_thread,  // another thread meeting waiters raises wrong_thread_error
        share_on_contact,     // becomes shared then; the caller serialises operations (a GIL)
        shared,               // made for several threads
    };
    explicit channel_core(sharing mode = sharing::private_to_a_thread) noexcept;
    channel_core(const channel_core&) = delete;
    channel_core& operator=(const channel_core&) = delete;

    // The blocked partner a send (dir > 0) or receive (dir < 0) would complete with, if any,
    // for the fast path (nullptr for a shared channel: wait() completes or blocks then).
    tasklet_header* partner(int dir) const noexcept {
        bool present = dir > 0 ? balance_ < 0 : balance_ > 0;
        return present && waiters_of_ == current_scheduler ? head_ : nullptr;
    }
    static bool has_partner_here(const channel_core* ch, int dir) noexcept {
        return ch->partner(dir) != nullptr;
    }
    // Completes the operation with partner(dir), which the caller has already exchanged the value
    // with, and schedules both tasklets as the channel's preference says. May switch.
    void hand_over(int dir);
    // Blocks the current tasklet until a partner arrives (on a shared channel: completes with a
    // partner if one waits, else blocks). Its tempval holds the value to send (dir > 0) or
    // receives the value (dir < 0); it is returned. On failure it is cleared.
    tempval& wait(int dir);
    // wait() with a deadline (steady-clock nanoseconds): nullptr if it passed first (the
    // tempval is cleared then). A deadline that has passed already never blocks: the operation
    // completes only with a partner that waits now.
    tempval* wait_until(int dir, std::int64_t deadline_ns);
    // Unpickling: appends `t` (alive, not started, floating, of this thread) to the waiting list
    // as if it had blocked in direction `dir`. Raises if that cannot be.
    void append_restored(tasklet_state* t, int dir);
    // The current tasklet's tempval.
    static tempval& current_value() {
        tempval* v = current_tempval;
        if (v == nullptr) [[unlikely]]
            v = &first_value();
        return *v;
    }
    static tempval& first_value();  // creates this thread's scheduler

    int balance() const noexcept { return balance_; }
    int preference() const noexcept { return preference_; }
    void set_preference(int preference);
    bool schedule_all() const noexcept { return schedule_all_; }
    void set_schedule_all(bool on) noexcept { schedule_all_ = on; }
    bool closing() const noexcept { return closing_; }
    bool closed() const noexcept { return closing_ && balance_ == 0; }
    void close() noexcept { closing_ = true; }
    void open() noexcept { closing_ = false; }
    // The first waiting tasklet (for a select's proxy, the selecting tasklet: select.hpp).
    tasklet_state* head() const noexcept;
    // The waiting list, first to last, for channel<T>::waiting() and offered_by(): an entry is a
    // waiting tasklet, or a proxy that a selecting tasklet put there in its place, whose value is
    // that of its case; waiter_of() gives the tasklet an entry stands for.
    tasklet_header* first_entry() const noexcept { return head_; }
    static tasklet_header* next_entry(tasklet_header* entry) noexcept;
    static tasklet_state* waiter_of(tasklet_header* entry) noexcept;
    // A binding's object for this channel (the CPython binding's channel object), or nullptr.
    void* payload() const noexcept { return payload_; }
    void set_payload(void* payload) noexcept { payload_ = payload; }

    bool shared() const noexcept { return waiters_of_ == shared_marker(); }
    // Makes the channel shared. The caller guarantees that no other thread operates on it
    // meanwhile (at creation, or under a lock of its own such as the GIL).
    void share() noexcept;

    void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    // The channel is freed when no handle refers to it and no tasklet waits on it.
    void release() noexcept;

    // The marker that waiters_of_ holds while the channel is shared.
    static scheduler* shared_marker() noexcept {
        return reinterpret_cast<scheduler*>(const_cast<char*>(&shared_marker_byte));
    }

  private:
    friend struct channel_access;
    friend class shared_channel_lock;
    // The channel is private and tasklets of another thread wait on it: a binding's channel
    // becomes shared; any other raises wrong_thread_error (clearing the running tasklet's
    // tempval). Out of line and cold: blocking operations pass by it on every call.
    __attribute__((noinline, cold)) void share_on_contact_or_refuse();
    // may_block false: nullptr instead of blocking.
    tempval* wait_shared(int dir, bool may_block);
    // The current tasklet `self` is on the waiting list: runs the next tasklet (waiting for
    // other threads if that is the rule) until a partner wakes `self`; raises deadlock_error
    // with `deadlock` if nothing can.
    tempval& sleep_on(scheduler& s, tasklet_state* self, const char* deadlock);
    static const char shared_marker_byte;
    // Handles, and on a shared channel also its waiting tasklets (each holds one until its own
    // thread has taken it off).
    std::atomic<std::uint32_t> refs_{1};
    // Scheduler of the waiting tasklets (nullptr: none wait), or shared_marker().
    scheduler* waiters_of_ = nullptr;
    sharing mode_ = sharing::private_to_a_thread;
    std::atomic<bool> locked_{false};  // shared channels only
    int balance_ = 0;                  // > 0: senders waiting, < 0: receivers waiting
    std::int8_t preference_ = -1;
    bool schedule_all_ = false;
    bool closing_ = false;
    tasklet_header* head_ = nullptr;
    tasklet_header* tail_ = nullptr;
    void* payload_ = nullptr;
};

// Creates this thread's scheduler if it has none yet, so that other threads that wait on shared
// channels count this one as a possible partner from now on.
void count_this_thread_as_a_partner();

}  // namespace stackless::detail
