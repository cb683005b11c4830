// What every Workload API source shares, whatever it publishes (JWT bundle sets, the X.509
// context, WIT-SVIDs): publication by swap with per-thread reader views, update and stop waiters,
// and the deadline helper. The driver of the stream is spiffe/source/stream_driver.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <spdlog/logger.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/completion.hpp>
#include <awaken/error.hpp>
#include <awaken/spiffe/source.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "spiffe/source/stream_supervisor.hpp"

namespace awaken::spiffe::detail {

using UpdateCompletion = awaken::Completion<std::error_code, std::uint64_t>;
using StopCompletion = awaken::Completion<std::error_code>;

inline std::atomic<std::uint64_t> next_source_id{1};

// What a source's handles, its update waiters and its supervisors share: the published
// snapshot, the waiters, and one slot per Workload API stream (a lane) the profile opens.
template <class Set>
struct SourceState : std::enable_shared_from_this<SourceState<Set>> {
  // One stream's own, touched on `strand` only.
  struct Lane {
    asio::cancellation_signal stop_wait;  // ends a reconnect wait
    std::function<void()> cancel_stream;
  };

  SourceState(const asio::any_io_executor& executor, std::string source_name, std::size_t lane_count)
      : name(std::move(source_name)), live(lane_count), strand(asio::make_strand(executor)) {
    for (std::size_t i = 0; i < lane_count; ++i) lanes.push_back(std::make_unique<Lane>());
  }

