// Type-erased completion handlers: the compiled library completes operations through these, so
// that only this thin adapter is a template. Implementations of `CredentialBroker` receive one.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

#include <awaken/diagnostics.hpp>

namespace awaken {

/// What every erased completion tells about its handler, whatever its signature.
class CompletionBase {
 public:
  virtual ~CompletionBase() = default;
  /// Posts `fn` to the handler's associated executor.
  virtual void post(std::function<void()> fn) = 0;
  /// The handler's cancellation slot; not connected when it has none.
  virtual asio::cancellation_slot cancellation_slot() const noexcept = 0;
  /// The associated executor's type and address, and equality with another of that type.
  virtual const std::type_info& executor_type() const noexcept = 0;
  virtual const void* executor_address() const noexcept = 0;
  virtual bool executor_equals(const void* other_of_same_type) const noexcept = 0;
  /// Where the handler wants the diagnostics of a failure (see `bind_diagnostics` and
  /// `with_diagnostics`), or null. Valid until the completion; write it before completing.
  virtual Diagnostics* diagnostics() const noexcept = 0;

  /// Writes `d` where the handler wants it, if it does.
  void set_diagnostics(const Diagnostics& d) const {
    if (Diagnostics* out = diagnostics()) *out = d;
  }

  /// Whether `other`'s handler has an equal associated executor.
  bool same_executor(const CompletionBase& other) const noexcept {
    return executor_type() == other.executor_type() && executor_equals(other.executor_address());
  }
};

/// A completion handler for `void(Args...)` whose type has been erased. `complete` may be called
/// from any thread, once; it posts the handler to the handler's associated executor (so the
/// caller resumes on its own executor, never inside the transport).
template <class... Args>
class Completion : public CompletionBase {
 public:
  virtual void complete(Args... args) = 0;
  /// Runs the handler here and now. Only from code already running on the handler's executor,
  /// once, and instead of `complete`: it lets one posted function finish many completions that
  /// share an executor.
  virtual void invoke(Args... args) = 0;
};

/// A completion that stands in front of another one (`inner`): it takes its executor,
/// cancellation slot and diagnostics, and leaves `complete` and `invoke` to the subclass,
/// which ends by completing `inner`.
template <class Inner, class... Args>
class ForwardingCompletion : public Completion<Args...> {
 public:
  explicit ForwardingCompletion(std::unique_ptr<Inner> inner) noexcept : inner_(std::move(inner)) {}

  void post(std::function<void()> fn) override { inner_->post(std::move(fn)); }
  asio::cancellation_slot cancellation_slot() const noexcept override { return inner_->cancellation_slot(); }
  const std::type_info& executor_type() const noexcept override { return inner_->executor_type(); }
  const void* executor_address() const noexcept override { return inner_->executor_address(); }
  bool executor_equals(const void* other) const noexcept override { return inner_->executor_equals(other); }
  Diagnostics* diagnostics() const noexcept override { return inner_->diagnostics(); }

 protected:
  std::unique_ptr<Inner> inner_;
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
    asio::post(*work_, [h = std::move(handler_), slot = slot_, args = std::make_tuple(std::move(args)...)]() mutable {
      // Cleared here, on the handler's executor, where any cancellation is emitted too.
      if (slot.is_connected()) slot.clear();
      std::apply(std::move(h), std::move(args));
    });
    work_.reset();
  }

  void invoke(Args... args) override {
    if (slot_.is_connected()) slot_.clear();
    Handler h = std::move(handler_);
    auto work = std::move(work_);  // released when the handler has run
    work_.reset();
    std::move(h)(std::move(args)...);
  }

  // These three only before the completion: they use the work-tracking executor.
  void post(std::function<void()> fn) override { asio::post(*work_, std::move(fn)); }
  const std::type_info& executor_type() const noexcept override { return typeid(WorkExecutor); }
  const void* executor_address() const noexcept override { return &*work_; }
  bool executor_equals(const void* other) const noexcept override {
    return *static_cast<const WorkExecutor*>(other) == *work_;
  }

  asio::cancellation_slot cancellation_slot() const noexcept override { return slot_; }
  Diagnostics* diagnostics() const noexcept override { return get_associated_diagnostics(handler_); }

 private:
  Handler handler_;
  using Executor = asio::associated_executor_t<Handler, asio::any_io_executor>;
  using WorkExecutor =
      std::decay_t<decltype(asio::prefer(std::declval<const Executor&>(), asio::execution::outstanding_work.tracked))>;

  asio::cancellation_slot slot_;
  std::optional<WorkExecutor> work_;  // keeps the handler's context running until completion
};

template <class... Args, class Handler>
std::unique_ptr<Completion<Args...>> make_completion(Handler&& handler, const asio::any_io_executor& fallback) {
  return std::make_unique<CompletionImpl<std::decay_t<Handler>, Args...>>(std::forward<Handler>(handler), fallback);
}

}  // namespace awaken
