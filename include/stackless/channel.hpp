// stackless::channel<T>: Stackless's synchronous rendezvous channel.
//
// A channel is a handle: copies refer to the same channel, and the channel lives while a handle
// or a blocked tasklet refers to it. send() and receive() block until a partner arrives.
// balance() < 0: receivers are waiting; > 0: senders are waiting. preference() says who runs on
// when both sides are present: -1 (default) the receiver, 1 the sender, 0 neither (the waker
// continues and the woken tasklet goes to the end of the run queue). schedule_all() makes both
// go through the run queue.
//
// Values are moved into the receiving tasklet's own heap state, never accessed on another
// tasklet's stack.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <iterator>
#include <optional>
#include <utility>
#include <vector>

#include "stackless/detail/channel_core.hpp"
#include "stackless/errors.hpp"
#include "stackless/tasklet.hpp"
#include "stackless/threads.hpp"
#include "stackless/time.hpp"

namespace stackless {

namespace detail {
struct channel_handle_access;
}

template <class T>
class channel {
  public:
    using value_type = T;

    // A channel private to one thread at a time: using it while tasklets of another thread wait
    // on it raises wrong_thread_error.
    channel() : core_(new detail::channel_core) {}
    // A channel for tasklets of several threads (docs/threads.md).
    explicit channel(across_threads_t) : core_(new_shared_core()) {}
    // For bindings that serialise all operations themselves (the GIL): private until tasklets
    // of two threads meet on it, shared from then on.
    explicit channel(detail::channel_core::sharing mode) : core_(new detail::channel_core(mode)) {}
    channel(const channel& other) noexcept : core_(other.core_) { core_->retain(); }
    // A handle is never empty: "moving" one copies it.
    channel(channel&& other) noexcept : core_(other.core_) { core_->retain(); }
    channel& operator=(channel&& other) noexcept {
        return *this = static_cast<const channel&>(other);
    }
    channel& operator=(const channel& other) noexcept {
        other.core_->retain();
        core_->release();
        core_ = other.core_;
        return *this;
    }
    ~channel() { core_->release(); }

    // Sends a value; blocks until a receiver takes it.
    template <class U = T>
    void send(U&& value) {
        detail::channel_core* core = core_;  // `this` may be gone once we have blocked
        if (detail::tasklet_header* receiver = core->partner(+1)) {
            receiver->value.template emplace<T>(std::forward<U>(value));
            core->hand_over(+1);
        } else {
            detail::channel_core::current_value().template emplace<T>(std::forward<U>(value));
            core->wait(+1);
        }
    }

    // Receives a value; blocks until a sender provides one. An exception sent with
    // send_exception() is raised here instead.
    T receive() { return receive_from(core_); }

  private:
    static detail::channel_core* new_shared_core() {
        // The thread that makes a channel for threads is one of them: a thread it starts may
        // wait on the channel at once and count on this one as a partner (docs/threads.md).
        detail::count_this_thread_as_a_partner();
        return new detail::channel_core(detail::channel_core::sharing::shared);
    }
    static T receive_from(detail::channel_core* core) {
        if (detail::tasklet_header* sender = core->partner(-1)) {
            if (sender->value.holds_exception()) {
                std::exception_ptr e = sender->value.take_exception();
                core->hand_over(-1);
                std::rethrow_exception(e);
            }
            T value = sender->value.template take<T>();
            core->hand_over(-1);
            return value;
        }
        detail::tempval& mine = core->wait(-1);
        if (mine.holds_exception()) std::rethrow_exception(mine.take_exception());
        return mine.template take<T>();
    }

  public:
    // --- With a deadline (a time point, or a duration from now: see stackless/time.hpp).
    // send_until: true once a receiver took the value; false if `until` passed first (the value
    // is dropped then). receive_until: the value, or nothing if `until` passed first. A deadline
    // that has passed never blocks: the operation completes only with a partner waiting now.
    // Raise as send() and receive() do otherwise (channel_closed_error, a sent exception).
    template <class U = T>
    bool send_until(U&& value, deadline until) {
        detail::channel_core* core = core_;
        if (detail::tasklet_header* receiver = core->partner(+1)) {
            receiver->value.template emplace<T>(std::forward<U>(value));
            core->hand_over(+1);
            return true;
        }
        detail::channel_core::current_value().template emplace<T>(std::forward<U>(value));
        return core->wait_until(+1, until.ns()) != nullptr;
    }
    std::optional<T> receive_until(deadline until) {
        detail::channel_core* core = core_;
        if (detail::channel_core::has_partner_here(core, -1)) return receive_from(core);
        detail::tempval* mine = core->wait_until(-1, until.ns());
        if (mine == nullptr) return std::nullopt;
        if (mine->holds_exception()) std::rethrow_exception(mine->take_exception());
        return mine->template take<T>();
    }
    template <class U, class Rep, class Period>
    bool send_for(U&& value, std::chrono::duration<Rep, Period> timeout) {
        return send_until(std::forward<U>(value), deadline(timeout));
    }
    template <class Rep, class Period>
    std::optional<T> receive_for(std::chrono::duration<Rep, Period> timeout) {
        return receive_until(deadline(timeout));
    }
    // Never block: complete with a partner that waits now, or do nothing (try_send returns
    // false; an rvalue argument may have been moved from).
    template <class U = T>
    bool try_send(U&& value) {
        return send_until(std::forward<U>(value), deadline::passed());
    }
    std::optional<T> try_receive() { return receive_until(deadline::passed()); }

