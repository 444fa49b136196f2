// select: the fairness of the choice among ready cases (statistically, with a fixed seed), and
// many tasklets selecting at random over shared sets of channels, every value delivered exactly
// once.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <random>
#include <utility>
#include <vector>

#include "stackless/stackless.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using namespace stackless;
using stackless_test::expect_idle_scheduler;
using stackless_test::in_fresh_thread;

namespace {

// Tasklets that keep a sender waiting on `ch` (until killed).
tasklet keep_sending(channel<int>& ch, int value) {
    return spawn([&ch, value] {
        for (;;) ch.send(value);
    });
}

TEST(SelectFairness, TwoAlwaysReadyCasesAreChosenAboutEquallyOften) {
    in_fresh_thread([] {
        seed_select(20261207);
        channel<int> a, b, never;
        tasklet sa = keep_sending(a, 0), sb = keep_sending(b, 1);
        schedule();  // both senders wait
        constexpr int selects = 10'000;
        std::array<int, 3> chosen{};
        for (int i = 0; i < selects; ++i) {
            const int index = stackless::select(on_receive(a), on_receive(never), on_receive(b));
            ++chosen[static_cast<std::size_t>(index)];
            schedule();  // the sender served sends again
        }
        EXPECT_EQ(chosen[1], 0);  // never ready
        EXPECT_GE(chosen[0], selects * 45 / 100);
        EXPECT_LE(chosen[0], selects * 55 / 100);
        EXPECT_EQ(chosen[0] + chosen[2], selects);
        sa.kill();
        sb.kill();
        EXPECT_EQ(a.balance(), 0);
        EXPECT_EQ(b.balance(), 0);
        EXPECT_EQ(never.balance(), 0);
        expect_idle_scheduler();
    });
}

TEST(SelectFairness, ThreeReadyCasesAndTheSeedMakesTheChoicesReproducible) {
    auto choices = [](std::uint64_t seed) {
        std::vector<int> out;
        in_fresh_thread([&] {
            seed_select(seed);
            channel<int> a, b, c;
            tasklet sa = keep_sending(a, 0), sb = keep_sending(b, 1), sc = keep_sending(c, 2);
            schedule();
            for (int i = 0; i < 3'000; ++i) {
                int got = -1;
                auto take = [&](int v) { got = v; };
                const int index = stackless::select(on_receive(a, take), on_receive(b, take),
                                                    on_receive(c, take));
                EXPECT_EQ(got, index);  // the value of the case that completed
                out.push_back(index);
                schedule();
            }
            sa.kill();
            sb.kill();
            sc.kill();
        });
        return out;
    };
    const std::vector<int> first = choices(7), again = choices(7), other = choices(8);
    EXPECT_EQ(first, again);
    EXPECT_NE(first, other);
    std::array<int, 3> chosen{};
    for (int index : first) ++chosen[static_cast<std::size_t>(index)];
    for (int n : chosen) {
        EXPECT_GE(n, 3'000 * 28 / 100);
        EXPECT_LE(n, 3'000 * 39 / 100);
    }
}

// --- Many tasklets

constexpr std::size_t channels_per_group = 8;
using channel_group = std::array<channel<int>, channels_per_group>;

// A select with one case per channel of the group: receives (into `got`) or sends `value`.
template <std::size_t... I>
int receive_from_any(channel_group& g, std::vector<int>& got, std::index_sequence<I...>) {
    auto record = [&got](int v) { ++got[static_cast<std::size_t>(v)]; };
    return stackless::select(on_receive(g[I], record)...);
}
template <std::size_t... I>
int send_to_any(channel_group& g, int value, std::index_sequence<I...>) {
    return stackless::select(on_send(g[I], value)...);
}

// One to three distinct channels of the group, at random.
std::array<std::size_t, 3> pick_channels(std::mt19937& random) {
    std::array<std::size_t, channels_per_group> order{};
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), random);
    return {order[0], order[1], order[2]};
}

// Sends `value` on one of 1-3 random channels of the group: a plain send, a select, or (when
// `may_time_out`) selects with short deadlines tried again until one completes.
void send_somewhere(channel_group& g, int value, std::mt19937& random, bool may_time_out) {
    const auto [x, y, z] = pick_channels(random);
    const int ways = std::uniform_int_distribution<int>(0, 3)(random);
    if (ways == 0) return g[x].send(value);
    if (ways == 1) return (void)stackless::select(on_send(g[x], value), on_send(g[y], value));
    if (ways == 2 || !may_time_out)
        return (void)stackless::select(on_send(g[x], value), on_send(g[y], value),
                                       on_send(g[z], value));
    const auto patience =
        std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(random));
    while (select_until(patience, on_send(g[x], value), on_send(g[y], value)) == no_case_ready) {
    }
}

