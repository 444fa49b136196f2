// The per-thread scheduler: the run queue ring, the switch itself and the rules that pick the next
// tasklet. Channels and the public API call into it; nothing here knows about values.
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "channel_access.hpp"
#include "reactor.hpp"
#include "sanitizer.hpp"
#include "stack_pool.hpp"
#include "stackless/scheduler.hpp"
#include "tasklet_state.hpp"

namespace stackless::detail {

struct thread_registry;

class scheduler {
  public:
    // This thread's scheduler, created on first use.
    static scheduler& get() {
        if (current_scheduler != nullptr) [[likely]]
            return *current_scheduler;
        return create_for_thread();
    }
    static scheduler* get_if_exists() noexcept { return current_scheduler; }
    // The config the next scheduler created on this thread will use.
    static void configure(const scheduler_config& config);

    explicit scheduler(const scheduler_config& config);
    ~scheduler();
    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    tasklet_state* running() const noexcept { return running_; }
    tasklet_state* head() const noexcept { return head_; }
    tasklet_state* main_tasklet() const noexcept { return main_; }
    int runcount() const noexcept { return runcount_; }
    std::uint64_t thread_id() const noexcept { return thread_id_; }
    scheduler_stats stats() const noexcept;

    // Run queue ring. The head is the tasklet that runs (or runs next).
    // (A binding that watches its tasklets is told last, so that the common case, no hooks,
    // keeps no values across a call.)
    void ring_insert_end(tasklet_state* t) noexcept {
        const bool was_floating = t->where == place::none;
        if (head_ == nullptr) {
            t->next = t->prev = t;
            head_ = t;
            t->where = place::ring;
            ++runcount_;
        } else {
            link_after(head_->prev, t);
        }
        if (was_floating && t->hooks != nullptr) [[unlikely]]
            notify_scheduled(t, true);
    }
    void ring_insert_after(tasklet_state* pos, tasklet_state* t) noexcept {
        const bool was_floating = t->where == place::none;
        link_after(pos, t);
        if (was_floating && t->hooks != nullptr) [[unlikely]]
            notify_scheduled(t, true);
    }
    // Makes `t` the head: it runs first when the thread next picks a tasklet (for
    // tasklet::run_remote while the thread's running tasklet is out of the ring).
    void ring_insert_front(tasklet_state* t) noexcept {
        ring_insert_end(t);
        head_ = t;
    }
    void link_after(tasklet_state* pos, tasklet_state* t) noexcept {
        t->prev = pos;
        t->next = pos->next;
        pos->next->prev = t;
        pos->next = t;
        t->where = place::ring;
        ++runcount_;
    }
    // Moves the running tasklet `t` from the ring to the end of a channel's waiting list.
    void ring_to_channel(tasklet_state* t, channel_core* ch, int dir) noexcept;
    void ring_remove(tasklet_state* t) noexcept {
        unlink_from_ring(t);
        t->next = t->prev = nullptr;
        t->where = place::none;
        --runcount_;
        if (t->hooks != nullptr) [[unlikely]]
            notify_scheduled(t, false);
    }
    // Takes `t` out of the ring's links (its own links and `where` are left to the caller).
    void unlink_from_ring(tasklet_state* t) noexcept {
        if (t->next == t) {
            head_ = nullptr;
        } else {
            t->prev->next = t->next;
            t->next->prev = t->prev;
            if (head_ == t) head_ = t->next;
        }
    }
    __attribute__((noinline, cold)) static void notify_scheduled(tasklet_state* t,
                                                                 bool scheduled) noexcept {
        if (t->hooks->scheduled_changed != nullptr)
            t->hooks->scheduled_changed(t->payload, scheduled);
    }

    // The running tasklet `t` leaves the ring for a channel's waiting list, which sets its links.
    void leave_ring(tasklet_state* t) noexcept {
        unlink_from_ring(t);
        --runcount_;
    }

    // Makes `next` runnable (unblocking or inserting it if needed), makes it the head and switches
    // to it. Returns when the caller runs again, raising its pending exception if it has one.
    inline void switch_to(tasklet_state* next);
    inline void schedule();
    void schedule_remove();
    // threadblock: when nothing is left to run, wait for other threads to wake a tasklet of
    // this one rather than return (if another thread may still do so).
    void run_watchdog(bool threadblock);
    // Switches the current tasklet out (paused) to `watchdog`, a tasklet inside run().
    bool interrupt_to_watchdog(tasklet_state* watchdog);
    tasklet_state* innermost_watchdog() const noexcept {
        return watchdogs_.empty() ? nullptr : watchdogs_.back().caller;
    }
    std::vector<tasklet_state*> watchdog_callers() const {
        std::vector<tasklet_state*> v;
        for (const watch& w : watchdogs_) v.push_back(w.caller);
        return v;
    }
    // `leaving` (the running tasklet, or nullptr) has just left the ring, which is empty: the
    // tasklet to run instead, after waiting for other threads if that is the rule
    // (docs/threads.md), or nullptr if that would deadlock. May raise what the binding's
    // thread_hooks raise while waiting (a signal).
    tasklet_state* when_ring_empty(tasklet_state* leaving);

