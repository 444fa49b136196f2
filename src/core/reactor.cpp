#include "reactor.hpp"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "scheduler.hpp"
#include "stackless/errors.hpp"

namespace stackless::detail {

namespace {

// Events taken per epoll_wait: enough that a busy server's ready connections come in few calls.
constexpr int max_events = 512;

constexpr std::uint32_t read_events = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr std::uint32_t write_events = EPOLLOUT | EPOLLHUP | EPOLLERR;

}  // namespace

reactor::reactor(scheduler& owner) : owner_(owner) {}

reactor::~reactor() {
    if (event_fd_ >= 0) ::close(event_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

std::int64_t reactor::now_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // (std::chrono::steady_clock's clock on Linux)
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---------------------------------------------------------------------------------------------
// Timers

void reactor::add_timer(tasklet_state* t, std::int64_t when) {
    t->timer = timers_.add(when, t);
}

void reactor::cancel_timer(tasklet_state* t) noexcept {
    if (t->timer == timer_heap::none) return;
    timers_.cancel(t->timer);
    t->timer = timer_heap::none;
}

void reactor::fire_due_timers(std::int64_t now) {
    while (tasklet_state* t = timers_.pop_due(now)) {
        t->timer = timer_heap::none;
        wake(t, wait_result::timeout);
    }
}

// ---------------------------------------------------------------------------------------------
// File descriptors

void reactor::ensure_epoll() {
    if (epoll_fd_ >= 0) return;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) throw io_error(errno, "epoll_create1");
    int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ev < 0) {
        int e = errno;
        ::close(ep);
        throw io_error(e, "eventfd");
    }
    epoll_event add{};
    add.events = EPOLLIN;
    add.data.fd = ev;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &add) < 0) {
        int e = errno;
        ::close(ev);
        ::close(ep);
        throw io_error(e, "epoll_ctl");
    }
    epoll_fd_ = ep;
    event_fd_ = ev;
    events_.resize(sizeof(epoll_event) * max_events);
}

reactor::fd_entry& reactor::entry(int fd) {
    if (fd < 0) throw io_error(EBADF, "wait on a file descriptor", "invalid file descriptor");
    if (static_cast<std::size_t>(fd) >= fds_.size())
        fds_.resize(std::max<std::size_t>(static_cast<std::size_t>(fd) + 1, fds_.size() * 2));
    return fds_[static_cast<std::size_t>(fd)];
}

void reactor::register_fd(int fd, fd_entry& e) {
    ensure_epoll();
    if (fd == event_fd_ || fd == epoll_fd_)
        throw io_error(EINVAL, "wait on a file descriptor", "the fd is the event loop's own");
    epoll_event add{};
    // Edge-triggered, both directions at once: the fd stays registered between waits, so a
    // wait costs no system call of its own.
    add.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    add.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &add) < 0) {
        if (errno == EPERM) {  // regular files and directories: never block
            e.always_ready = true;
        } else if (errno != EEXIST) {
            throw io_error(errno, "epoll_ctl");
        }
    }
    e.registered = true;
}

bool reactor::take_readiness(int fd, bool write) {
    fd_entry& e = entry(fd);
    if (!e.registered) register_fd(fd, e);
    if (e.always_ready || (!write && e.read_hung_up)) return true;
    bool& ready = write ? e.writable : e.readable;
    if (!ready) return false;
    ready = false;
    return true;
}

void reactor::add_fd_wait(tasklet_state* t, int fd, bool write) {
    fd_entry& e = entry(fd);
    tasklet_state*& slot = write ? e.writer : e.reader;
    if (slot != nullptr)
        throw error(write ? "wait_writable: another tasklet of this thread waits on this fd"
                          : "wait_readable: another tasklet of this thread waits on this fd");
    slot = t;
    t->wait_fd = fd;
    t->wait_write = write;
    ++fd_waiters_;
}

void reactor::cancel_fd_wait(tasklet_state* t) noexcept {
    if (t->wait_fd < 0) return;
    fd_entry& e = fds_[static_cast<std::size_t>(t->wait_fd)];
    tasklet_state*& slot = t->wait_write ? e.writer : e.reader;
    if (slot == t) slot = nullptr;
    t->wait_fd = -1;
    --fd_waiters_;
}

void reactor::forget(int fd) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
    fd_entry& e = fds_[static_cast<std::size_t>(fd)];
    if (e.registered && !e.always_ready) {
        epoll_event none{};
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &none);  // (fails harmlessly if already closed)
    }
    if (e.reader != nullptr) wake(e.reader, wait_result::closed);
    if (e.writer != nullptr) wake(e.writer, wait_result::closed);
    e = fd_entry{};
}

