// How a tasklet blocked in select() waits on several channels at once (docs/select.md).
//
// A channel's waiting list links tasklet states, and its partner paths (partner(), hand_over())
// complete whatever state is at its head. So a selecting tasklet puts one *proxy* per case on
// the channels in its place: a tasklet state from the pool, flagged is_select_proxy, that is
// never a tasklet (no handle refers to it, no scheduler lists it, it never runs). A proxy carries
// its case's value in its tempval (the value to send, or the value received), so partners move
// values in and out of it exactly as they do with a plain waiter's.
//
// The selecting tasklet is place::selecting and owns its proxies (chained by select_next from
// its own select_next). Whoever ends the wait takes every proxy still linked off its channel:
// the partner that pops one (complete), or unblock() for a kill, a throw, a timer or the
// thread's end (withdraw). The proxies are freed by the selecting tasklet itself once it runs
// again (free_all), so that values of cases that did not complete are destroyed in its own
// context, never in a partner's.
#pragma once

#include "tasklet_state.hpp"

namespace stackless::detail {

struct select_proxies {
    // A partner popped `proxy` from its channel (and exchanged the value with it): records its
    // case as the one completed and takes the other proxies off their channels. Returns the
    // selecting tasklet, still place::selecting, which the caller schedules.
    static tasklet_state* complete(tasklet_state* proxy) noexcept;
    // Takes every proxy of the selecting tasklet `owner` off its channel; `owner` is floating
    // then (place::none), its case index left at -1.
    static void withdraw(tasklet_state* owner) noexcept;
    // Frees the proxies of `owner` (none may be linked any more).
    static void free_all(tasklet_state* owner) noexcept;
    // What a waiting-list entry stands for: the selecting tasklet for a proxy, else the entry.
    // Keeps proxies from escaping as tasklet handles (channel::queue(), tasklet::next()).
    static tasklet_state* visible(tasklet_state* entry) noexcept {
        return entry != nullptr && entry->is_select_proxy ? entry->select_owner : entry;
    }
};

}  // namespace stackless::detail