    // --- Other threads (threads.cpp) ---
    // Another thread, holding the lock of the shared channel that `t` (of this scheduler) waits
    // on, completed `t`: it becomes runnable here (at this thread's next scheduling point).
    void push_remote(tasklet_state* t) noexcept;
    // Another thread changed this one's run queue under the binding's lock (tasklet::
    // insert_remote and the like): a thread that waits for other threads looks at it again, and
    // counts as awake meanwhile (its inbox flag is set; the drain finds the inbox empty).
    void wake_up() noexcept;
    void drain_remote_if_any() noexcept {
        if (attention_.load(std::memory_order_relaxed) & remote_bit) [[unlikely]]
            drain_remote();
    }
    // At the scheduling points (schedule, a blocking channel operation): drains the inbox and
    // lets the reactor look at its timers and fds now and then. One test of one byte when there
    // is neither, so that programs that use neither threads nor time pay nothing more.
    void attend() {
        if (attention_.load(std::memory_order_relaxed) != 0) [[unlikely]]
            attend_slow();
    }
    void drain_remote() noexcept;
    // A tasklet of this thread completed on a shared channel (by this thread, or drained from
    // the inbox): it lets go of the channel; the caller inserts it in the ring.
    void take_from_transit(tasklet_state* t) noexcept;
    // Takes a tasklet of this thread off the channel it waits on (it is floating then), or, if
    // another thread completed it first, inserts it in the ring; returns whether it was waiting.
    bool take_off_channel(tasklet_state* t) noexcept;
    // The same for a tasklet blocked in any way (on a channel, in transit, or waiting on the
    // reactor): it is floating afterwards, or in the ring if another thread completed its wait
    // first (false then). Cancels its timer and fd wait.
    bool unblock(tasklet_state* t) noexcept;

    // --- Time and I/O (reactor.hpp; event_loop.cpp) ---
    // This thread's reactor, created on first use.
    reactor& event_loop() {
        if (reactor_ == nullptr) [[unlikely]]
            create_event_loop();
        return *reactor_;
    }
    reactor* event_loop_if_any() const noexcept { return reactor_.get(); }
    // The running tasklet, registered with the reactor (a timer, an fd, a remote wait), leaves
    // the run queue until the reactor wakes it, and the next tasklet runs. Returns why it woke;
    // an exception thrown into it meanwhile is raised instead (its waits cancelled).
    wait_result park_in_reactor();
    // Its two halves: the running tasklet leaves the ring to wait (where = waiting); then the
    // next tasklet runs until the reactor or another thread wakes it.
    void leave_ring_to_wait(tasklet_state* self) noexcept;
    wait_result switch_away_waiting();
    // The reactor woke `t` (a timer, an fd): it becomes runnable, unless a channel partner
    // completed it first. Returns whether it did.
    bool wake_from_reactor(tasklet_state* t, wait_result why) noexcept;
    // Around a sleep of the reactor: false if another thread has handed over work meanwhile
    // (do not sleep). end_reactor_sleep may raise what the binding's thread hooks raise.
    bool begin_reactor_sleep();
    void end_reactor_sleep();
    // A wait that another thread completes (remote_wait.hpp).
    void arm_remote_wait(remote_wait& w) noexcept;
    wait_result wait_remote(remote_wait& w);
    // Tasklets of this thread waiting on shared channels (or in transit) change by `delta`.
    void note_shared_waiters(int delta) noexcept {
        shared_waiters_.fetch_add(delta, std::memory_order_relaxed);
    }
    void throw_into(tasklet_state* t, std::exception_ptr e, bool pending);
    void abandon(tasklet_state* t);
    void kill(tasklet_state* t, bool pending);

    // Registration of states created on this thread.
    tasklet_state* new_state();
    // Adds a state to this scheduler's list, or takes it off (also how move_to_thread_of moves
    // a state that has not started between schedulers).
    void adopt_state(tasklet_state* t) noexcept;
    void forget_state(tasklet_state* t) noexcept;
    void maybe_free(tasklet_state* t) noexcept;

    // Entry of a new tasklet's stack.
    [[noreturn]] void tasklet_body();

  private:
    using fcontext_t = boost::context::detail::fcontext_t;

