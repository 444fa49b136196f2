// The public tasklet and scheduler API: argument checking and the state rules, on top of the
// scheduler's mechanisms.
#include <mutex>

#include "scheduler.hpp"
#include "select_proxies.hpp"
#include "stackless/scheduler.hpp"
#include "stackless/tasklet.hpp"
#include "tasklet_state.hpp"

namespace stackless {

namespace detail {

tasklet_state* new_tasklet_state() {
    tasklet_state* t = scheduler::get().new_state();
    t->handles.store(1, std::memory_order_relaxed);
    return t;
}

void* callable_space(tasklet_state* t, std::size_t size, std::size_t align) noexcept {
    return t->fn.space(size, align);
}

void adopt_callable(tasklet_state* t, callable* fn, bool in_place) noexcept {
    t->state = fn->ready() ? life::ready : life::bound;
    t->fn.adopt(fn, in_place);
}

void insert_new(tasklet_state* t) {
    scheduler::get().ring_insert_end(t);
}

tasklet_header* header_of(tasklet_state* t) noexcept {
    return t;
}

void release_handle(tasklet_state* t) noexcept {
    scheduler* mine = scheduler::get_if_exists();
    if (mine != nullptr && t->sched.load(std::memory_order_acquire) == mine) {
        if (t->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) mine->handle_unreferenced(t);
        return;
    }
    // Dropped on another thread, or after the tasklet's thread ended. The owner cannot be told
    // safely, so it finds out at its thread's end, where every unreferenced state is freed.
    std::lock_guard lock(registry_mutex());
    if (t->handles.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
        t->sched.load(std::memory_order_acquire) == nullptr)
        delete t;
}

}  // namespace detail

using detail::life;
using detail::place;
using detail::scheduler;
using detail::tasklet_state;

namespace {

// The scheduler of the calling thread, after checking that `t` belongs to it.
[[noreturn]] __attribute__((noinline)) void wrong_owner(const scheduler* s) {
    if (s == nullptr) throw wrong_thread_error("tasklet: its thread has ended");
    throw wrong_thread_error("tasklet: it belongs to another thread");
}

inline scheduler& owner_of(tasklet_state* t) {
    scheduler* s = t->sched.load(std::memory_order_acquire);
    if (s != detail::current_scheduler || s == nullptr) [[unlikely]]
        wrong_owner(s);
    return *s;
}

}  // namespace

tasklet::tasklet() : state_(detail::new_tasklet_state()) {}

tasklet_state* tasklet::checked() const {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    owner_of(state_);
    return state_;
}

void tasklet::bind_callable(std::unique_ptr<detail::callable> fn) {
    detail::adopt_callable(prepare_rebind(), fn.release(), false);
}

namespace {
scheduler& remote_owner_of(tasklet_state* t);
}  // namespace

tasklet_state* tasklet::prepare_rebind(bool remote) {
    tasklet_state* t = remote ? state_ : checked();
    scheduler& s = remote ? remote_owner_of(t) : owner_of(t);
    if (t->is_main) throw tasklet_state_error("tasklet.bind: cannot bind the main tasklet");
    if (t == s.running())
        throw tasklet_state_error("tasklet.bind: cannot rebind the current tasklet");
    if (t->where != place::none) throw tasklet_state_error("tasklet.bind: tasklet is scheduled");
    if (t->state == life::started)
        throw tasklet_state_error("tasklet.bind: tasklet has started; kill it first");
    t->fn.reset();
    t->state = life::unbound;
    t->exit_requested = false;
    t->pending = nullptr;
    return t;
}

void tasklet::setup_erased(const std::type_info& type, void* args) {
    tasklet_state* t = checked();
    if (t->alive()) throw tasklet_state_error("tasklet.setup: tasklet is alive");
    if (!t->fn) throw tasklet_state_error("tasklet.setup: the tasklet was not bound to a function");
    std::unique_ptr<detail::callable> bound = t->fn->with_args(type, args);
    bind_callable(std::move(bound));
    insert();
}

namespace {

// A neighbour in the chain a tasklet is linked into (empty handle if none). On a channel, a
// select's proxy stands for its selecting tasklet: a proxy is never a tasklet handle.
tasklet neighbour(tasklet_state* s) noexcept {
    s = detail::select_proxies::visible(s);
    return s != nullptr ? tasklet::from_state(s) : tasklet::adopt(nullptr);
}

// Blocked on a channel (or several, in select), or waiting for time, I/O or another thread.
bool is_blocked(const tasklet_state* t) noexcept {
    return t->where == place::channel || t->where == place::waiting || t->where == place::selecting;
}

// What insert() does in the scheduler `s` of `t` (its own, or another thread's under the
// binding's lock).
void put_in_run_queue(scheduler& s, tasklet_state* t) {
    if (is_blocked(t))
        throw tasklet_state_error("tasklet.insert: you cannot run a blocked tasklet");
    if (!t->alive())
        throw tasklet_state_error("tasklet.insert: you cannot run an unbound (dead) tasklet");
    if (t->where == place::none) s.ring_insert_end(t);
}

// What remove() does in the scheduler `s` of `t` (its own, or another thread's under the
// binding's lock).
void take_out_of_run_queue(scheduler& s, tasklet_state* t) {
    if (is_blocked(t))
        throw tasklet_state_error("tasklet.remove: you cannot remove a blocked tasklet");
    if (t == s.running())
        throw tasklet_state_error("tasklet.remove: the current tasklet cannot be removed");
    if (t->where == place::transit) s.take_off_channel(t);  // (into the ring)
    if (t->where == place::ring) s.ring_remove(t);
}

}  // namespace

tasklet& tasklet::insert() {
    tasklet_state* t = checked();
    put_in_run_queue(owner_of(t), t);
    return *this;
}

tasklet& tasklet::remove() {
    tasklet_state* t = checked();
    take_out_of_run_queue(owner_of(t), t);
    return *this;
}

void tasklet::run() {
    tasklet_state* t = checked();
    scheduler& s = owner_of(t);
    if (is_blocked(t)) throw tasklet_state_error("tasklet.run: you cannot run a blocked tasklet");
    if (!t->alive()) throw tasklet_state_error("tasklet.run: you cannot run a dead tasklet");
    s.switch_to(t);
}

void tasklet::switch_to() {
    tasklet_state* t = checked();
    scheduler& s = owner_of(t);
    if (is_blocked(t))
        throw tasklet_state_error("tasklet.switch: you cannot switch to a blocked tasklet");
    if (!t->alive())
        throw tasklet_state_error("tasklet.switch: you cannot switch to a dead tasklet");
    tasklet_state* self = s.running();
    if (t == self) return;
    if (t->where == place::none) s.ring_insert_end(t);
    s.ring_remove(self);  // the caller is paused; a handle (or getcurrent()) can insert it again
    s.switch_to(t);
}

void tasklet::abandon() {
    tasklet_state* t = checked();
    owner_of(t).abandon(t);
}

void tasklet::kill(bool pending) {
    tasklet_state* t = checked();
    owner_of(t).kill(t, pending);
}

void tasklet::throw_exception(std::exception_ptr e, bool pending) {
    tasklet_state* t = checked();
    owner_of(t).throw_into(t, std::move(e), pending);
}

bool tasklet::alive() const {
    return checked()->alive();
}
bool tasklet::blocked() const {
    return is_blocked(checked());
}
bool tasklet::scheduled() const {
    return checked()->where != place::none;
}
bool tasklet::paused() const {
    tasklet_state* t = checked();
    return t->alive() && t->where == place::none;
}
bool tasklet::is_current() const {
    tasklet_state* t = checked();
    return t == owner_of(t).running();
}
bool tasklet::is_main() const {
    return checked()->is_main;
}
bool tasklet::block_trap() const {
    return checked()->block_trap;
}
void tasklet::set_block_trap(bool trap) {
    checked()->block_trap = trap;
}

tasklet tasklet::next() const {
    tasklet_state* t = checked();
    return neighbour(t->next);
}
tasklet tasklet::prev() const {
    tasklet_state* t = checked();
    return neighbour(t->prev);
}

std::uint64_t tasklet::thread_id() const {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    std::lock_guard lock(detail::registry_mutex());
    scheduler* s = state_->sched.load(std::memory_order_acquire);
    return s != nullptr ? s->thread_id() : 0;
}

void tasklet::move_to_thread_of(const tasklet& other) {
    if (state_ == nullptr || other.state_ == nullptr)
        throw tasklet_state_error("tasklet: empty handle");
    std::lock_guard lock(detail::registry_mutex());
    tasklet_state* t = state_;
    scheduler* from = t->sched.load(std::memory_order_acquire);
    scheduler* to = other.state_->sched.load(std::memory_order_acquire);
    if (to == nullptr) throw wrong_thread_error("tasklet: its thread has ended");
    if (from == to) return;
    // (A tasklet whose thread ended belongs to no scheduler: one that never started can be
    // taken by another thread, as in Stackless.)
    if (t->is_main || t->state == life::started || t->state == life::dead ||
        t->where != place::none || (from != nullptr && t == from->running()))
        throw tasklet_state_error(
            "tasklet: only a tasklet that has not started and is neither scheduled nor blocked "
            "can move to another thread");
    if (from != nullptr) from->forget_state(t);
    to->adopt_state(t);
}

namespace {

// The scheduler of the thread `t` belongs to, for the *_remote operations. (The binding's lock
// keeps that thread from ending meanwhile: its scheduler goes only after the thread's end, which
// the binding marks under that lock first.)
scheduler& remote_owner_of(tasklet_state* t) {
    if (t == nullptr) throw tasklet_state_error("tasklet: empty handle");
    scheduler* s = t->sched.load(std::memory_order_acquire);
    if (s == nullptr) throw wrong_thread_error("tasklet: its thread has ended");
    return *s;
}

}  // namespace

void tasklet::insert_remote() {
    scheduler& s = remote_owner_of(state_);
    put_in_run_queue(s, state_);
    s.wake_up();
}

void tasklet::remove_remote() {
    take_out_of_run_queue(remote_owner_of(state_), state_);
}

void tasklet::run_remote() {
    tasklet_state* t = state_;
    scheduler& s = remote_owner_of(t);
    if (is_blocked(t)) throw tasklet_state_error("tasklet.run: you cannot run a blocked tasklet");
    if (!t->alive()) throw tasklet_state_error("tasklet.run: you cannot run a dead tasklet");
    if (t->where == place::none) {
        // As Stackless: right after the thread's running tasklet, or, if that one is out of the
        // run queue (the thread waits for other threads), first, before the others it has.
        tasklet_state* running = s.running();
        if (running->where == place::ring)
            s.ring_insert_after(running, t);
        else
            s.ring_insert_front(t);
    }
    s.wake_up();
}

void tasklet::throw_remote(std::exception_ptr e) {
    tasklet_state* t = state_;
    scheduler& s = remote_owner_of(t);
    if (!t->alive()) throw tasklet_state_error("cannot throw an exception into a dead tasklet");
    t->pending = std::move(e);
    bool waiting = true;
    if (t->where == place::channel || t->where == place::transit || t->where == place::waiting ||
        t->where == place::selecting)
        waiting = s.unblock(t);  // false: completed by another thread, in the ring now
    if (waiting && t->where == place::none) s.ring_insert_end(t);
    s.wake_up();
}

void tasklet::kill_remote() {
    tasklet_state* t = state_;
    remote_owner_of(t);
    if (!t->alive()) return;
    if (t->is_main) throw tasklet_state_error("the main tasklet cannot be killed");
    t->exit_requested = true;
    throw_remote(std::make_exception_ptr(tasklet_exit{}));
}

tasklet tasklet::next_from_any_thread() const {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    return neighbour(state_->next);
}

tasklet tasklet::prev_from_any_thread() const {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    return neighbour(state_->prev);
}

bool tasklet::block_trap_from_any_thread() const {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    return state_->block_trap;
}

void tasklet::set_block_trap_from_any_thread(bool trap) {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    state_->block_trap = trap;
}

void* tasklet::payload_from_any_thread() const noexcept {
    return state_ != nullptr ? state_->payload : nullptr;
}

tasklet::blocking tasklet::blocked_on() const {
    tasklet_state* t = checked();
    if (t->where != place::channel || t->blocked_on == nullptr) return {nullptr, 0};
    return {t->blocked_on->payload(), t->block_dir};
}

void tasklet::set_function_takes_pending(bool on) {
    tasklet_state* t = checked();
    if (t->state == life::started || t->state == life::dead)
        throw tasklet_state_error("tasklet: it has started already");
    t->function_takes_pending = on;
}

std::exception_ptr take_pending_exception() noexcept {
    scheduler* s = scheduler::get_if_exists();
    if (s == nullptr) return {};
    tasklet_state* t = s->running();
    if (!t->function_takes_pending || !t->pending) return {};
    return std::exchange(t->pending, nullptr);
}

void tasklet::set_hooks(const tasklet_hooks* hooks, void* payload) {
    tasklet_state* t = checked();
    t->hooks = hooks;
    t->payload = payload;
}
void* tasklet::payload() const {
    return checked()->payload;
}

// ---------------------------------------------------------------------------------------------

void schedule() {
    scheduler::get().schedule();
}
void schedule_remove() {
    scheduler::get().schedule_remove();
}
void run(bool threadblock) {
    scheduler::get().run_watchdog(threadblock);
}
bool interrupt_to_run() {
    scheduler& s = scheduler::get();
    return s.interrupt_to_watchdog(s.innermost_watchdog());
}
bool interrupt_to_run(const tasklet& watchdog) {
    return scheduler::get().interrupt_to_watchdog(watchdog.state());
}
std::vector<tasklet> run_callers() {
    std::vector<tasklet> callers;
    for (detail::tasklet_state* t : scheduler::get().watchdog_callers())
        callers.push_back(tasklet::from_state(t));
    return callers;
}
tasklet getcurrent() {
    return tasklet::from_state(scheduler::get().running());
}
tasklet getmain() {
    return tasklet::from_state(scheduler::get().main_tasklet());
}
int getruncount() {
    return scheduler::get().runcount();
}
void configure(const scheduler_config& config) {
    scheduler::configure(config);
}
scheduler_stats stats() {
    scheduler_stats s = scheduler::get().stats();
    s.state_chunks = detail::state_chunks();
    return s;
}

int kill_all() {
    return scheduler::get().kill_survivors();
}
void abandon_survivors() noexcept {
    if (scheduler* s = scheduler::get_if_exists()) s->abandon_survivors();
}

void* tasklet::current_payload() noexcept {
    scheduler* s = detail::current_scheduler;
    return s != nullptr ? s->running()->payload : nullptr;
}

int tasklet::owner_runcount() const noexcept {
    if (state_ == nullptr) return -1;
    std::lock_guard lock(detail::registry_mutex());
    scheduler* s = state_->sched.load(std::memory_order_acquire);
    return s != nullptr ? s->runcount() : -1;
}

tasklet::status_flags tasklet::status() const {
    tasklet_state* t = checked();
    return {t->alive(), t->where != place::none, is_blocked(t),
            t == detail::current_scheduler->running(), t->state == life::started};
}

tasklet::status_flags tasklet::status_from_any_thread() const {
    if (state_ == nullptr) throw tasklet_state_error("tasklet: empty handle");
    tasklet_state* t = state_;
    std::lock_guard lock(detail::registry_mutex());  // (its scheduler cannot go meanwhile)
    scheduler* s = t->sched.load(std::memory_order_acquire);
    return {t->alive(), t->where != place::none, is_blocked(t), s != nullptr && t == s->running(),
            t->state == life::started};
}

}  // namespace stackless
