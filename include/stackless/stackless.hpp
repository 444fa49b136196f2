// Stackless's concurrency model for C++: tasklets, channels, a round-robin scheduler, and
// tasklets that wait on time and file descriptors.
#pragma once

#include "stackless/blocking.hpp"
#include "stackless/channel.hpp"
#include "stackless/errors.hpp"
#include "stackless/io.hpp"
#include "stackless/net.hpp"
#include "stackless/scheduler.hpp"
#include "stackless/select.hpp"
#include "stackless/tasklet.hpp"
#include "stackless/threads.hpp"
#include "stackless/time.hpp"
