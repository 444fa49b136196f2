// Type erasure for a tasklet's function and its arguments. Binding the function and binding the
// arguments may happen in two steps (Stackless's `t.bind(f); t.setup(args)`), so the function's
// box must be able to accept arguments whose types it only learns at run time.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace stackless::detail {

class callable {
  public:
    virtual ~callable() = default;
    // True when arguments are bound and the tasklet can run.
    virtual bool ready() const noexcept = 0;
    virtual void invoke() = 0;
    // A new box with the arguments (a std::tuple of decayed types, identified by `type`) bound.
    virtual std::unique_ptr<callable> with_args(const std::type_info& type, void* args) = 0;
};

// Parameter types of a callable whose signature is unambiguous (functions, function pointers,
// lambdas and functors with one non-template operator()).
template <class F, class = void>
struct parameters_of {
    static constexpr bool known = false;
};
template <class R, class... P>
struct parameters_of<R (*)(P...), void> {
    static constexpr bool known = true;
    using tuple = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct parameters_of<R (*)(P...) noexcept, void> : parameters_of<R (*)(P...)> {};
template <class M>
struct member_parameters {
    static constexpr bool known = false;
};
#define STACKLESS_MEMBER_PARAMETERS(QUALIFIERS)           \
    template <class R, class C, class... P>               \
    struct member_parameters<R (C::*)(P...) QUALIFIERS> { \
        static constexpr bool known = true;               \
        using tuple = std::tuple<std::decay_t<P>...>;     \
    };
STACKLESS_MEMBER_PARAMETERS()
STACKLESS_MEMBER_PARAMETERS(const)
STACKLESS_MEMBER_PARAMETERS(noexcept)
STACKLESS_MEMBER_PARAMETERS(const noexcept)
#undef STACKLESS_MEMBER_PARAMETERS
template <class F>
struct parameters_of<F, std::void_t<decltype(&F::operator())>>
    : member_parameters<decltype(&F::operator())> {};

// Whether F can be called with the elements of a tuple of arguments (not so for a parameter of
// type T& given a T).
template <class F, class Tuple>
struct applicable;
template <class F, class... A>
struct applicable<F, std::tuple<A...>> : std::is_invocable<F&, A&&...> {};

template <class F, class Args>
class bound_callable final : public callable {
  public:
    bound_callable(F f, Args args) : f_(std::move(f)), args_(std::move(args)) {}
    bool ready() const noexcept override { return true; }
    void invoke() override { std::apply(f_, std::move(args_)); }
    std::unique_ptr<callable> with_args(const std::type_info& type, void* args) override;

  private:
    F f_;
    Args args_;
};

template <class F>
class unbound_callable final : public callable {
  public:
    explicit unbound_callable(F f) : f_(std::move(f)) {}
    bool ready() const noexcept override { return false; }
    void invoke() override { throw std::logic_error("tasklet function invoked without arguments"); }
    std::unique_ptr<callable> with_args(const std::type_info& type, void* args) override {
        if constexpr (parameters_of<F>::known) {
            using tuple = typename parameters_of<F>::tuple;
            if constexpr (applicable<F, tuple>::value) {
                if (type == typeid(tuple)) {
                    return std::make_unique<bound_callable<F, tuple>>(
                        std::move(f_), std::move(*static_cast<tuple*>(args)));
                }
            }
        }
        if constexpr (std::is_invocable_v<F&>) {
            if (type == typeid(std::tuple<>)) {
                return std::make_unique<bound_callable<F, std::tuple<>>>(std::move(f_),
                                                                         std::tuple<>());
            }
        }
        throw std::invalid_argument(
            "tasklet::setup: the arguments' types do not match the bound function's parameters "
            "(two-step binding needs exact parameter types; use stackless::spawn(f, args...) "
            "for conversions)");
    }

  private:
    F f_;
};

template <class F, class Args>
std::unique_ptr<callable> bound_callable<F, Args>::with_args(const std::type_info& type,
                                                             void* args) {
    // Rebinding arguments of an already bound function: keep the function, replace the args.
    return unbound_callable<F>(std::move(f_)).with_args(type, args);
}

}  // namespace stackless::detail
