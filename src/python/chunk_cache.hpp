// Keeps CPython's frame-stack chunks for reuse (chunk_cache.cpp).
#pragma once

namespace stackless::python {

// Installs the cache in CPython's arena allocator (call once, at module initialisation).
void install_chunk_cache() noexcept;
// How many chunk allocations the cache served (for tests).
unsigned long long chunk_cache_hits() noexcept;

}  // namespace stackless::python
