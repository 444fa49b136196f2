// The untyped part of a channel: the queue of blocked tasklets and the scheduling rules. The
// typed layer (channel<T>) only moves values between tempvals around these calls.
#pragma once

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

// Channels are single-threaded for now: a channel and its handles belong to the thread that uses
// them. Meeting tasklets of another thread waiting on it raises wrong_thread_error.
class channel_core {
  public:
    channel_core() = default;
    channel_core(const channel_core&) = delete;
    channel_core& operator=(const channel_core&) = delete;

    // The blocked partner a send (dir > 0) or receive (dir < 0) would complete with, if any.
    tasklet_header* partner(int dir) const noexcept {
        bool present = dir > 0 ? balance_ < 0 : balance_ > 0;
        return present && waiters_of_ == current_scheduler ? head_ : nullptr;
    }
    // Completes the operation with partner(dir), which the caller has already exchanged the value
    // with, and schedules both tasklets as the channel's preference says. May switch.
    void hand_over(int dir);
    // Blocks the current tasklet until a partner arrives. Its tempval holds the value to send
    // (dir > 0) or receives the value (dir < 0); it is returned. On failure it is cleared.
    tempval& wait(int dir);
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
    tasklet_state* head() const noexcept;
    // A binding's object for this channel (the CPython binding's channel object), or nullptr.
    void* payload() const noexcept { return payload_; }
    void set_payload(void* payload) noexcept { payload_ = payload; }

    void retain() noexcept { ++refs_; }
    // The channel is freed when no handle refers to it and no tasklet waits on it.
    void release() noexcept;

  private:
    friend struct channel_access;
    std::uint32_t refs_ = 1;
    scheduler* waiters_of_ = nullptr;  // scheduler of the waiting tasklets
    int balance_ = 0;                  // > 0: senders waiting, < 0: receivers waiting
    std::int8_t preference_ = -1;
    bool schedule_all_ = false;
    bool closing_ = false;
    tasklet_header* head_ = nullptr;
    tasklet_header* tail_ = nullptr;
    void* payload_ = nullptr;
};

}  // namespace stackless::detail
