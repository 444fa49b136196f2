// A tasklet's frames start in its own small root chunk; deeper frames spill into chunks that
// CPython 3.11 allocates through the object arena allocator (_PyObject_VirtualAlloc: an mmap of
// DATA_STACK_CHUNK_SIZE, 16 KiB) and frees as soon as the frame that opened them returns. A loop
// that calls across that boundary would map and unmap memory on every call (17 times slower in a
// measured case), so freed chunks of that size are kept on a short free list and handed out
// again. Relies on CPython 3.11 allocating frame chunks of 16 KiB through
// PyObject_GetArenaAllocator's functions (Python/pystate.c: allocate_chunk); other sizes, and
// pymalloc's own arenas, go to the allocator that was there before.
#include "chunk_cache.hpp"

#include <Python.h>

#include <cstddef>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "stackless: this binding supports CPython 3.11 only"
#endif

namespace stackless::python {

namespace {

constexpr std::size_t chunk_size = 16 * 1024;  // CPython 3.11's DATA_STACK_CHUNK_SIZE
constexpr int cached_max = 64;                 // at most 1 MiB kept

PyObjectArenaAllocator previous;
void* cached[cached_max];
int cached_count = 0;  // guarded by the GIL, like every arena allocation
unsigned long long hits = 0;

void* cached_alloc(void*, std::size_t size) {
    if (size == chunk_size && cached_count > 0) {
        ++hits;
        return cached[--cached_count];
    }
    return previous.alloc(previous.ctx, size);
}

void cached_free(void*, void* p, std::size_t size) {
    if (size == chunk_size && cached_count < cached_max) {
        cached[cached_count++] = p;
        return;
    }
    previous.free(previous.ctx, p, size);
}

}  // namespace

unsigned long long chunk_cache_hits() noexcept {
    return hits;
}

void install_chunk_cache() noexcept {
    static bool installed = false;
    if (installed) return;
    installed = true;
    PyObject_GetArenaAllocator(&previous);
    PyObjectArenaAllocator ours{nullptr, &cached_alloc, &cached_free};
    PyObject_SetArenaAllocator(&ours);
}

}  // namespace stackless::python
