// Type-erased completion handlers, so that the transport lives in the compiled library and only
// this thin adapter is a template.
#pragma once

#include <memory>
#include <optional>
#include <type_traits>
#include <tuple>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

namespace awaken::detail {

/// A completion handler for `void(Args...)` whose type has been erased. `complete` may be called
/// from any thread, once; it posts the handler to the handler's associated executor (so the
/// caller resumes on its own executor, never inside the transport).
template <class... Args>
class Completion {
 public:
  virtual ~Completion() = default;
  virtual void complete(Args... args) = 0;
  /// The handler's cancellation slot; not connected when it has none.
  virtual asio::cancellation_slot cancellation_slot() const noexcept = 0;
};

template <class Handler, class... Args>
class CompletionImpl final : public Completion<Args...> {
 public:
  CompletionImpl(Handler handler, const asio::any_io_executor& fallback)
      : handler_(std::move(handler)),
        slot_(asio::get_associated_cancellation_slot(handler_)),
        work_(asio::prefer(asio::get_associated_executor(handler_, fallback),
                           asio::execution::outstanding_work.tracked)) {}

  void complete(Args... args) override {
    asio::post(*work_, [h = std::move(handler_), slot = slot_,
                    args = std::make_tuple(std::move(args)...)]() mutable {
      // Cleared here, on the handler's executor, where any cancellation is emitted too.
      if (slot.is_connected()) slot.clear();
      std::apply(std::move(h), std::move(args));
    });
    work_.reset();
  }

  asio::cancellation_slot cancellation_slot() const noexcept override { return slot_; }

 private:
  Handler handler_;
  using Executor = asio::associated_executor_t<Handler, asio::any_io_executor>;
  using WorkExecutor = std::decay_t<decltype(asio::prefer(std::declval<const Executor&>(),
                                                          asio::execution::outstanding_work.tracked))>;

  asio::cancellation_slot slot_;
  std::optional<WorkExecutor> work_;  // keeps the handler's context running until completion
};

template <class... Args, class Handler>
std::unique_ptr<Completion<Args...>> make_completion(Handler&& handler, const asio::any_io_executor& fallback) {
  return std::make_unique<CompletionImpl<std::decay_t<Handler>, Args...>>(std::forward<Handler>(handler), fallback);
}

}  // namespace awaken::detail
