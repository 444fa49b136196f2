// What connects the schedulers of different threads: the inbox where another thread leaves a
// tasklet it completed on a shared channel, and the wait of a thread that has nothing to run
// until another thread wakes one of its tasklets (or a deadlock is certain). docs/threads.md.
#include <chrono>

#include "channel_access.hpp"
#include "scheduler.hpp"
#include "stackless/threads.hpp"

namespace stackless {

namespace {
std::atomic<const thread_hooks*> installed_hooks{nullptr};
}  // namespace

void set_thread_hooks(const thread_hooks* hooks) noexcept {
    installed_hooks.store(hooks, std::memory_order_release);
}

}  // namespace stackless

namespace stackless::detail {

// The live schedulers (each says whether it waits for another thread: sleeping_locked).
struct thread_registry {
    std::mutex mutex;
    scheduler* first = nullptr;
    int live = 0;
};

namespace {

thread_registry& registry() {
    static thread_registry r;
    return r;
}

// An idle thread looks again this often even unwoken: a binding's rule may depend on threads the
// core does not know of (the CPython binding counts every Python thread).
constexpr auto recheck_period = std::chrono::milliseconds(50);

}  // namespace

bool scheduler::may_run_tasklets_at_thread_end() noexcept {
    const thread_hooks* hooks = installed_hooks.load(std::memory_order_acquire);
    return hooks == nullptr || hooks->may_run_tasklets_at_thread_end == nullptr ||
           hooks->may_run_tasklets_at_thread_end();
}

void scheduler::register_thread() noexcept {
    thread_registry& r = registry();
    std::lock_guard lock(r.mutex);
    registry_next_ = r.first;
    if (r.first != nullptr) r.first->registry_prev_ = this;
    r.first = this;
    ++r.live;
}

void scheduler::unregister_thread() noexcept {
    thread_registry& r = registry();
    {
        std::lock_guard lock(r.mutex);
        if (registry_prev_ != nullptr)
            registry_prev_->registry_next_ = registry_next_;
        else
            r.first = registry_next_;
        if (registry_next_ != nullptr) registry_next_->registry_prev_ = registry_prev_;
        --r.live;
    }
    broadcast_recheck(this);  // a thread that waited for this one may now be deadlocked
}

void count_this_thread_as_a_partner() {
    scheduler::get();  // (its constructor registers it)
}

// Idle threads that nothing woke yet: a thread whose inbox holds a tasklet is about to run.
int sleeping_locked(const thread_registry& r) noexcept {
    int n = 0;
    for (scheduler* s = r.first; s != nullptr; s = s->registry_next_)
        n += s->idle_ && !s->remote_pending();
    return n;
}

// Wakes every idle thread but `except` to apply its rule again.
void broadcast_recheck(const scheduler* except) noexcept {
    thread_registry& r = registry();
    std::lock_guard lock(r.mutex);
    for (scheduler* s = r.first; s != nullptr; s = s->registry_next_) {
        if (s == except || !s->idle_) continue;
        std::lock_guard inbox(s->inbox_mutex_);
        s->recheck_ = true;
        s->inbox_cv_.notify_one();
    }
}

}  // namespace stackless::detail

int stackless::threads_using_stackless() noexcept {
    detail::thread_registry& r = detail::registry();
    std::lock_guard lock(r.mutex);
    return r.live;
}

int stackless::sleeping_threads() noexcept {
    detail::thread_registry& r = detail::registry();
    std::lock_guard lock(r.mutex);
    return detail::sleeping_locked(r);
}

