// A per-thread free list for tasklet states. Spawning a tasklet that does nothing costs little
// more than two allocations, and glibc's general allocator is slow for objects of this size when
// hundreds of thousands are alive at once. States are carved from chunks; a freed state goes to
// the free list of the thread that frees it. Chunks are kept for the life of the process (they
// stay reachable from a registry), which bounds the memory at the high-water mark of live states;
// a scheduler's thread hands its free list to the other threads when it ends.
#include <cstddef>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "tasklet_state.hpp"

namespace stackless::detail {

namespace {

struct free_state {
    free_state* next;
};

constexpr std::size_t states_per_chunk = 64;

__attribute__((tls_model("initial-exec"))) thread_local free_state* free_states = nullptr;

std::mutex& shared_mutex() {
    static std::mutex mu;
    return mu;
}
free_state* shared_free = nullptr;  // lists donated by ended threads; guarded by shared_mutex()

std::vector<void*>& chunks() {
    static auto* all = new std::vector<void*>;  // intentionally never destroyed
    return *all;
}

void register_chunk(void* chunk) {
    std::lock_guard lock(shared_mutex());
    chunks().push_back(chunk);
}

// Takes up to a chunk's worth of donated states, not all of them: a thread that starts while
// another is still ending finds the list short and makes a chunk, and if it took everything each
// time, that would add a chunk to the states in circulation at every such overlap, without bound.
free_state* take_shared() {
    std::lock_guard lock(shared_mutex());
    free_state* batch = shared_free;
    if (batch == nullptr) return nullptr;
    free_state* last = batch;
    for (std::size_t n = 1; n < states_per_chunk && last->next != nullptr; ++n) last = last->next;
    shared_free = last->next;
    last->next = nullptr;
    return batch;
}

}  // namespace

std::size_t state_chunks() noexcept {
    std::lock_guard lock(shared_mutex());
    return chunks().size();
}

void donate_free_states() noexcept {
    free_state* list = std::exchange(free_states, nullptr);
    if (list == nullptr) return;
    free_state* last = list;
    while (last->next != nullptr) last = last->next;
    std::lock_guard lock(shared_mutex());
    last->next = shared_free;
    shared_free = list;
}

void* tasklet_state::operator new(std::size_t size) {
    if (free_state* f = free_states) [[likely]] {
        free_states = f->next;
        return f;
    }
    if (free_state* donated = take_shared()) {
        free_states = donated->next;
        return donated;
    }
    constexpr std::size_t stride = (sizeof(tasklet_state) + 63) / 64 * 64;
    static_assert(alignof(tasklet_state) <= 64);
    if (size != sizeof(tasklet_state)) throw std::bad_alloc();
    auto* chunk =
        static_cast<unsigned char*>(::operator new(stride* states_per_chunk, std::align_val_t(64)));
    register_chunk(chunk);
    for (std::size_t i = states_per_chunk - 1; i > 0; --i) {
        auto* f = reinterpret_cast<free_state*>(chunk + i * stride);
        f->next = free_states;
        free_states = f;
    }
    return chunk;
}

void tasklet_state::operator delete(void* p) noexcept {
    auto* f = static_cast<free_state*>(p);
    f->next = free_states;
    free_states = f;
}

}  // namespace stackless::detail
