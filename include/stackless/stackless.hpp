// Stackless's concurrency model for C++: tasklets, channels and a round-robin scheduler.
#pragma once

#include "stackless/channel.hpp"
#include "stackless/errors.hpp"
#include "stackless/scheduler.hpp"
#include "stackless/tasklet.hpp"
#include "stackless/threads.hpp"