    // Sends an exception: the receiver raises it from receive().
    void send_exception(std::exception_ptr e) {
        detail::channel_core* core = core_;
        if (detail::tasklet_header* receiver = core->partner(+1)) {
            receiver->value.set_exception(std::move(e));
            core->hand_over(+1);
        } else {
            detail::channel_core::current_value().set_exception(std::move(e));
            core->wait(+1);
        }
    }
    template <class E>
    void send_exception(E e) {
        send_exception(std::make_exception_ptr(std::move(e)));
    }

    // Sends every element of `seq` in order; returns how many were sent.
    template <class Range>
    std::size_t send_sequence(Range&& seq) {
        std::size_t count = 0;
        for (auto&& item : seq) {
            send(std::forward<decltype(item)>(item));
            ++count;
        }
        return count;
    }

    // Unpickling: appends `t` to the waiting list as if it had blocked in receive() (dir < 0) or
    // in send(value) (dir > 0). `t` must belong to this thread, be alive (bound with arguments),
    // not started, and neither scheduled nor blocked; its function finds what it received with
    // take_delivered() once a partner woke it, and should take its pending exception itself
    // (tasklet::set_function_takes_pending), since one may be thrown in before it starts.
    template <class U = T>
    void restore_waiting(const tasklet& t, int dir, U&& value) {
        core_->append_restored(t.state(), dir);
        if (dir > 0)
            detail::header_of(t.state())->value.template emplace<T>(std::forward<U>(value));
    }
    // In a tasklet woken by a sender after restore_waiting(dir < 0): the value it received
    // (raises what was sent with send_exception). Empty if none was delivered.
    static std::optional<T> take_delivered() {
        detail::tempval& v = detail::channel_core::current_value();
        if (v.empty()) return std::nullopt;
        if (v.holds_exception()) std::rethrow_exception(v.take_exception());
        return v.template take<T>();
    }
    // The value `t`, blocked in send() on this channel, offers (nullptr if it is not such a
    // sender, or sends an exception).
    // (A tasklet in select offers the value of its case: its entry's, see select.hpp.)
    const T* offered_by(const tasklet& t) const {
        if (balance() <= 0) return nullptr;
        for (detail::tasklet_header* e = core_->first_entry(); e != nullptr;
             e = detail::channel_core::next_entry(e)) {
            if (detail::channel_core::waiter_of(e) != t.state()) continue;
            detail::tempval& v = e->value;
            if (v.empty() || v.holds_exception()) return nullptr;
            return &v.template peek<T>();
        }
        return nullptr;
    }

    // A binding's object for this channel, reported by tasklet::blocked_on().
    void* payload() const noexcept { return core_->payload(); }
    void set_payload(void* payload) noexcept { core_->set_payload(payload); }

    // On a channel shared across threads these are snapshots: other threads may change them.
    int balance() const noexcept { return core_->balance(); }
    bool across_threads() const noexcept { return core_->shared(); }
    int preference() const noexcept { return core_->preference(); }
    // Raises std::invalid_argument unless preference is -1, 0 or 1.
    void set_preference(int preference) { core_->set_preference(preference); }
    bool schedule_all() const noexcept { return core_->schedule_all(); }
    void set_schedule_all(bool on) noexcept { core_->set_schedule_all(on); }

    // After close(), operations that would block raise channel_closed_error; those that find a
    // waiting partner still complete. closed() is closing() with no tasklet waiting.
    void close() noexcept { core_->close(); }
    void open() noexcept { core_->open(); }
    bool closing() const noexcept { return core_->closing(); }
    bool closed() const noexcept { return core_->closed(); }

    // The first tasklet blocked on the channel (empty handle if none); follow next(). A tasklet
    // blocked in select() stands where its case waits; its own next() is empty (it waits on
    // several channels), so walk such a list with waiting().
    tasklet queue() const { return tasklet::from_state(core_->head()); }
    // Every tasklet blocked on the channel, first to last (a tasklet in select once per case it
    // has on this channel).
    std::vector<tasklet> waiting() const {
        std::vector<tasklet> out;
        const int n = balance() < 0 ? -balance() : balance();
        detail::tasklet_header* e = core_->first_entry();
        for (int i = 0; i < n && e != nullptr; ++i, e = detail::channel_core::next_entry(e))
            out.push_back(tasklet::from_state(detail::channel_core::waiter_of(e)));
        return out;
    }

    // Range-for receives until the channel is closing and no sender is waiting.
    class iterator {
      public:
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using iterator_category = std::input_iterator_tag;

        explicit iterator(detail::channel_core* core) : core_(core) { advance(); }
        iterator() = default;
        T& operator*() { return *current_; }
        iterator& operator++() {
            advance();
            return *this;
        }
        void operator++(int) { advance(); }
        friend bool operator==(const iterator& a, const iterator& b) noexcept {
            return a.core_ == b.core_;
        }

      private:
        void advance() {
            current_.reset();
            if (core_->closing() && core_->balance() <= 0) {
                core_ = nullptr;
                return;
            }
            current_.emplace(receive_from(core_));
        }
        detail::channel_core* core_ = nullptr;
        std::optional<T> current_;
    };
    iterator begin() { return iterator(core_); }
    iterator end() { return iterator(); }

    friend bool operator==(const channel& a, const channel& b) noexcept {
        return a.core_ == b.core_;
    }

  private:
    friend struct detail::channel_handle_access;  // select.hpp
    explicit channel(detail::channel_core* core) noexcept : core_(core) { core_->retain(); }
    detail::channel_core* core_;
};

}  // namespace stackless
