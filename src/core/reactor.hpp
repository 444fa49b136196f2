// The event loop of one scheduler: the deadlines its tasklets wait for, the file descriptors they
// wait on (epoll) and an eventfd through which other threads wake a thread that sleeps here.
// Created on the thread's first wait for time or I/O; a program that never waits pays nothing.
//
// The reactor only keeps track of waiters and reports what happened; the scheduler decides when
// to look (scheduler::attend, wait_for_world) and makes the woken tasklets runnable.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "tasklet_state.hpp"
#include "timer_heap.hpp"

namespace stackless::detail {

class scheduler;
struct remote_wait;

class reactor {
  public:
    explicit reactor(scheduler& owner);
    ~reactor();
    reactor(const reactor&) = delete;
    reactor& operator=(const reactor&) = delete;

    static std::int64_t now_ns() noexcept;

    // Tasklets this reactor may still wake: timers, fd waits and waits completed by other
    // threads. While there are any, a thread with nothing to run sleeps here instead of
    // returning from run() or reporting a deadlock.
    std::size_t waiters() const noexcept {
        return timers_.live() + fd_waiters_ + remote_waits_.size();
    }

    // --- Timers: `t` is woken (wait_result::timeout) at `when` unless cancelled first.
    void add_timer(tasklet_state* t, std::int64_t when);
    void cancel_timer(tasklet_state* t) noexcept;

    // --- File descriptors. Registers fd (edge-triggered, both directions) on first use.
    // Whether a wait on fd in that direction may return at once (the fd became ready since the
    // last wait returned, or it is a regular file); clears that readiness. Raises io_error.
    bool take_readiness(int fd, bool write);
    // `t` waits until fd becomes ready in that direction. Raises stackless::error if another
    // tasklet waits there already.
    void add_fd_wait(tasklet_state* t, int fd, bool write);
    void cancel_fd_wait(tasklet_state* t) noexcept;
    // Wakes the fd's waiters with wait_result::closed and forgets the fd.
    void forget(int fd) noexcept;

    // --- Waits that another thread completes (the thread pool, remote_wait): which one a
    // parked tasklet waits for. (Here rather than in every tasklet's state: they are rare and
    // cost a thread hand-off each, microseconds, against a map's tens of nanoseconds.)
    void add_remote(tasklet_state* t, remote_wait* w) { remote_waits_.emplace(t, w); }
    remote_wait* remote_of(tasklet_state* t) const noexcept {
        auto it = remote_waits_.find(t);
        return it == remote_waits_.end() ? nullptr : it->second;
    }
    void erase_remote(tasklet_state* t) noexcept { remote_waits_.erase(t); }

    // Wakes what is due: expired timers, and fds that epoll reports ready, waiting up to
    // `timeout_ns` (0: just look; -1: no limit) for the first event. `sleep_hooks`: the thread
    // may sleep, so the binding's thread hooks (the GIL) are called around it, and another
    // thread may interrupt the sleep through wake_from_other_thread(). Returns how many tasklets
    // it woke.
    std::size_t poll(std::int64_t timeout_ns, bool may_sleep);
    // Looked at every so often while tasklets are runnable, so that timers and I/O are not
    // starved by tasklets that never wait.
    void poll_while_busy();

    // Called by another thread under the scheduler's inbox lock: if this thread sleeps in
    // poll(), make it return.
    void wake_from_other_thread() noexcept;
    // (The scheduler, under its inbox lock, around a sleep in poll().)
    void mark_sleeping(bool on) noexcept { sleeping_ = on; }

  private:
    struct fd_entry {
        tasklet_state* reader = nullptr;
        tasklet_state* writer = nullptr;
        bool registered = false;
        bool always_ready = false;  // regular files, which epoll refuses
        bool readable = false;      // became ready since the last wait returned
        bool writable = false;
        // The peer ended its stream (EPOLLRDHUP, sockets only): that is for good, so every later
        // wait for reading returns at once. An edge reports it once, and a reader that took the
        // last data after that edge (a short read: stackless/net.hpp reads again only after a
        // wait) would otherwise wait for an edge that never comes.
        bool read_hung_up = false;
    };
    fd_entry& entry(int fd);
    void ensure_epoll();
    void register_fd(int fd, fd_entry& e);
    void fire_due_timers(std::int64_t now);
    void dispatch(int ready_count);
    void wake(tasklet_state* t, wait_result why) noexcept;

    scheduler& owner_;
    timer_heap timers_;
    std::vector<fd_entry> fds_;
    std::size_t fd_waiters_ = 0;
    std::unordered_map<tasklet_state*, remote_wait*> remote_waits_;
    std::size_t woken_ = 0;  // by the current poll()
    int epoll_fd_ = -1;
    int event_fd_ = -1;      // in the epoll set; written by other threads to end a sleep
    bool sleeping_ = false;  // (the scheduler's inbox lock) in epoll_wait with may_sleep
    std::int64_t last_epoll_ns_ = 0;
    std::uint32_t busy_ticks_ = 0;
    std::vector<unsigned char> events_;  // epoll_event array, kept between polls

  public:
    // How often a busy thread looks: every this many scheduling points, and at epoll only if
    // this long passed since the last look.
    static constexpr std::uint32_t busy_tick_period = 64;
    static constexpr std::int64_t busy_epoll_period_ns = 500'000;
    bool tick() noexcept { return (++busy_ticks_ & (busy_tick_period - 1)) == 0; }
};

}  // namespace stackless::detail