// ---------------------------------------------------------------------------------------------
// Polling

void reactor::wake(tasklet_state* t, wait_result why) noexcept {
    cancel_timer(t);
    cancel_fd_wait(t);
    if (owner_.wake_from_reactor(t, why)) ++woken_;
}

void reactor::dispatch(int ready_count) {
    auto* events = reinterpret_cast<epoll_event*>(events_.data());
    for (int i = 0; i < ready_count; ++i) {
        const int fd = events[i].data.fd;
        const std::uint32_t what = events[i].events;
        if (fd == event_fd_) {
            std::uint64_t count;
            while (::read(event_fd_, &count, sizeof count) > 0) {
            }
            continue;
        }
        if (static_cast<std::size_t>(fd) >= fds_.size()) continue;
        fd_entry& e = fds_[static_cast<std::size_t>(fd)];
        if (!e.registered) continue;  // forgotten since epoll reported it
        if (what & read_events) {
            if (what & EPOLLRDHUP) e.read_hung_up = true;
            if (e.reader != nullptr)
                wake(e.reader, wait_result::ready);
            else
                e.readable = true;
        }
        if (what & write_events) {
            if (e.writer != nullptr)
                wake(e.writer, wait_result::ready);
            else
                e.writable = true;
        }
    }
}

std::size_t reactor::poll(std::int64_t timeout_ns, bool may_sleep) {
    woken_ = 0;
    std::int64_t now = now_ns();
    fire_due_timers(now);
    if (woken_ > 0) timeout_ns = 0;
    if (timeout_ns != 0) {
        const std::int64_t earliest = timers_.earliest();
        if (earliest != timer_heap::never) {
            const std::int64_t until = earliest - now;
            if (timeout_ns < 0 || until < timeout_ns) timeout_ns = until < 0 ? 0 : until;
        }
    }
    if (timeout_ns == 0 && (epoll_fd_ < 0 || fd_waiters_ == 0)) return woken_;
    ensure_epoll();
    const bool sleep = may_sleep && timeout_ns != 0 && owner_.begin_reactor_sleep();
    if (!sleep) timeout_ns = 0;
    timespec limit{};
    if (timeout_ns > 0) {
        limit.tv_sec = timeout_ns / 1'000'000'000;
        limit.tv_nsec = timeout_ns % 1'000'000'000;
    }
    auto* events = reinterpret_cast<epoll_event*>(events_.data());
    static std::atomic<bool> no_pwait2{false};
    int n = -1;
    errno = ENOSYS;
    if (!no_pwait2.load(std::memory_order_relaxed))
        n = epoll_pwait2(epoll_fd_, events, max_events, timeout_ns < 0 ? nullptr : &limit, nullptr);
    if (n < 0 && errno == ENOSYS) {
        no_pwait2.store(true, std::memory_order_relaxed);
        // Kernels before 5.11 lack nanosecond timeouts: whole milliseconds, rounded up, so that a
        // timer never fires early.
        const std::int64_t ms = timeout_ns < 0 ? -1 : (timeout_ns + 999'999) / 1'000'000;
        n = epoll_wait(epoll_fd_, events, max_events,
                       static_cast<int>(std::min<std::int64_t>(ms, INT32_MAX)));
    }
    const int wait_errno = errno;
    if (sleep) {
        try {
            owner_.end_reactor_sleep();  // may raise (a signal, from the binding)
        } catch (...) {
            if (n > 0) dispatch(n);  // edges are reported once: never drop them
            throw;
        }
    }
    if (n < 0 && wait_errno != EINTR) throw io_error(wait_errno, "epoll_wait");
    if (n > 0) dispatch(n);
    last_epoll_ns_ = now_ns();
    fire_due_timers(last_epoll_ns_);
    return woken_;
}

void reactor::poll_while_busy() {
    const std::int64_t now = now_ns();
    woken_ = 0;
    fire_due_timers(now);
    if (epoll_fd_ >= 0 && fd_waiters_ > 0 && now - last_epoll_ns_ >= busy_epoll_period_ns) {
        int n =
            epoll_wait(epoll_fd_, reinterpret_cast<epoll_event*>(events_.data()), max_events, 0);
        if (n > 0) dispatch(n);
        last_epoll_ns_ = now;
    }
}

void reactor::wake_from_other_thread() noexcept {
    if (!sleeping_ || event_fd_ < 0) return;
    const std::uint64_t one = 1;
    ssize_t written = ::write(event_fd_, &one, sizeof one);
    (void)written;  // (EAGAIN: the counter is full, so a wake-up is pending anyway)
}

}  // namespace stackless::detail
