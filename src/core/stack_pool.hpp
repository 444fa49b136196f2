// Stack slots. A started tasklet keeps its stack at fixed addresses in its home slot, because a
// stack holds pointers into itself. Slots are shared: when a tasklet needs its slot and another
// suspended tasklet occupies it, the occupant's used part is copied to the heap and copied back
// when it runs again. With more slots than active tasklets nothing is copied at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace stackless::detail {

struct tasklet_state;

struct stack_slot {
    unsigned char* base = nullptr;   // lowest usable byte; the guard page is below it
    unsigned char* top = nullptr;    // one past the highest byte; stacks grow down
    tasklet_state* owner = nullptr;  // whose stack is in the slot now
    bool listed_free = false;        // in the pool's free list (which may hold it while owned)
};

class stack_pool {
  public:
    stack_pool(std::size_t stack_size, std::size_t slot_count, std::size_t max_slots,
               std::size_t runnable_slots);
    ~stack_pool();
    stack_pool(const stack_pool&) = delete;
    stack_pool& operator=(const stack_pool&) = delete;

    std::size_t stack_size() const noexcept { return stack_size_; }
    std::size_t slots_mapped() const noexcept { return slots_.size(); }

    // A slot nobody owns, mapping a new one if the limit allows; nullptr if none.
    stack_slot* take_free();
    // A slot whose owner ended. A tasklet whose stack was saved from that slot earlier may
    // reoccupy it before anyone takes it from the free list, so the list is checked lazily.
    void give_back(stack_slot* slot) noexcept {  // never allocates: reserved for every slot
        if (!slot->listed_free) {
            slot->listed_free = true;
            free_.push_back(slot);
        }
    }
    // A slot other than `avoid` whose owner waits (is not in the run queue, so will not run
    // soon), to be saved; nullptr if none was found. Looks at a few slots of the window that
    // pick_overflow copies through, round-robin, not at all of them: with thousands of slots all
    // holding runnable tasklets, a full scan per new tasklet made starting k tasklets cost
    // O(k x slots), and saving stacks through few slots keeps their memory in cache.
    stack_slot* pick_idle(const stack_slot* avoid) noexcept;
    // A slot other than `avoid` to be saved when every slot is taken and no more may be mapped:
    // from a small window of slots, round-robin. Once tasklets outnumber the slots, a switch
    // copies a stack out and one in whatever the slot; copying through a few slots keeps their
    // memory in cache, where cycling through thousands missed it at every switch.
    stack_slot* pick_overflow(const stack_slot* avoid) noexcept;
    // The next few owned slots other than `avoid`, round-robin, for a caller that looks for an
    // owner it can drop without copying (scheduler::try_discard).
    template <class F>
    stack_slot* probe(const stack_slot* avoid, std::size_t probes, F&& take) {
        return probe_first(probe_hand_, slots_.size(), avoid, probes, take);
    }
    static constexpr std::size_t idle_probes = 8;
    static constexpr std::size_t overflow_window = 16;
    // A new slot beyond the initial count, or nullptr at the maximum.
    stack_slot* map_extra();
    // The same, but only while fewer than runnable_slots are mapped.
    stack_slot* map_for_runnable() { return slots_.size() < runnable_max_ ? map_extra() : nullptr; }

    // Copies the owner's used stack [ctx, top) to the heap and frees the slot. The buffer is
    // kept across restores and reused when large enough.
    static void save(tasklet_state* t);
    // Copies a saved stack back into its home slot, which must be unowned.
    static void restore(tasklet_state* t) noexcept;
    // Frees a tasklet's saved-stack buffer.
    static void drop_saved(tasklet_state* t) noexcept;

  private:
    stack_slot* map_slot();
    std::size_t window() const noexcept {
        return slots_.size() < overflow_window ? slots_.size() : overflow_window;
    }
    // The first of `probes` owned slots among the first `n`, from `hand` on (which moves on),
    // other than `avoid`, that `take` accepts; nullptr if none.
    template <class F>
    stack_slot* probe_first(std::size_t& hand, std::size_t n, const stack_slot* avoid,
                            std::size_t probes, F&& take) {
        for (std::size_t tries = 0; tries < probes && tries < n; ++tries) {
            if (hand >= n) hand = 0;
            stack_slot* s = slots_[hand++];
            if (s != avoid && s->owner != nullptr && take(s)) return s;
        }
        return nullptr;
    }

    std::size_t stack_size_;
    std::size_t slot_limit_;
    std::size_t slot_max_;
    std::size_t runnable_max_;
    std::size_t page_;
    std::vector<stack_slot*> slots_;
    std::vector<stack_slot*> free_;
    std::size_t idle_hand_ = 0;
    std::size_t overflow_hand_ = 0;
    std::size_t probe_hand_ = 0;
};

}  // namespace stackless::detail
