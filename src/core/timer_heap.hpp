// Pending deadlines of one scheduler, earliest first.
//
// A 4-ary min-heap of (deadline, sequence) entries that point into a slab of nodes; a node names
// what waits (a tasklet). Cancelling clears the node and leaves its entry in the heap, where it
// is dropped when it surfaces, or all at once when cancelled entries outnumber the live ones (a
// receive with a long timeout that its sender usually beats cancels nearly every timer it
// sets). So add and cancel never move other entries' owners, and the heap's sift loops touch
// only the heap's own contiguous array, never the tasklets: that matters with a million
// sleepers, whose states are scattered in memory. The sequence number makes equal deadlines
// fire in the order they were set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace stackless::detail {

struct tasklet_state;

class timer_heap {
  public:
    using id = std::uint32_t;
    static constexpr id none = std::numeric_limits<id>::max();
    static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();

    // Adds a timer for `who` at `when` (nanoseconds of the steady clock); returns its id, which
    // stays valid until the timer fires or is cancelled.
    id add(std::int64_t when, tasklet_state* who) {
        id node;
        if (free_nodes_.empty()) {
            node = static_cast<id>(nodes_.size());
            nodes_.push_back(who);
            free_nodes_.reserve(nodes_.capacity());  // release() and compact() cannot fail
        } else {
            node = free_nodes_.back();
            free_nodes_.pop_back();
            nodes_[node] = who;
        }
        heap_.push_back({when, next_sequence_++, node});
        sift_up(heap_.size() - 1);
        ++live_;
        return node;
    }

    // The timer will not fire. Its entry stays until it surfaces or the heap is compacted.
    void cancel(id node) noexcept {
        nodes_[node] = nullptr;
        --live_;
        if (heap_.size() > 2 * live_ + compact_floor) compact();
    }

    std::size_t live() const noexcept { return live_; }

    // The earliest live deadline, or `never`.
    std::int64_t earliest() noexcept {
        drop_cancelled_top();
        return heap_.empty() ? never : heap_.front().when;
    }

    // The owner of the earliest live timer if it is due at `now` (the timer is gone then), else
    // nullptr.
    tasklet_state* pop_due(std::int64_t now) noexcept {
        drop_cancelled_top();
        if (heap_.empty() || heap_.front().when > now) return nullptr;
        const id node = heap_.front().node;
        tasklet_state* who = nodes_[node];
        release(node);
        pop_top();
        --live_;
        return who;
    }

  private:
    struct entry {
        std::int64_t when;
        std::uint64_t sequence;
        id node;
    };
    static constexpr std::size_t arity = 4;
    static constexpr std::size_t compact_floor = 1024;

    static bool earlier(const entry& a, const entry& b) noexcept {
        return a.when != b.when ? a.when < b.when : a.sequence < b.sequence;
    }

    void release(id node) noexcept {
        nodes_[node] = nullptr;
        free_nodes_.push_back(node);
    }

    void drop_cancelled_top() noexcept {
        while (!heap_.empty() && nodes_[heap_.front().node] == nullptr) {
            release(heap_.front().node);
            pop_top();
        }
    }

    void pop_top() noexcept {
        heap_.front() = heap_.back();
        heap_.pop_back();
        if (!heap_.empty()) sift_down(0);
    }

    void sift_up(std::size_t i) noexcept {
        entry moving = heap_[i];
        while (i > 0) {
            std::size_t parent = (i - 1) / arity;
            if (!earlier(moving, heap_[parent])) break;
            heap_[i] = heap_[parent];
            i = parent;
        }
        heap_[i] = moving;
    }

    void sift_down(std::size_t i) noexcept {
        const std::size_t n = heap_.size();
        entry moving = heap_[i];
        for (;;) {
            std::size_t first = i * arity + 1;
            if (first >= n) break;
            std::size_t best = first;
            const std::size_t last = first + arity < n ? first + arity : n;
            for (std::size_t c = first + 1; c < last; ++c)
                if (earlier(heap_[c], heap_[best])) best = c;
            if (!earlier(heap_[best], moving)) break;
            heap_[i] = heap_[best];
            i = best;
        }
        heap_[i] = moving;
    }

    // Drops every cancelled entry and restores the heap order: O(entries).
    void compact() noexcept {
        std::size_t kept = 0;
        for (const entry& e : heap_) {
            if (nodes_[e.node] != nullptr)
                heap_[kept++] = e;
            else
                free_nodes_.push_back(e.node);
        }
        heap_.resize(kept);
        for (std::size_t i = kept / arity + 1; i-- > 0;)
            if (i < kept) sift_down(i);
    }

    std::vector<entry> heap_;
    std::vector<tasklet_state*> nodes_;  // nullptr: free or cancelled
    std::vector<id> free_nodes_;
    std::uint64_t next_sequence_ = 0;
    std::size_t live_ = 0;
};

}  // namespace stackless::detail
