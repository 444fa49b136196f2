// What AddressSanitizer and valgrind need to be told about our stacks. Empty in normal builds.
//
// ASan keeps shadow state per stack address; since a slot's bytes are swapped between tasklets,
// the shadow of restored frames is stale, and so is the shadow below them (a previous occupant's
// deeper frames, which never returned): a slot is unpoisoned whole when a stack is restored into
// it (ASan then checks heap accesses fully and stack frames only for what their prologues
// re-poison). Stack switches are announced with the fiber-switch API so that ASan knows the
// current stack's bounds when an exception unwinds it.
#pragma once

#include <cstddef>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#define STACKLESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACKLESS_ASAN 1
#endif
#endif

#if STACKLESS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if __has_include(<valgrind/valgrind.h>) && __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define STACKLESS_VALGRIND 1
#endif

namespace stackless::detail::sanitizer {

// valgrind marks a stack's region below its stack pointer inaccessible when a tasklet there
// returns from deep calls; a saved stack copied back into that region is valid again. (A client
// request is a few no-op instructions outside valgrind.)
// Out of line: the request's argument block would otherwise enlarge the frame of the switch
// path, which every blocked tasklet's saved stack includes.
__attribute__((noinline)) inline void unpoison_for_valgrind(void* p, std::size_t n) noexcept {
#if STACKLESS_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#else
    (void)p;
    (void)n;
#endif
}

// Asked once: a fresh stack is unpoisoned at every soft switch (scheduler::transfer_slow), and
// the request's instructions cost a few nanoseconds there even outside valgrind.
#if STACKLESS_VALGRIND
inline bool ask_valgrind() noexcept {
    return RUNNING_ON_VALGRIND != 0;
}
inline const bool running_on_valgrind = ask_valgrind();
#else
inline constexpr bool running_on_valgrind = false;
#endif

// Copies stack bytes without instrumentation: another tasklet's frames carry poisoned redzones.
#if STACKLESS_ASAN
__attribute__((no_sanitize("address"))) inline void copy_stack(void* dst, const void* src,
                                                               std::size_t n) noexcept {
    // A volatile loop, so the compiler does not turn it into an (intercepted) memcpy call.
    auto* d = static_cast<volatile unsigned char*>(dst);
    auto* s = static_cast<const volatile unsigned char*>(src);
    for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
}
inline void unpoison(void* p, std::size_t n) noexcept {
    ASAN_UNPOISON_MEMORY_REGION(p, n);
}
// ASan's shadow only (valgrind is not told anything): for the stack we are running on, and for
// the part of a slot below a restored stack.
inline void unpoison_shadow(void* p, std::size_t n) noexcept {
    ASAN_UNPOISON_MEMORY_REGION(p, n);
}
inline void start_switch(void** fake, const void* bottom, std::size_t size) noexcept {
    __sanitizer_start_switch_fiber(fake, bottom, size);
}
inline void finish_switch(void* fake, const void** bottom, std::size_t* size) noexcept {
    __sanitizer_finish_switch_fiber(fake, bottom, size);
}
#else
inline void copy_stack(void* dst, const void* src, std::size_t n) noexcept {
    std::memcpy(dst, src, n);
}
inline void unpoison(void* p, std::size_t n) noexcept {
    if (running_on_valgrind) unpoison_for_valgrind(p, n);
}
inline void unpoison_shadow(void*, std::size_t) noexcept {}
inline void start_switch(void**, const void*, std::size_t) noexcept {}
inline void finish_switch(void*, const void**, std::size_t*) noexcept {}
#endif

inline unsigned register_stack(void* base, void* top) noexcept {
#if STACKLESS_VALGRIND
    return VALGRIND_STACK_REGISTER(base, top);
#else
    (void)base;
    (void)top;
    return 0;
#endif
}
inline void deregister_stack(unsigned id) noexcept {
#if STACKLESS_VALGRIND
    VALGRIND_STACK_DEREGISTER(id);
#else
    (void)id;
#endif
}

}  // namespace stackless::detail::sanitizer
