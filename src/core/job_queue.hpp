// The jobs of the blocking pool that wait for a thread, oldest first. A ring over a vector that
// keeps its capacity: once the queue has been as long as it gets, queuing allocates nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "stackless/detail/blocking_job.hpp"

namespace stackless::detail {

class job_queue {
  public:
    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }

    // Raises std::bad_alloc (the queue unchanged) if it must grow and cannot.
    void push(std::shared_ptr<blocking_job> job) {
        if (size_ == slots_.size()) grow();
        slots_[(first_ + size_) % slots_.size()] = std::move(job);
        ++size_;
    }
    std::shared_ptr<blocking_job> pop() noexcept {
        std::shared_ptr<blocking_job> job = std::move(slots_[first_]);
        first_ = (first_ + 1) % slots_.size();
        --size_;
        return job;
    }

  private:
    void grow() {
        std::vector<std::shared_ptr<blocking_job>> larger(slots_.empty() ? 16 : 2 * slots_.size());
        for (std::size_t i = 0; i < size_; ++i)
            larger[i] = std::move(slots_[(first_ + i) % slots_.size()]);
        slots_ = std::move(larger);
        first_ = 0;
    }

    std::vector<std::shared_ptr<blocking_job>> slots_;
    std::size_t first_ = 0;
    std::size_t size_ = 0;
};

}  // namespace stackless::detail