namespace stackless::detail {

void scheduler::push_remote(tasklet_state* t) noexcept {
    std::lock_guard lock(inbox_mutex_);
    t->next = nullptr;
    if (inbox_tail_ != nullptr)
        inbox_tail_->next = t;
    else
        inbox_head_ = t;
    inbox_tail_ = t;
    attention_.fetch_or(remote_bit, std::memory_order_relaxed);
    inbox_cv_.notify_one();
    if (reactor_ != nullptr) reactor_->wake_from_other_thread();
}

void scheduler::wake_up() noexcept {
    std::lock_guard lock(inbox_mutex_);
    attention_.fetch_or(remote_bit, std::memory_order_relaxed);
    inbox_cv_.notify_one();
    if (reactor_ != nullptr) reactor_->wake_from_other_thread();
}

bool scheduler::begin_reactor_sleep() {
    {
        std::lock_guard lock(inbox_mutex_);
        if (remote_pending()) return false;
        reactor_->mark_sleeping(true);
    }
    const thread_hooks* hooks = installed_hooks.load(std::memory_order_acquire);
    if (hooks != nullptr && hooks->begin_wait != nullptr) hooks->begin_wait();
    return true;
}

void scheduler::end_reactor_sleep() {
    {
        std::lock_guard lock(inbox_mutex_);
        reactor_->mark_sleeping(false);
    }
    const thread_hooks* hooks = installed_hooks.load(std::memory_order_acquire);
    if (hooks != nullptr && hooks->end_wait != nullptr) hooks->end_wait();  // may throw
}

void scheduler::drain_remote() noexcept {
    tasklet_state* t;
    {
        std::lock_guard lock(inbox_mutex_);
        t = inbox_head_;
        inbox_head_ = inbox_tail_ = nullptr;
        attention_.fetch_and(static_cast<std::uint8_t>(~remote_bit), std::memory_order_relaxed);
    }
    while (t != nullptr) {
        tasklet_state* after = t->next;
        if (t->where == place::waiting) {  // a wait that another thread completed (remote_wait)
            reactor_->erase_remote(t);
            t->woke = wait_result::ready;
        } else {  // in transit from a shared channel
            take_from_transit(t);
        }
        ring_insert_end(t);  // (in transit or waiting counts as scheduled: no hook call)
        t = after;
    }
}

void scheduler::take_from_transit(tasklet_state* t) noexcept {
    channel_core* ch = t->blocked_on;
    t->blocked_on = nullptr;
    note_shared_waiters(-1);
    ch->release();
}

bool scheduler::has_waiters_other_threads_may_wake() const noexcept {
    if (shared_waiters_.load(std::memory_order_relaxed) > 0) return true;
    // A binding's channel becomes shared only when another thread meets its waiters, so they
    // are not counted until then; look for one (run(threadblock) with nothing to run: rare,
    // and a wait follows).
    for (const tasklet_state* t = all_; t != nullptr; t = t->all_next)
        if (t->where == place::channel && channel_access::other_threads_may_complete(t->blocked_on))
            return true;
    return false;
}

bool scheduler::take_off_channel(tasklet_state* t) noexcept {
    if (!t->blocked_on->shared()) {
        channel_access::unlink_private(t);
        return true;
    }
    if (channel_access::unlink_shared(t)) return true;
    // Another thread completed it; having taken the channel's lock after it, we find it here.
    drain_remote();
    return false;
}

tasklet_state* scheduler::when_ring_empty(tasklet_state* leaving) {
    drain_remote_if_any();
    if (head_ != nullptr) return head_;
    // Tasklets wait for time or I/O: the world will wake one of them.
    if (reactor_ != nullptr && reactor_->waiters() != 0) return wait_for_world(leaving);
    tasklet_state* wake = wake_target();
    const bool wake_free = wake != leaving && wake->where == place::none;
    // Waiting for other threads is for a tasklet that blocks on a channel (the one leaving, or
    // the wake-up target), not for one that only steps aside (schedule_remove). run(threadblock=
    // True) waits rather than return when a tasklet has just blocked, or when tasklets of this
    // thread wait on shared channels (Stackless blocks the thread when a tasklet blocks; a
    // tasklet that ends returns to run() there).
    const bool leaving_blocked = leaving != nullptr && leaving->where == place::channel;
    const bool threadblock = !watchdogs_.empty() && watchdogs_.back().threadblock &&
                             (leaving_blocked || has_waiters_other_threads_may_wake());
    if (wake_free && !threadblock) return wake;
    if (threadblock || leaving_blocked || wake->where == place::channel)
        if (tasklet_state* t = idle_wait()) return t;
    return wake_free ? wake : nullptr;
}

scheduler::idle_verdict scheduler::begin_idle(bool announce) {
    const thread_hooks* hooks = installed_hooks.load(std::memory_order_acquire);
    const int verdict =
        hooks != nullptr && hooks->may_be_woken != nullptr ? hooks->may_be_woken() : -1;
    const bool ask_binding = verdict > 0;
    thread_registry& r = registry();
    {
        std::lock_guard lock(r.mutex);
        // A thread that woke one of ours and then went to sleep counts as asleep below, so
        // that tasklet must be seen here: it was handed over before that thread took this
        // lock to sleep, and then it is a reason to run on, not a deadlock.
        if (remote_pending()) return idle_verdict::woken;
        // (Decided and marked at once: two threads that each wait for the other cannot both
        // see the other as running.)
        if (verdict == 0) {
            deadlock_is_final_ = true;
            return idle_verdict::deadlock;
        }
        if (!ask_binding && (shared_waiters_.load(std::memory_order_relaxed) == 0 ||
                             r.live - 1 - sleeping_locked(r) <= 0)) {
            deadlock_is_final_ = false;
            return idle_verdict::deadlock;
        }
        idle_ = true;
    }
    // Those that wait for us may be deadlocked now. Only when this wait begins: idle threads
    // that told each other at every look would keep waking each other up.
    if (announce) broadcast_recheck(this);
    if (hooks != nullptr && hooks->begin_wait != nullptr) hooks->begin_wait();
    return idle_verdict::sleep;
}

void scheduler::end_idle() {
    {
        thread_registry& r = registry();
        std::lock_guard lock(r.mutex);
        idle_ = false;
    }
    const thread_hooks* hooks = installed_hooks.load(std::memory_order_acquire);
    if (hooks != nullptr && hooks->end_wait != nullptr) hooks->end_wait();  // may throw
}

tasklet_state* scheduler::idle_wait() {
    for (bool first = true;; first = false) {
        drain_remote_if_any();
        if (head_ != nullptr) return head_;
        const idle_verdict verdict = begin_idle(first);
        if (verdict == idle_verdict::deadlock) return nullptr;
        if (verdict == idle_verdict::woken) continue;
        {
            std::unique_lock lock(inbox_mutex_);
            inbox_cv_.wait_for(lock, recheck_period, [&] { return recheck_ || remote_pending(); });
            recheck_ = false;
        }
        end_idle();
    }
}

}  // namespace stackless::detail
