// Waiting for file descriptors: the current tasklet waits until an fd is readable or writable
// while the others run; when no tasklet is runnable the thread sleeps in epoll_wait. Each thread
// has its own loop (created on first use), shared by every tasklet of the thread.
//
// The fd must be non-blocking. Readiness is reported by edges, as Go's and Tokio's loops do: a
// wait returns when the fd became ready since the previous wait for the same direction returned,
// so wait only after an operation said EAGAIN (or read less than asked): data that was already
// there and not read does not wake a later wait. The socket classes of stackless/net.hpp follow
// this rule for you. One state is not an edge: once a socket's peer has ended its stream (or
// reset the connection), every wait for reading returns at once.
#pragma once

#include "stackless/time.hpp"

namespace stackless {

// True when fd may be read (or written) without blocking, or has an error or hung up; false when
// `until` passed first. Raises io_error (EBADF) if the fd is not valid or is closed with
// close_fd() while the tasklet waits, and stackless::error if another tasklet of this thread
// already waits on it in the same direction. Regular files count as always ready.
bool wait_readable(int fd, deadline until = {});
bool wait_writable(int fd, deadline until = {});

// Closes an fd: tasklets waiting on it are woken with io_error (EBADF), and the thread's loop
// forgets it. Use it (or forget_fd() before your own close()) for every fd a tasklet has waited
// on: the loop keeps fds registered between waits, and would not notice a number reused by a
// new fd otherwise.
void close_fd(int fd);
// Takes fd out of this thread's loop without closing it (tasklets waiting on it are woken with
// io_error, EBADF). For fds handed to other code, or closed by other means.
void forget_fd(int fd);

}  // namespace stackless