// Receives one value from one of 1-3 random channels of the group, as send_somewhere sends.
void receive_somewhere(channel_group& g, std::vector<int>& got, std::mt19937& random) {
    const auto [x, y, z] = pick_channels(random);
    auto record = [&got](int v) { ++got[static_cast<std::size_t>(v)]; };
    switch (std::uniform_int_distribution<int>(0, 2)(random)) {
        case 0:
            return record(g[x].receive());
        case 1:
            return (void)stackless::select(on_receive(g[x], record), on_receive(g[y], record));
        default:
            return (void)stackless::select(on_receive(g[x], record), on_receive(g[y], record),
                                           on_receive(g[z], record));
    }
}

// Two groups of channels, each with senders and receivers. In group A the receivers select over
// every channel and the senders over a few (or send plainly, or with deadlines); in group B the
// other way round. So whenever tasklets of both sides wait in a group, one of them is
// another's partner: no state can deadlock, and every value must arrive exactly once.
TEST(SelectScale, TenThousandTaskletsSelectingAtRandomDeliverEveryValueOnce) {
    in_fresh_thread([] {
        seed_select(12345);
        std::mt19937 random(12345);
        constexpr int tasklets_per_role = 2'500;  // 4 roles: 10,000 tasklets
        constexpr int values_per_tasklet = 4;
        constexpr int values_per_group = tasklets_per_role * values_per_tasklet;
        channel_group group_a, group_b;
        for (channel_group* g : {&group_a, &group_b}) {
            for (channel<int>& ch : *g) {
                ch.set_preference(std::uniform_int_distribution<int>(-1, 1)(random));
                ch.set_schedule_all(std::uniform_int_distribution<int>(0, 3)(random) == 0);
            }
        }
        std::vector<int> got_a(values_per_group), got_b(values_per_group);
        constexpr auto all = std::make_index_sequence<channels_per_group>();
        int finished = 0;
        std::vector<tasklet> roles;
        for (int t = 0; t < tasklets_per_role; ++t) {
            const bool times_out = t % 8 == 0;
            roles.push_back(spawn([&, t, times_out] {
                for (int i = 0; i < values_per_tasklet; ++i)
                    send_somewhere(group_a, t * values_per_tasklet + i, random, times_out);
                ++finished;
            }));
            roles.push_back(spawn([&] {
                for (int i = 0; i < values_per_tasklet; ++i) receive_from_any(group_a, got_a, all);
                ++finished;
            }));
            roles.push_back(spawn([&, t] {
                for (int i = 0; i < values_per_tasklet; ++i)
                    send_to_any(group_b, t * values_per_tasklet + i, all);
                ++finished;
            }));
            roles.push_back(spawn([&] {
                for (int i = 0; i < values_per_tasklet; ++i)
                    receive_somewhere(group_b, got_b, random);
                ++finished;
            }));
        }
        // Shuffle who starts first.
        std::shuffle(roles.begin(), roles.end(), random);
        for (tasklet& t : roles) t.remove().insert();
        stackless::run();
        EXPECT_EQ(finished, 4 * tasklets_per_role);
        int wrong_a = 0, wrong_b = 0;
        for (int n : got_a) wrong_a += n != 1;
        for (int n : got_b) wrong_b += n != 1;
        EXPECT_EQ(wrong_a, 0);
        EXPECT_EQ(wrong_b, 0);
        for (channel_group* g : {&group_a, &group_b})
            for (channel<int>& ch : *g) EXPECT_EQ(ch.balance(), 0);
        expect_idle_scheduler();
    });
}

}  // namespace