    static scheduler& create_for_thread();
    inline void transfer(tasklet_state* prev, tasklet_state* next);
    void make_runnable(tasklet_state* next) noexcept;
    void transfer_slow(tasklet_state* prev, tasklet_state* next);
    // Switches to `to`; the context left is stored in *save_to.
    inline void jump(fcontext_t* save_to, fcontext_t to, bool fresh, const void* stack_bottom,
                     std::size_t stack_size);
    static boost::context::detail::transfer_t resume_by_return(
        boost::context::detail::transfer_t t);
    void after_switch() noexcept {
        if (dying_ != nullptr) [[unlikely]]
            release_dying();
    }
    void release_dying() noexcept;
    void make_resident_from_helper(tasklet_state* next);
    void evict(tasklet_state* occupant);
    bool try_discard(tasklet_state* t) noexcept;
    // A slot for a tasklet that needs a fresh stack, switched to from `prev` (docs/design.md
    // gives the order); *save_to is redirected when it is prev's own, left for good.
    stack_slot* slot_for_fresh_stack(tasklet_state* prev, fcontext_t** save_to);
    static constexpr std::size_t discard_probes = 4;
    [[noreturn]] void end_running(std::exception_ptr escaped);

  public:
    // The last handle to `t` was dropped on this thread.
    void handle_unreferenced(tasklet_state* t) noexcept;

  private:
  public:
    int kill_survivors() noexcept;
    void abandon_survivors() noexcept;

  private:
    static void raise_pending(tasklet_state* t) {
        if (t->pending) [[unlikely]]
            rethrow_pending(t);
    }
    [[noreturn]] static void rethrow_pending(tasklet_state* t);
    static void helper_entry(boost::context::detail::transfer_t t);
    static void tasklet_entry(boost::context::detail::transfer_t t);

    // Touched on every switch: kept together.
    tasklet_state* running_ = nullptr;  // the tasklet whose code is executing
    tasklet_state* head_ = nullptr;     // head of the run queue ring; == running_ normally
    tasklet_state* dying_ = nullptr;    // ended; its slot is freed once we left its stack
    eh::globals_layout* eh_globals_;    // this thread's C++ exception-handling record
    scheduler_stats stats_;

    tasklet_state* main_ = nullptr;
    int runcount_ = 0;
    struct watch {
        tasklet_state* caller;
        bool threadblock;
    };
    std::vector<watch> watchdogs_;  // tasklets inside run(), innermost last
    tasklet_state* wake_target() const noexcept {
        return watchdogs_.empty() ? main_ : watchdogs_.back().caller;
    }
    tasklet_state* all_ = nullptr;  // every state of this scheduler
    std::uint64_t thread_id_;

    stack_pool pool_;
    // A small stack of its own for copying a stack into the slot we are running on.
    unsigned char* helper_stack_ = nullptr;
    std::size_t helper_stack_size_ = 64 * 1024;
    unsigned helper_stack_valgrind_id_ = 0;  // (sanitizer::register_stack)
    fcontext_t helper_ctx_ = nullptr;
    // Where the context of a stack left for good is stored (nobody reads it).
    fcontext_t abandoned_ctx_ = nullptr;
    tasklet_state* helper_target_ = nullptr;
    bool is_watchdog(const tasklet_state* t) const noexcept;

    // Tasklets that other threads complete (threads.cpp). The flag lets the scheduling points
    // look without the lock.
    // What the scheduling points must look at: remote_bit, another thread left tasklets in the
    // inbox (set by that thread); reactor_bit, this thread has a reactor (set once).
    static constexpr std::uint8_t remote_bit = 1;
    static constexpr std::uint8_t reactor_bit = 2;
    std::atomic<std::uint8_t> attention_{0};
    bool remote_pending() const noexcept {
        return (attention_.load(std::memory_order_relaxed) & remote_bit) != 0;
    }
    std::atomic<int> shared_waiters_{0};
    std::mutex inbox_mutex_;
    std::condition_variable inbox_cv_;
    tasklet_state* inbox_head_ = nullptr;  // linked through `next`, oldest first
    tasklet_state* inbox_tail_ = nullptr;
    bool recheck_ = false;  // (inbox_mutex_) another thread went idle or ended
    bool idle_ = false;     // (threads' registry mutex) waiting in idle_wait
    // The last wait for other threads ended as a deadlock by the binding's rule, which counts
    // every thread that may still wake this one (CPython's thread states exist before their
    // threads run). The core's rule counts a thread only from its first stackless call, so its
    // verdict may come before a partner thread's first call.
    bool deadlock_is_final_ = false;
    scheduler* registry_next_ = nullptr;
    scheduler* registry_prev_ = nullptr;
    static bool may_run_tasklets_at_thread_end() noexcept;
    void register_thread() noexcept;
    void unregister_thread() noexcept;
    tasklet_state* idle_wait();
    // when_ring_empty while the reactor has waiters: sleeps in it until a tasklet is runnable.
    tasklet_state* wait_for_world(tasklet_state* leaving);
    void create_event_loop();
    // Puts a tasklet the reactor woke in the ring (event_loop.cpp says where).
    void insert_woken(tasklet_state* t) noexcept;
    // The last tasklet the reactor woke, until it ends or is dropped (end_running, abandon and
    // abandon_survivors forget it: it may be freed then).
    tasklet_state* last_woken_ = nullptr;
    __attribute__((noinline, cold)) void attend_slow();
    bool cancel_remote_wait(tasklet_state* t) noexcept;
    std::unique_ptr<reactor> reactor_;
    bool has_waiters_other_threads_may_wake() const noexcept;
    enum class idle_verdict {
        sleep,     // marked idle: wait for a hand-over or a recheck
        woken,     // another thread handed over a tasklet meanwhile: run it
        deadlock,  // no other thread can wake this one
    };
    idle_verdict begin_idle(bool announce);
    void end_idle();
    friend void broadcast_recheck(const scheduler* except) noexcept;
    friend int sleeping_locked(const thread_registry& r) noexcept;