  // Configuration, fixed before the supervisors start.
  const std::string name;  // "JwtSource", for logs and errors
  std::function<WorkloadApiClient()> factory;
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{10'000};
  std::chrono::milliseconds shutdown_timeout{30'000};
  ResourceLimits limits;
  std::shared_ptr<MetricsRecorder> metrics;
  std::shared_ptr<spdlog::logger> log;
  Timing timing;              // its clock judges SVID expiry
  std::string endpoint_text;  // where the Workload API is, for logs
  const std::uint64_t id = next_source_id.fetch_add(1, std::memory_order_relaxed);

  // What readers see. `current` changes under `current_mutex`, then `version` is bumped; a
  // reader whose thread view holds the latest version touches neither.
  std::mutex current_mutex;
  std::shared_ptr<const Set> current = std::make_shared<const Set>();
  std::atomic<std::uint64_t> version{0};
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<bool> closed{false};
  std::atomic<bool> running{true};  // false once any supervisor has returned

  // Waiters and the end of the supervisors.
  std::mutex mutex;
  struct UpdateWaiter {
    std::uint64_t after = 0;  // wakes once the sequence passes this
    std::unique_ptr<UpdateCompletion> completion;
  };
  std::map<std::uint64_t, UpdateWaiter> update_waiters;  // by id
  std::uint64_t next_waiter = 0;
  std::map<std::uint64_t, std::unique_ptr<StopCompletion>> stop_waiters;
  bool stopped = false;
  std::size_t live;       // supervisors that have not returned
  std::error_code fatal;  // why a supervisor gave up, when one did
  std::string fatal_text;
  std::string last_failure;          // the latest failure, for the initial-sync timeout's text
  std::string last_failure_context;  // the same without its code's message, for a fatal one's

  // The supervisors' own, touched on `strand` only.
  asio::strand<asio::any_io_executor> strand;
  std::vector<std::unique_ptr<Lane>> lanes;
  bool stopping = false;
  // The snapshot the lanes' updates build: published once every lane has delivered one.
  std::shared_ptr<const Set> latest = std::make_shared<const Set>();
  std::size_t delivered = 0;  // a bit per lane

  std::shared_ptr<const Set> load_current() {
    std::lock_guard lk(current_mutex);
    return current;
  }

  void record(const StreamAction& a) {
    if (!metrics) return;
    for (std::size_t i = 0; i < a.count; ++i) metrics->record_error(a.metrics[i]);
    if (a.reconnect) metrics->record_reconnect();
  }

  void note_failure(const std::string& text, const std::string& context) {
    std::lock_guard lk(mutex);
    last_failure = text;
    last_failure_context = context;
  }

  // Lane `lane`'s update, folded into the latest snapshot by `fold(latest)`; published once
  // every lane has delivered one. On `strand`.
  template <class Fold>
  void deliver(std::size_t lane, Fold&& fold) {
    latest = std::make_shared<const Set>(std::forward<Fold>(fold)(*latest));
    delivered |= std::size_t{1} << lane;
    if (delivered == (std::size_t{1} << lanes.size()) - 1) publish(latest);
  }

  // Publishes `snapshot` and wakes the waiters it is news for.
  void publish(std::shared_ptr<const Set> snapshot) {
    {
      std::lock_guard lk(current_mutex);
      current = std::move(snapshot);
    }
    version.fetch_add(1, std::memory_order_release);
    const std::uint64_t seq = sequence.fetch_add(1, std::memory_order_acq_rel) + 1;
    std::vector<std::unique_ptr<UpdateCompletion>> ready;
    {
      std::lock_guard lk(mutex);
      for (auto it = update_waiters.begin(); it != update_waiters.end();) {
        if (it->second.after < seq) {
          ready.push_back(std::move(it->second.completion));
          it = update_waiters.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (metrics) metrics->record_update();
    for (auto& c : ready) c->complete({}, seq);
  }

  // Fails every update waiter with `ec` (the source closed, or a supervisor gave up).
  void fail_waiters(std::error_code ec) {
    std::map<std::uint64_t, UpdateWaiter> all;
    {
      std::lock_guard lk(mutex);
      all.swap(update_waiters);
    }
    for (auto& [id, w] : all) {
      w.completion->set_diagnostics(Diagnostics{name + ": waiting for an update", {}});
      w.completion->complete(ec, 0);
    }
  }

  // Marks the source closed; the version bump sends every reader to its slow path, which is
  // where `closed` is checked. Returns whether this call closed it.
  bool close() {
    if (closed.exchange(true)) return false;
    version.fetch_add(1, std::memory_order_release);
    return true;
  }

  // Closes the source with `why`: readers fail from now on, waiters at once, and every
  // supervisor is told to stop (on the strand). Never waits. Only the first call does anything.
  void close_and_stop(std::error_code why) {
    if (!close()) return;
    fail_waiters(why);
    asio::post(strand, [self = this->shared_from_this()] {
      self->stopping = true;
      for (auto& lane : self->lanes) {
        lane->stop_wait.emit(asio::cancellation_type::terminal);
        if (lane->cancel_stream) lane->cancel_stream();
      }
    });
  }
  void request_stop() { close_and_stop(make_error_code(spiffe_errc::source_closed)); }

  // A supervisor has returned: asked to, after it gave up, or (`failed`) by an exception it
  // could not handle. The source is one: nothing will publish whole snapshots any more, so it
  // closes and the other supervisors stop. The stop waiters complete when the last returns.
  void finish(bool failed) {
    running.store(false);
    std::map<std::uint64_t, std::unique_ptr<StopCompletion>> waiting;
    std::error_code fatal_code;
    {
      std::lock_guard lk(mutex);
      if (failed && !fatal) {
        fatal = make_error_code(spiffe_errc::source_closed);
        fatal_text = "the supervisor failed";
      }
      fatal_code = fatal;
      if (--live == 0) {
        stopped = true;
        waiting.swap(stop_waiters);
      }
    }
    close_and_stop(fatal_code ? fatal_code : make_error_code(spiffe_errc::source_closed));
    for (auto& [id, w] : waiting) w->complete({});
  }
};

template <class W>
auto* completion_of(W& waiter) {
  if constexpr (requires { waiter.completion; })
    return &waiter.completion;
  else
    return &waiter;
}

// Lets a cancellation through `slot` take waiter `id` out of `map` (guarded by `s->mutex`) and
// complete it with operation_aborted (and `rest...`).
template <class State, class Map, class... Rest>
void on_cancel(const std::shared_ptr<State>& s, Map State::*map, std::uint64_t id, asio::cancellation_slot slot,
               Rest... rest) {
  if (!slot.is_connected()) return;
  slot.assign([weak = std::weak_ptr<State>(s), map, id, rest...](asio::cancellation_type type) {
    if (type == asio::cancellation_type::none) return;
    auto state = weak.lock();
    if (!state) return;
    std::unique_lock lock(state->mutex);
    auto& waiters = (*state).*map;
    auto it = waiters.find(id);
    if (it == waiters.end()) return;  // already answered
    auto mine = std::move(*completion_of(it->second));
    waiters.erase(it);
    lock.unlock();
    mine->complete(make_error_code(asio::error::operation_aborted), rest...);
  });
}

// Completes `c` once the sequence passes `after` (at once if it has), or with the reason the
// source can publish no more.
template <class Set>
void start_changed(const std::shared_ptr<SourceState<Set>>& s, std::uint64_t after,
                   std::unique_ptr<UpdateCompletion> c) {
  std::unique_lock lk(s->mutex);
  const std::uint64_t seq = s->sequence.load(std::memory_order_acquire);
  if (s->fatal || s->closed.load()) {
    const std::error_code ec = s->fatal ? s->fatal : make_error_code(spiffe_errc::source_closed);
    lk.unlock();
    c->set_diagnostics(Diagnostics{s->name + ": waiting for an update", {}});
    c->complete(ec, 0);
    return;
  }
  if (seq > after) {
    lk.unlock();
    c->complete({}, seq);
    return;
  }
  const std::uint64_t id = s->next_waiter++;
  on_cancel(s, &SourceState<Set>::update_waiters, id, c->cancellation_slot(), std::uint64_t{0});
  s->update_waiters.emplace(id, typename SourceState<Set>::UpdateWaiter{after, std::move(c)});
}

// Remembers the sequence a successful wait returns, then completes the caller.
class SeenCompletion final : public ForwardingCompletion<UpdateCompletion, std::error_code, std::uint64_t> {
 public:
  SeenCompletion(std::uint64_t& seen, std::unique_ptr<UpdateCompletion> c)
      : ForwardingCompletion(std::move(c)), seen_(seen) {}
  void complete(std::error_code ec, std::uint64_t seq) override {
    if (!ec) seen_ = seq;
    inner_->complete(ec, seq);
  }
  void invoke(std::error_code ec, std::uint64_t seq) override {
    if (!ec) seen_ = seq;
    inner_->invoke(ec, seq);
  }

 private:
  std::uint64_t& seen_;
};

template <class Set, class CompletionToken>
auto async_changed(std::shared_ptr<SourceState<Set>> s, std::uint64_t after, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code, std::uint64_t)>(
      [s = std::move(s), after](auto handler) {
        auto fallback = s->strand.get_inner_executor();
        start_changed(s, after, awaken::make_completion<std::error_code, std::uint64_t>(std::move(handler), fallback));
      },
      token);
}

template <class Set, class CompletionToken>
auto async_stopped(std::shared_ptr<SourceState<Set>> s, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code)>(
      [s = std::move(s)](auto handler) {
        auto c = awaken::make_completion<std::error_code>(std::move(handler), s->strand.get_inner_executor());
        std::unique_lock lk(s->mutex);
        if (s->stopped) {
          lk.unlock();
          c->complete({});
          return;
        }
        const std::uint64_t id = s->next_waiter++;
        on_cancel(s, &SourceState<Set>::stop_waiters, id, c->cancellation_slot());
        s->stop_waiters.emplace(id, std::move(c));
      },
      token);
}

// What a source's handles share: the state, and the stop of the supervisors when the last
// handle goes.
template <class Set>
struct SourceCore {
  explicit SourceCore(std::shared_ptr<SourceState<Set>> s) noexcept : state(std::move(s)) {}
  ~SourceCore() { state->request_stop(); }
  SourceCore(const SourceCore&) = delete;
  SourceCore& operator=(const SourceCore&) = delete;
  std::shared_ptr<SourceState<Set>> state;
};

// `changed()` of a source's updates object: completes once the sequence passes `seen`, and
// remembers the sequence it returns.
template <class Set>
void start_changed_seen(const std::shared_ptr<SourceState<Set>>& s, std::uint64_t& seen,
                        std::unique_ptr<UpdateCompletion> completion) {
  start_changed(s, seen, std::make_unique<SeenCompletion>(seen, std::move(completion)));
}

// Runs `start(token)` with a deadline: a timer on the awaiting coroutine's executor that
// cancels the operation when it fires. Returns the operation's results and whether the deadline
// cut it short. The timer's handler shares the signal, so it may run after this frame is gone.
template <class... Results, class Start>
asio::awaitable<std::pair<bool, std::tuple<std::error_code, Results...>>> with_deadline(
    std::optional<std::chrono::milliseconds> deadline, Start start) {
  struct Shared {
    asio::cancellation_signal signal;
    bool fired = false;
  };
  auto shared = std::make_shared<Shared>();
  const auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer{executor};
  if (deadline) {
    // Longer than a steady_timer can count is forever.
    const auto longest = std::chrono::duration_cast<std::chrono::milliseconds>(asio::steady_timer::duration::max()) / 2;
    timer.expires_after(std::min(*deadline, longest));
    timer.async_wait([shared](std::error_code ec) {
      if (ec) return;
      shared->fired = true;
      shared->signal.emit(asio::cancellation_type::terminal);
    });
  }
  auto token = asio::bind_cancellation_slot(shared->signal.slot(), asio::experimental::as_tuple(asio::use_awaitable));
  auto result = co_await start(std::move(token));
  timer.cancel();
  // Cut short only if the operation itself ended because of the deadline.
  const bool expired = shared->fired && std::get<0>(result) == asio::error::operation_aborted;
  co_return std::pair{expired, std::move(result)};
}

// The reader's per-thread view of a source's current set, behind a holder of this thread's own
// so that the reference counts a lookup touches are never shared with another thread. The holder
// takes whole cache lines: two threads' holders allocated side by side would share one.
template <class Set>
struct alignas(64) ThreadLocalSnapshot {
  std::shared_ptr<const Set> set;
};

template <class Set>
struct ReaderSlot {
  std::uint64_t source = 0;
  std::uint64_t version = 0;
  std::shared_ptr<const Set> set;
};

// A function's own: GCC 12 never destroys a thread_local variable template's instances.
template <class Set>
ReaderSlot<Set>& reader_slot() noexcept {
  thread_local ReaderSlot<Set> slot;
  return slot;
}

[[noreturn]] inline void closed_error(const std::string& name) { throw_error(spiffe_errc::source_closed, name); }

// The thread's view of the current set; throws `source_closed` once the source is closed.
template <class Set>
[[gnu::always_inline]] inline const std::shared_ptr<const Set>& thread_view(SourceState<Set>& s) {
  const std::uint64_t v = s.version.load(std::memory_order_acquire);
  ReaderSlot<Set>& slot = reader_slot<Set>();
  if (slot.source != s.id || slot.version != v) [[unlikely]] {
    if (s.closed.load(std::memory_order_acquire)) closed_error(s.name);
    auto holder = std::make_shared<ThreadLocalSnapshot<Set>>(ThreadLocalSnapshot<Set>{s.load_current()});
    slot.set = std::shared_ptr<const Set>(holder, holder->set.get());
    slot.version = v;
    slot.source = s.id;
  }
  return slot.set;
}

// A source's shutdown: asks its supervisors to stop and waits for them all, at most `timeout`
// (the source's own bound when none is given).
template <class Set>
asio::awaitable<void> stop_source(std::shared_ptr<SourceState<Set>> state,
                                  std::optional<std::chrono::milliseconds> timeout) {
  const auto bound = timeout.value_or(state->shutdown_timeout);
  state->request_stop();
  const auto stopped = [&](auto token) { return async_stopped(state, std::move(token)); };
  auto [expired, result] = co_await with_deadline(bound, stopped);
  if (expired)
    throw_error(spiffe_errc::shutdown_timeout,
                state->name + ": the supervisors did not stop within " + std::to_string(bound.count()) + " ms");
  if (auto ec = std::get<0>(result)) throw_error(ec, state->name + ": shutdown");
}

}  // namespace awaken::spiffe::detail
