#include "stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <new>

#include "sanitizer.hpp"
#include "stackless/errors.hpp"
#include "tasklet_state.hpp"

namespace stackless::detail {

namespace {

struct mapped_slot : stack_slot {
    std::size_t map_size = 0;
    unsigned valgrind_id = 0;
};

}  // namespace

stack_pool::stack_pool(std::size_t stack_size, std::size_t slot_count, std::size_t max_slots,
                       std::size_t runnable_slots)
    : slot_limit_(slot_count),
      slot_max_(max_slots),
      runnable_max_(runnable_slots < max_slots ? runnable_slots : max_slots),
      page_(static_cast<std::size_t>(sysconf(_SC_PAGESIZE))) {
    if (slot_count < 2) throw error("stack_slots must be at least 2");
    if (max_slots < slot_count) throw error("max_stack_slots must be at least stack_slots");
    stack_size_ = (stack_size + page_ - 1) / page_ * page_;
    if (stack_size_ < 4 * page_) throw error("stack_size must be at least 4 pages");
    slots_.reserve(max_slots);
    free_.reserve(max_slots);
}

stack_pool::~stack_pool() {
    for (stack_slot* s : slots_) {
        auto* m = static_cast<mapped_slot*>(s);
        sanitizer::deregister_stack(m->valgrind_id);
        // Frames that never returned (tasklets that ended or were dropped) leave ASan's shadow
        // poisoned; a thread stack mapped here later (its TLS included) would inherit it.
        sanitizer::unpoison(m->base, stack_size_);
        munmap(m->base - page_, m->map_size);
        delete m;
    }
}

stack_slot* stack_pool::map_slot() {
    std::size_t size = stack_size_ + page_;
    // MAP_NORESERVE: only the pages a tasklet touches become resident.
    void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    // The guard page below the stack turns an overflow into a fault instead of corruption.
    if (mprotect(mem, page_, PROT_NONE) != 0) {
        munmap(mem, size);
        throw std::bad_alloc();
    }
    auto* m = new mapped_slot;
    m->base = static_cast<unsigned char*>(mem) + page_;
    // Stagger the tops: stacks whose hot frames sit at the same offset within a page compete
    // for the same L1 cache sets and stall loads on 4K aliasing when switching between them.
    std::size_t color = (slots_.size() * 5 % 32) * 128;
    m->top = m->base + stack_size_ - color;
    m->map_size = size;
    m->valgrind_id = sanitizer::register_stack(m->base, m->top);
    slots_.push_back(m);
    return m;
}

stack_slot* stack_pool::take_free() {
    while (!free_.empty()) {
        stack_slot* s = free_.back();
        free_.pop_back();
        s->listed_free = false;
        if (s->owner == nullptr) return s;  // else a saved stack moved back in meanwhile
    }
    if (slots_.size() < slot_limit_) return map_slot();
    return nullptr;
}

stack_slot* stack_pool::pick_idle(const stack_slot* avoid) noexcept {
    return probe_first(idle_hand_, window(), avoid, idle_probes,
                       [](stack_slot* s) { return s->owner->where != place::ring; });
}

stack_slot* stack_pool::pick_overflow(const stack_slot* avoid) noexcept {
    // There are at least two slots (the constructor's minimum), so one of two consecutive ones
    // in the window is not `avoid`. One without an owner is free for the taking as it is.
    const std::size_t n = window();
    for (;;) {
        stack_slot* s = slots_[overflow_hand_ % n];
        ++overflow_hand_;
        if (s != avoid) return s;
    }
}

stack_slot* stack_pool::map_extra() {
    return slots_.size() < slot_max_ ? map_slot() : nullptr;
}

void stack_pool::save(tasklet_state* t) {
    stack_slot* s = t->slot;
    auto* sp = static_cast<unsigned char*>(t->ctx);
    auto size = static_cast<std::size_t>(s->top - sp);
    if (t->saved == nullptr || t->saved_capacity < size) {
        std::free(t->saved);
        t->saved = static_cast<unsigned char*>(std::malloc(size));
        t->saved_capacity = static_cast<std::uint32_t>(size);
        if (t->saved == nullptr) {
            t->saved_capacity = 0;
            throw std::bad_alloc();
        }
    }
    sanitizer::copy_stack(t->saved, sp, size);
    t->saved_size = static_cast<std::uint32_t>(size);
    t->resident = false;
    s->owner = nullptr;
}

void stack_pool::restore(tasklet_state* t) noexcept {
    stack_slot* s = t->slot;
    unsigned char* sp = s->top - t->saved_size;
    sanitizer::unpoison(sp, t->saved_size);
    // For ASan, below the restored frames too: the shadow left there by a previous occupant's
    // deeper frames (which never returned) is stale, and the ASan runtime's own uninstrumented
    // frames read it (__asan_handle_no_return's sigaltstack call, when the restored tasklet
    // throws, reported a stack-buffer-overflow).
    sanitizer::unpoison_shadow(s->base, static_cast<std::size_t>(sp - s->base));
    sanitizer::copy_stack(sp, t->saved, t->saved_size);
    t->saved_size = 0;  // the buffer stays for the next save
    t->resident = true;
    s->owner = t;
}

void stack_pool::drop_saved(tasklet_state* t) noexcept {
    if (t->saved == nullptr) return;  // (the common case of a dropped stack: nothing saved)
    std::free(t->saved);
    t->saved = nullptr;
    t->saved_size = 0;
    t->saved_capacity = 0;
}

}  // namespace stackless::detail
