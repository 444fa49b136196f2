#include "scheduler.hpp"

#include <cxxabi.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>

#include "channel_access.hpp"
#include "sanitizer.hpp"
#include "select_proxies.hpp"
#include "stackless/errors.hpp"

namespace stackless::detail {

namespace ctx = boost::context::detail;

namespace {

// initial-exec: the scheduler is looked up on every operation, and the general-dynamic model
// would cost a __tls_get_addr call each time when the core is linked into a shared object.
}  // namespace

__attribute__((tls_model("initial-exec"))) constinit thread_local scheduler* current_scheduler =
    nullptr;
__attribute__((tls_model("initial-exec"))) constinit thread_local tempval* current_tempval =
    nullptr;

namespace {
thread_local std::unique_ptr<scheduler> tls_owner;  // destroys the scheduler at thread exit
thread_local scheduler_config tls_config;

// Thread ids are never reused, unlike pthread ids, so a dead thread's tasklets cannot be mistaken
// for a new thread's.
std::atomic<std::uint64_t> next_thread_id{1};

[[noreturn]] void fatal(const char* what) noexcept {
    std::fprintf(stderr, "stackless: fatal: %s\n", what);
    std::abort();
}

}  // namespace

std::mutex& registry_mutex() {
    static std::mutex mu;
    return mu;
}

// ---------------------------------------------------------------------------------------------
// Creation and teardown

scheduler& scheduler::create_for_thread() {
    tls_owner = std::make_unique<scheduler>(tls_config);
    current_scheduler = tls_owner.get();
    return *current_scheduler;
}

void scheduler::configure(const scheduler_config& config) {
    if (current_scheduler != nullptr)
        throw error("stackless::configure: this thread's scheduler already exists");
    stack_pool check(config.stack_size, config.stack_slots, config.max_stack_slots,
                     config.runnable_slots);  // validates the values
    tls_config = config;
}

scheduler::scheduler(const scheduler_config& config)
    : eh_globals_(eh::thread_globals()),
      thread_id_(next_thread_id.fetch_add(1, std::memory_order_relaxed)),
      pool_(config.stack_size, config.stack_slots, config.max_stack_slots, config.runnable_slots) {
    main_ = new_state();
    main_->is_main = true;
    main_->state = life::started;
    main_->resident = true;
    running_ = main_;
    current_tempval = &main_->value;
    ring_insert_end(main_);
    register_thread();
}

scheduler::~scheduler() {
    // A thread that ends normally does so in its main tasklet, which runs. One that a forced
    // unwind (pthread_exit, pthread_cancel) ended in a wait, or inside another tasklet (the
    // unwind reached the bottom of that tasklet's stack), left the tasklets as they were then.
    const bool ended_normally = running_ == main_ && main_->where == place::ring;
    if (ended_normally && may_run_tasklets_at_thread_end()) {
        kill_survivors();
    } else {
        // Nothing of the binding may be called, nothing can be unwound: they are dropped.
        for (tasklet_state* t = all_; t != nullptr; t = t->all_next) t->hooks = nullptr;
        abandon_survivors();
    }
    // No tasklet of this thread may stay on a channel, where another thread could complete it
    // and leave it in this scheduler's inbox (its binding took what it had to off them before).
    drain_remote();
    for (tasklet_state* t = all_; t != nullptr; t = t->all_next) {
        if (t->where != place::channel && t->where != place::waiting &&
            t->where != place::selecting)
            continue;
        t->hooks = nullptr;
        unblock(t);
    }
    drain_remote();
    unregister_thread();
    {
        std::lock_guard lock(registry_mutex());
        tasklet_state* t = all_;
        while (t != nullptr) {
            tasklet_state* next = t->all_next;
            t->sched.store(nullptr, std::memory_order_release);
            t->next = t->prev = nullptr;
            t->where = place::none;
            t->blocked_on = nullptr;
            t->all_next = t->all_prev = nullptr;
            if (t->state == life::started) t->state = life::dead;  // its stack goes with the pool
            select_proxies::free_all(t);  // (a select its stack will not return to)
            stack_pool::drop_saved(t);
            t->slot = nullptr;
            if (t->handles.load(std::memory_order_acquire) == 0) delete t;
            t = next;
        }
        all_ = nullptr;
    }
    if (helper_stack_ != nullptr) {
        sanitizer::unpoison(helper_stack_, helper_stack_size_);  // (see ~stack_pool)
        sanitizer::deregister_stack(helper_stack_valgrind_id_);
        munmap(helper_stack_, helper_stack_size_);
    }
    if (current_scheduler == this) {
        current_scheduler = nullptr;
        current_tempval = nullptr;
    }
    donate_free_states();
}

int scheduler::kill_survivors() noexcept {
    if (running_ != main_) return 0;  // the thread ends inside a tasklet: nothing can be unwound
    watchdogs_.clear();
    drain_remote();
    // Tasklets that never started are not run: they just leave the queue (or the channel an
    // unpickled one waits on).
    for (tasklet_state* t = main_->next; t != main_;) {
        tasklet_state* after = t->next;
        ring_remove(t);
        t = after;
    }
    {
        std::vector<tasklet> waiting;  // (taking one off may free another: its binding's object)
        for (tasklet_state* t = all_; t != nullptr; t = t->all_next)
            if (t->where == place::channel && t->state != life::started)
                waiting.push_back(tasklet::from_state(t));
        for (tasklet& w : waiting)
            if (w.state()->where == place::channel) take_off_channel(w.state());
    }
    // A tasklet that catches tasklet_exit and blocks again is killed again, a bounded number of
    // times.
    int survivors = 0;
    for (int round = 0; round < 10; ++round) {
        std::vector<tasklet> victims;
        for (tasklet_state* t = all_; t != nullptr; t = t->all_next)
            if (t->state == life::started && !t->is_main) victims.push_back(tasklet::from_state(t));
        survivors = static_cast<int>(victims.size());
        if (victims.empty()) break;
        for (tasklet& v : victims) {
            try {
                kill(v.state(), false);
            } catch (...) {  // (a forced unwind ends the victim's own stack, not this one)
                std::fputs("stackless: an exception escaped a tasklet killed at thread exit\n",
                           stderr);
            }
        }
    }
    // Whatever the killed tasklets queued does not run either.
    while (main_->next != main_) ring_remove(main_->next);
    return survivors;
}

void scheduler::abandon_survivors() noexcept {
    last_woken_ = nullptr;  // (those dropped here may be freed)
    for (tasklet_state* t = all_; t != nullptr; t = t->all_next) {
        if (t->is_main || t->state != life::started) continue;
        if (t->where == place::channel || t->where == place::transit ||
            t->where == place::waiting || t->where == place::selecting)
            unblock(t);
        if (t->where == place::ring) ring_remove(t);
        select_proxies::free_all(t);  // (its stack, which would have freed them, is dropped)
        if (t->slot != nullptr && t->slot->owner == t) {
            t->slot->owner = nullptr;
            pool_.give_back(t->slot);
        }
        stack_pool::drop_saved(t);
        t->slot = nullptr;
        t->resident = false;
        t->state = life::dead;
        --stats_.live_tasklets;
    }
}

tasklet_state* scheduler::new_state() {
    auto* t = new tasklet_state;
    adopt_state(t);
    return t;
}

void scheduler::forget_state(tasklet_state* t) noexcept {
    if (t->all_prev != nullptr)
        t->all_prev->all_next = t->all_next;
    else
        all_ = t->all_next;
    if (t->all_next != nullptr) t->all_next->all_prev = t->all_prev;
    t->all_next = t->all_prev = nullptr;
}

void scheduler::adopt_state(tasklet_state* t) noexcept {
    t->all_next = all_;
    if (all_ != nullptr) all_->all_prev = t;
    all_ = t;
    t->sched.store(this, std::memory_order_release);
}

void scheduler::maybe_free(tasklet_state* t) noexcept {
    if (t->handles.load(std::memory_order_acquire) != 0 || t->where != place::none ||
        t->state == life::started || t->is_main || t == dying_)
        return;
    forget_state(t);
    stack_pool::drop_saved(t);
    delete t;
}

void scheduler::handle_unreferenced(tasklet_state* t) noexcept {
    if (t->state == life::started && t->where == place::none && t != running_ && !t->is_main &&
        !is_watchdog(t)) {
        // Nobody can reach it any more: kill it the next time the scheduler gets to it.
        t->exit_requested = true;
        t->pending = std::make_exception_ptr(tasklet_exit{});
        ring_insert_end(t);
        return;
    }
    maybe_free(t);
}

bool scheduler::is_watchdog(const tasklet_state* t) const noexcept {
    return std::any_of(watchdogs_.begin(), watchdogs_.end(),
                       [t](const watch& w) { return w.caller == t; });
}

scheduler_stats scheduler::stats() const noexcept {
    scheduler_stats s = stats_;
    s.slots_mapped = pool_.slots_mapped();
    return s;
}

// ---------------------------------------------------------------------------------------------
// Switching

void scheduler::rethrow_pending(tasklet_state* t) {
    std::exception_ptr e = std::move(t->pending);
    t->pending = nullptr;
    std::rethrow_exception(e);
}

// `next` has no stack in place: it starts now, or its stack is saved on the heap.
__attribute__((noinline)) void scheduler::transfer_slow(tasklet_state* prev, tasklet_state* next) {
    const std::size_t size = pool_.stack_size();
    stack_slot* running_slot = prev->slot;
    stack_slot* home = next->slot;
    if (home == nullptr) {
        // First run (or the first since its stack was dropped): give it a slot.
        fcontext_t* save_to = &prev->ctx;
        stack_slot* s = slot_for_fresh_stack(prev, &save_to);
        s->owner = next;
        next->slot = s;
        next->resident = true;
        if (next->state != life::started) {  // (one whose stack was dropped starts again)
            next->state = life::started;
            ++stats_.live_tasklets;
        }
        if (s != running_slot) {
            sanitizer::unpoison(s->base, size);
        } else {
            // We still run on it (our frames go when we leave): valgrind must not be told that
            // they are undefined (its stack-pointer tracking covers the switch within a stack),
            // while ASan's redzones of the frames we leave behind must go (see restore).
            sanitizer::unpoison_shadow(s->base, size);
        }
        next->ctx = ctx::make_fcontext(s->top, size, &scheduler::tasklet_entry);
        jump(save_to, next->ctx, true, s->base, size);
    } else if (home != running_slot) {
        if (home->owner != nullptr) evict(home->owner);
        stack_pool::restore(next);
        ++stats_.stacks_restored;
        stats_.saved_stack_bytes -= home->top - static_cast<unsigned char*>(next->ctx);
        jump(&prev->ctx, next->ctx, false, home->base, size);
    } else {
        // Its home is the slot we are running on: copy it in from the helper's own stack.
        helper_target_ = next;
        bool fresh = helper_ctx_ == nullptr;
        if (fresh) {
            void* mem = mmap(nullptr, helper_stack_size_, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
            if (mem == MAP_FAILED) fatal("cannot map the stack-copy helper's stack");
            helper_stack_ = static_cast<unsigned char*>(mem);
            // (valgrind tells a switch of stacks from a frame by the registered stacks: not
            // registered, a switch between a slot and this stack, mapped near it, read as a
            // large frame, and the memory in between was marked undefined or inaccessible)
            helper_stack_valgrind_id_ =
                sanitizer::register_stack(helper_stack_, helper_stack_ + helper_stack_size_);
            helper_ctx_ = ctx::make_fcontext(helper_stack_ + helper_stack_size_, helper_stack_size_,
                                             &scheduler::helper_entry);
        }
        jump(&prev->ctx, helper_ctx_, fresh, helper_stack_, helper_stack_size_);
    }
}

stack_slot* scheduler::slot_for_fresh_stack(tasklet_state* prev, fcontext_t** save_to) {
    stack_slot* running_slot = prev->slot;
    // The running tasklet's own slot, when it has ended or goes on without its stack
    // (tasklet_hooks::discard_stack): its memory is in cache, and it is free as soon as we leave
    // it. So with more tasklets than slots, tasklets that can do without their stacks take
    // turns on one stack, as Stackless's soft switching does, and nothing is copied.
    auto own_slot = [&] {
        *save_to = &abandoned_ctx_;
        return running_slot;
    };
    if (stack_slot* s = pool_.take_free()) return s;
    const bool prev_waits = prev->where != place::ring;
    if (running_slot != nullptr && (prev == dying_ || (prev_waits && try_discard(prev))))
        return own_slot();
    // Tasklets that wait (blocked or paused) give up their slots first: a suspended one that
    // can go on without its stack, found by a short probe (a main tasklet that hands over to
    // tasklets whose stacks were dropped needs a slot at every turn), or else one whose stack
    // is saved.
    auto drop_waiting = [this](stack_slot* slot) {
        return slot->owner->where != place::ring && try_discard(slot->owner);
    };
    if (stack_slot* s = pool_.probe(running_slot, discard_probes, drop_waiting)) return s;
    if (stack_slot* s = pool_.pick_idle(running_slot)) {
        evict(s->owner);
        return s;
    }
    // Every slot holds a runnable tasklet. Tasklets that take turns are better off keeping
    // their stacks (another slot beats restarting them at every turn), up to runnable_slots;
    // beyond, runnable tasklets that can go on without their stacks do. But a main tasklet,
    // which never drops its stack, handing over to tasklets that did (it wakes them) takes a
    // slot from one of them rather than one more slot at every turn.
    auto drop_any = [this](stack_slot* slot) { return try_discard(slot->owner); };
    if (prev->is_main)
        if (stack_slot* s = pool_.probe(running_slot, discard_probes, drop_any)) return s;
    if (stack_slot* s = pool_.map_for_runnable()) return s;
    if (running_slot != nullptr && !prev_waits && try_discard(prev)) return own_slot();
    if (stack_slot* s = pool_.probe(running_slot, discard_probes, drop_any)) return s;
    if (stack_slot* s = pool_.map_extra()) return s;
    stack_slot* s = pool_.pick_overflow(running_slot);
    if (s->owner != nullptr) evict(s->owner);
    return s;
}

ctx::transfer_t scheduler::resume_by_return(ctx::transfer_t t) {
    return t;
}

void scheduler::make_runnable(tasklet_state* next) noexcept {
    if (next->where != place::none)
        if (!unblock(next)) return;  // completed by another thread: in the ring now
    ring_insert_end(next);
}

bool scheduler::try_discard(tasklet_state* t) noexcept {
    // Its binding may go on without this stack (tasklet_hooks::discard_stack); not while the
    // C++ runtime is handling an exception on it, nor while it is in select() (its stack frees
    // the proxies).
    if (t->hooks == nullptr || t->hooks->discard_stack == nullptr || t->eh.caught != nullptr ||
        t->eh.uncaught != 0 || t->select_next != nullptr || !t->hooks->discard_stack(t->payload))
        return false;
    // Still started (alive, killed at thread exit like the others), but without a home slot:
    // its next run starts its function afresh on a new stack, as a first run does.
    if (t->slot->owner == t) t->slot->owner = nullptr;
    t->slot = nullptr;
    t->resident = false;
    t->ctx = nullptr;
    t->function_takes_pending = true;
    stack_pool::drop_saved(t);
    ++stats_.stacks_discarded;
    return true;
}

void scheduler::evict(tasklet_state* occupant) {
    stack_slot* s = occupant->slot;
    if (try_discard(occupant)) return;
    auto used = static_cast<std::size_t>(s->top - static_cast<unsigned char*>(occupant->ctx));
    try {
        stack_pool::save(occupant);
    } catch (const std::bad_alloc&) {
        fatal("out of memory while saving a tasklet's stack");
    }
    ++stats_.stacks_saved;
    stats_.saved_stack_bytes += used;
}

void scheduler::make_resident_from_helper(tasklet_state* next) {
    stack_slot* home = next->slot;
    if (tasklet_state* occupant = home->owner) {
        if (occupant == dying_) {
            home->owner = nullptr;  // its stack is garbage now
            occupant->resident = false;
        } else
            evict(occupant);
    }
    stack_pool::restore(next);
    ++stats_.stacks_restored;
    stats_.saved_stack_bytes -= home->top - static_cast<unsigned char*>(next->ctx);
}

void scheduler::helper_entry(ctx::transfer_t t) {
    for (;;) {
        *static_cast<fcontext_t*>(t.data) = t.fctx;
        scheduler& s = *current_scheduler;
        const void* from_bottom = nullptr;
        std::size_t from_size = 0;
        sanitizer::finish_switch(nullptr, &from_bottom, &from_size);
        tasklet_state* next = s.helper_target_;
        s.make_resident_from_helper(next);
        void* fake_stack = nullptr;
        sanitizer::start_switch(&fake_stack, next->slot->base, s.pool_.stack_size());
        t = ctx::ontop_fcontext(next->ctx, &s.helper_ctx_, &scheduler::resume_by_return);
    }
}

void scheduler::release_dying() noexcept {
    tasklet_state* d = dying_;
    dying_ = nullptr;
    if (d->slot != nullptr && d->slot->owner == d) {
        d->slot->owner = nullptr;
        pool_.give_back(d->slot);
    }
    d->slot = nullptr;
    d->ctx = nullptr;
    d->resident = false;
    stack_pool::drop_saved(d);
    maybe_free(d);
}

void scheduler::tasklet_entry(ctx::transfer_t t) {
    *static_cast<fcontext_t*>(t.data) = t.fctx;
    current_scheduler->tasklet_body();
}

void scheduler::tasklet_body() {
    const void* from_bottom = nullptr;
    std::size_t from_size = 0;
    sanitizer::finish_switch(nullptr, &from_bottom, &from_size);
    if (main_stack_size_ == 0 && from_size != 0) {
        // Only main can start the first tasklet, so these are the bounds of the thread's stack.
        main_stack_bottom_ = from_bottom;
        main_stack_size_ = from_size;
    }
    after_switch();
    tasklet_state* self = running_;
    if (self->hooks != nullptr && self->hooks->switched_in != nullptr)
        self->hooks->switched_in(self->payload);
    std::exception_ptr escaped;
    // A forced unwind (pthread_exit, pthread_cancel) goes on from here to the bottom of this
    // stack, where the unwinder finds no caller and the C library ends the thread from there;
    // the scheduler's teardown then sees that the thread ended inside a tasklet.
    try {
        if (!self->function_takes_pending) raise_pending(self);
        self->fn->invoke();
        if (self->exit_requested && (self->hooks == nullptr || !self->hooks->may_catch_exit))
            throw error(
                "a killed tasklet caught tasklet_exit and returned normally; "
                "it must let tasklet_exit propagate");
    } catch (const tasklet_exit&) {
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        escaped = std::current_exception();
    }
    self->fn.reset();
    end_running(std::move(escaped));
}

void scheduler::end_running(std::exception_ptr escaped) {
    tasklet_state* self = running_;
    self->state = life::dead;
    if (self->where == place::ring) ring_remove(self);
    if (self == last_woken_) last_woken_ = nullptr;  // (it may be freed once it ended)
    --stats_.live_tasklets;
    tasklet_state* wake = wake_target();
    tasklet_state* next = head_;
    if (!escaped && next == nullptr) {
        try {
            next = when_ring_empty(self);
        } catch (abi::__forced_unwind&) {
            throw;
        } catch (...) {
            escaped = std::current_exception();  // (a signal while it waited for other threads)
        }
    }
    if (escaped) {
        next = wake;
        wake->pending = std::move(escaped);
    } else if (next == nullptr) {
        next = wake;
        if (wake->where == place::channel && !wake->pending) {
            wake->pending = std::make_exception_ptr(deadlock_error(
                wake->block_dir < 0
                    ? "Deadlock: the main tasklet is receiving without a sender available"
                    : "Deadlock: the main tasklet is sending without a receiver available"));
        } else if (wake->where == place::selecting && !wake->pending) {
            wake->pending = std::make_exception_ptr(deadlock_error(
                "Deadlock: the main tasklet is in select() without a partner available"));
        }
    }
    dying_ = self;
    switch_to(next);
    fatal("a dead tasklet was resumed");
}

// ---------------------------------------------------------------------------------------------
// Scheduling operations

void scheduler::schedule_remove() {
    attend();
    tasklet_state* self = running_;
    if (self->handles.load(std::memory_order_relaxed) == 0 && !self->is_main &&
        !is_watchdog(self)) {
        // Nobody could ever insert it again: Stackless would collect and kill it.
        self->exit_requested = true;
        self->pending = std::make_exception_ptr(tasklet_exit{});
        schedule();
        return;
    }
    ring_remove(self);
    tasklet_state* next = head_;
    if (next == nullptr) {
        try {
            next = when_ring_empty(self);
        } catch (abi::__forced_unwind&) {
            throw;
        } catch (...) {
            ring_insert_end(self);
            throw;
        }
        if (next == nullptr) {
            ring_insert_end(self);
            // The wake-up target is blocked: nothing could ever run this tasklet again.
            if (self != wake_target())
                throw deadlock_error("Deadlock: the last runnable tasklet cannot be blocked.");
            // The wake-up target is this tasklet itself: it stays runnable.
            raise_pending(self);
            return;
        }
    }
    switch_to(next);
}

void scheduler::run_watchdog(bool threadblock) {
    tasklet_state* self = running_;
    if (self->where != place::ring) throw tasklet_state_error("run(): the caller is not runnable");
    drain_remote_if_any();
    if (self->next == self && !threadblock && (reactor_ == nullptr || reactor_->waiters() == 0)) {
        raise_pending(self);
        return;  // nothing else to run, nothing that waits for time or I/O
    }
    watchdogs_.push_back({self, threadblock});
    ring_remove(self);
    auto unwind_watchdogs = [&] {
        // Woken: watchdogs above us (run() calls of tasklets that did not get woken) are popped
        // and made runnable, as Stackless does. If an outer run() popped us already (it was
        // woken first), there is nothing to pop: the others are not ours.
        if (!is_watchdog(self)) return;
        while (!watchdogs_.empty()) {
            tasklet_state* popped = watchdogs_.back().caller;
            watchdogs_.pop_back();
            if (popped == self) break;
            if (popped->where == place::none) ring_insert_end(popped);
        }
    };
    bool deadlocked = false;
    try {
        deadlock_is_final_ = false;
        tasklet_state* first = head_ != nullptr ? head_ : when_ring_empty(nullptr);
        // Nothing to run, tasklets that wait for other threads, and no wait for them: no other
        // thread can wake them. Returning would let a run(threadblock) loop spin on for ever;
        // but by the core's rule a partner may yet make its first call, so only the binding's
        // verdict is final enough to raise.
        deadlocked = first == self && threadblock && deadlock_is_final_ &&
                     has_waiters_other_threads_may_wake();
        switch_to(first);
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        unwind_watchdogs();
        throw;
    }
    unwind_watchdogs();
    if (deadlocked)
        throw deadlock_error(
            "Deadlock: run(threadblock): tasklets of this thread wait on channels and no other "
            "thread can wake them");
}

bool scheduler::interrupt_to_watchdog(tasklet_state* watchdog) {
    tasklet_state* self = running_;
    if (watchdog == nullptr || watchdog == self || self->where != place::ring ||
        !is_watchdog(watchdog))
        return false;
    ring_remove(self);
    switch_to(watchdog);  // the watchdog's run() returns; we go on once inserted again
    return true;
}

void scheduler::throw_into(tasklet_state* t, std::exception_ptr e, bool pending) {
    if (t == running_) std::rethrow_exception(e);
    if (!t->alive()) throw tasklet_state_error("cannot throw an exception into a dead tasklet");
    t->pending = std::move(e);
    if (!pending) {
        switch_to(t);
        return;
    }
    if (t->where == place::channel || t->where == place::transit || t->where == place::waiting ||
        t->where == place::selecting)
        if (!unblock(t)) return;  // completed by another thread: in the ring now
    if (t->where == place::none) ring_insert_end(t);
}

void scheduler::abandon(tasklet_state* t) {
    if (t->is_main || t->state != life::started || t->where != place::none || t == running_ ||
        is_watchdog(t))
        throw tasklet_state_error(
            "tasklet.abandon: only a started tasklet that is paused can drop its stack");
    if (t->eh.caught != nullptr || t->eh.uncaught != 0)
        throw tasklet_state_error("tasklet.abandon: an exception is being handled on its stack");
    if (t->slot != nullptr && t->slot->owner == t) {
        t->slot->owner = nullptr;
        pool_.give_back(t->slot);
    }
    stack_pool::drop_saved(t);
    select_proxies::free_all(t);  // (a select its stack will not return to)
    t->slot = nullptr;
    t->resident = false;
    t->ctx = nullptr;
    t->fn.reset();
    t->state = life::unbound;
    t->pending = nullptr;
    t->exit_requested = false;
    if (t == last_woken_) last_woken_ = nullptr;  // (it may be freed once unbound)
    --stats_.live_tasklets;
}

void scheduler::kill(tasklet_state* t, bool pending) {
    if (!t->alive()) return;
    if (t->is_main) throw tasklet_state_error("the main tasklet cannot be killed");
    t->exit_requested = true;
    throw_into(t, std::make_exception_ptr(tasklet_exit{}), pending);
}

}  // namespace stackless::detail