    // Stack bounds for the sanitizer's fiber-switch annotations.
    const void* main_stack_bottom_ = nullptr;
    std::size_t main_stack_size_ = 0;
};

// The switch path is inline: every call level between user code and the context switch costs
// instructions on each switch, and the scheduling operations are little more than this.

#define STACKLESS_ALWAYS_INLINE __attribute__((always_inline)) inline

STACKLESS_ALWAYS_INLINE void scheduler::switch_to(tasklet_state* next) {
    tasklet_state* prev = running_;
    if (next->where != place::ring) [[unlikely]]
        make_runnable(next);
    head_ = next;
    if (next == prev) [[unlikely]] {
        raise_pending(prev);
        return;
    }
    if (prev->hooks != nullptr) [[unlikely]]
        if (prev->hooks->switched_out != nullptr) prev->hooks->switched_out(prev->payload);
    eh::swap_out(eh_globals_, prev->eh);
    eh::swap_in(eh_globals_, next->eh);
    running_ = next;
    current_tempval = &next->value;
    ++stats_.switches;
    transfer(prev, next);
    // Running as `prev` again.
    after_switch();
    if (prev->hooks != nullptr) [[unlikely]]
        if (prev->hooks->switched_in != nullptr) prev->hooks->switched_in(prev->payload);
    raise_pending(prev);
}

STACKLESS_ALWAYS_INLINE void scheduler::transfer(tasklet_state* prev, tasklet_state* next) {
    if (next->resident) [[likely]] {
        // The bounds only matter to the sanitizer annotations (dead code otherwise).
        const void* bottom = next->is_main ? main_stack_bottom_ : next->slot->base;
        std::size_t size = next->is_main ? main_stack_size_ : pool_.stack_size();
        jump(&prev->ctx, next->ctx, false, bottom, size);
    } else {
        transfer_slow(prev, next);
    }
}

STACKLESS_ALWAYS_INLINE void scheduler::jump(fcontext_t* save_to, fcontext_t to, bool fresh,
                                             const void* stack_bottom, std::size_t stack_size) {
    namespace ctx = boost::context::detail;
    void* fake_stack = nullptr;
    sanitizer::start_switch(&fake_stack, stack_bottom, stack_size);
    // The target stores our context where we point it to; see tasklet_entry and helper_entry.
    // jump_fcontext enters the target with an indirect jmp, which leaves the CPU's return-stack
    // predictor one entry off, so every return after a switch would mispredict. ontop_fcontext
    // instead calls resume_by_return on the target's stack, and its `ret` enters the target,
    // consuming the predictor entry that our call pushed. A fresh context has no frame to return
    // into, so it is entered with jump_fcontext.
    ctx::transfer_t t = fresh ? ctx::jump_fcontext(to, save_to)
                              : ctx::ontop_fcontext(to, save_to, &resume_by_return);
    const void* from_bottom = nullptr;
    std::size_t from_size = 0;
    sanitizer::finish_switch(fake_stack, &from_bottom, &from_size);
    *static_cast<fcontext_t*>(t.data) = t.fctx;
}

STACKLESS_ALWAYS_INLINE void scheduler::ring_to_channel(tasklet_state* t, channel_core* ch,
                                                        int dir) noexcept {
    leave_ring(t);
    channel_access::append(ch, t, dir, this);  // sets t's links and where
}

STACKLESS_ALWAYS_INLINE void scheduler::schedule() {
    attend();
    tasklet_state* self = running_;
    tasklet_state* next = self->next;
    if (next == self) {
        raise_pending(self);
        return;
    }
    switch_to(next);
}

// Orders a handle dropped on another thread against the detaching of states when their thread
// ends.
std::mutex& registry_mutex();

}  // namespace stackless::detail
