// Test support: a type-erased completion that records what it was completed with, on the spot,
// with no executor behind it; for driving sans-IO code.
#pragma once

#include <functional>
#include <memory>
#include <system_error>
#include <typeinfo>

#include <asio/cancellation_signal.hpp>

#include <awaken/completion.hpp>

#include "credentials/broker/broker_core.hpp"

namespace awaken::test {

struct Recorder {
  int calls = 0;
  std::error_code error;
  std::shared_ptr<detail::Entry> entry;
  Diagnostics diagnostics;
};

class RecordingCompletion final : public detail::EntryCompletion {
 public:
  RecordingCompletion(Recorder& r, asio::cancellation_slot slot) : r_(r), slot_(slot) {}
  void complete(std::error_code ec, std::shared_ptr<detail::Entry> e) override { invoke(ec, std::move(e)); }
  void invoke(std::error_code ec, std::shared_ptr<detail::Entry> e) override {
    ++r_.calls;
    r_.error = ec;
    r_.entry = std::move(e);
  }
  void post(std::function<void()> fn) override { fn(); }
  asio::cancellation_slot cancellation_slot() const noexcept override { return slot_; }
  const std::type_info& executor_type() const noexcept override { return typeid(void); }
  const void* executor_address() const noexcept override { return nullptr; }
  bool executor_equals(const void*) const noexcept override { return true; }
  Diagnostics* diagnostics() const noexcept override { return &r_.diagnostics; }

 private:
  Recorder& r_;
  asio::cancellation_slot slot_;
};

inline std::unique_ptr<detail::EntryCompletion> recording(Recorder& r, asio::cancellation_slot slot = {}) {
  return std::make_unique<RecordingCompletion>(r, slot);
}

}  // namespace awaken::test
