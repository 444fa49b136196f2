// Storage for a value in flight between two tasklets. It lives in the tasklet's heap state, not
// on its stack: a blocked tasklet's stack may be copied out to the heap and its address reused,
// so no tasklet may ever point into another tasklet's stack.
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>

namespace stackless::detail {

class tempval {
  public:
    static constexpr std::size_t inline_size = 32;

    tempval() = default;
    tempval(const tempval&) = delete;
    tempval& operator=(const tempval&) = delete;
    ~tempval() { reset(); }

    bool empty() const noexcept { return ops_ == nullptr; }
    bool holds_exception() const noexcept { return ops_ == &exception_ops; }

    template <class T, class... Args>
    void emplace(Args&&... args) {
        reset();
        if constexpr (fits_inline<T>) {
            ::new (static_cast<void*>(buf_)) T(std::forward<Args>(args)...);
        } else {
            T* boxed = new T(std::forward<Args>(args)...);
            ::new (static_cast<void*>(buf_)) T*(boxed);
        }
        ops_ = &ops_for<T>;
    }

    void set_exception(std::exception_ptr e) noexcept {
        reset();
        ::new (static_cast<void*>(buf_)) std::exception_ptr(std::move(e));
        ops_ = &exception_ops;
    }

    // Moves the value out and leaves the slot empty. The caller knows it holds a T.
    template <class T>
    T take() {
        T* p;
        if constexpr (fits_inline<T>) {
            p = std::launder(reinterpret_cast<T*>(buf_));
        } else {
            p = *std::launder(reinterpret_cast<T**>(buf_));
        }
        T out(std::move(*p));
        if constexpr (fits_inline<T> && std::is_trivially_destructible_v<T>) {
            ops_ = nullptr;  // nothing to destroy
        } else {
            reset();
        }
        return out;
    }

    // The value, left in place. The caller knows it holds a T.
    template <class T>
    T& peek() noexcept {
        if constexpr (fits_inline<T>) {
            return *std::launder(reinterpret_cast<T*>(buf_));
        } else {
            return **std::launder(reinterpret_cast<T**>(buf_));
        }
    }

    std::exception_ptr take_exception() noexcept {
        auto* p = std::launder(reinterpret_cast<std::exception_ptr*>(buf_));
        std::exception_ptr out = std::move(*p);
        reset();
        return out;
    }

    // Moves what `other` holds (a value, an exception or nothing) here; `other` is left empty.
    void take_from(tempval& other) noexcept {
        reset();
        const ops* o = other.ops_;
        if (o == nullptr) return;
        if (o->relocate != nullptr)
            o->relocate(other.buf_, buf_);
        else
            std::memcpy(buf_, other.buf_, inline_size);
        ops_ = o;
        other.ops_ = nullptr;
    }

    void reset() noexcept {
        if (ops_ != nullptr) {
            const ops* o = ops_;
            ops_ = nullptr;
            if (o->destroy != nullptr) o->destroy(buf_);
        }
    }

  private:
    struct ops {
        void (*destroy)(void*) noexcept;
        // Moves the stored object to another buffer and ends it in this one (nullptr: copying
        // the bytes does that).
        void (*relocate)(void* from, void* to) noexcept;
    };

    template <class T>
    static constexpr bool fits_inline = sizeof(T) <= inline_size &&
                                        alignof(T) <= 16 && std::is_nothrow_move_constructible_v<T>;

    template <class T>
    static void destroy_value(void* p) noexcept {
        if constexpr (fits_inline<T>) {
            std::launder(reinterpret_cast<T*>(p))->~T();
        } else {
            delete *std::launder(reinterpret_cast<T**>(p));
        }
    }
    template <class T>
    static void relocate_value(void* from, void* to) noexcept {
        T* source = std::launder(reinterpret_cast<T*>(from));
        ::new (to) T(std::move(*source));
        source->~T();
    }
    static void relocate_exception(void* from, void* to) noexcept {
        relocate_value<std::exception_ptr>(from, to);
    }
    static void destroy_exception(void* p) noexcept {
        std::launder(reinterpret_cast<std::exception_ptr*>(p))->~exception_ptr();
    }

    // Boxed values relocate as their pointer; inline ones bytewise only if trivially copyable.
    template <class T>
    static constexpr ops ops_for{
        fits_inline<T> && std::is_trivially_destructible_v<T> ? nullptr : &destroy_value<T>,
        !fits_inline<T> || std::is_trivially_copyable_v<T> ? nullptr : &relocate_value<T>};
    static constexpr ops exception_ops{&destroy_exception, &relocate_exception};

    alignas(16) unsigned char buf_[inline_size];
    const ops* ops_ = nullptr;
};

}  // namespace stackless::detail
