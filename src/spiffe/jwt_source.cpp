// JwtSource: the supervisor coroutine, publication by swap, per-thread reader caches, update
// waiters and shutdown.
#include <awaken/error.hpp>
#include <awaken/log.hpp>
#include <awaken/spiffe/jwt_source.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>

#include <spdlog/logger.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/completion.hpp>

namespace awaken::spiffe {

std::string_view to_string(MetricsErrorKind kind) noexcept {
  switch (kind) {
    case MetricsErrorKind::client_creation: return "client_creation";
    case MetricsErrorKind::stream_connect: return "stream_connect";
    case MetricsErrorKind::stream_error: return "stream_error";
    case MetricsErrorKind::stream_ended: return "stream_ended";
    case MetricsErrorKind::no_identity_issued: return "no_identity_issued";
    case MetricsErrorKind::initial_sync_failed: return "initial_sync_failed";
    case MetricsErrorKind::limit_max_bundles: return "limit_max_bundles";
    case MetricsErrorKind::limit_max_bundle_jwks_bytes: return "limit_max_bundle_jwks_bytes";
    case MetricsErrorKind::update_rejected: return "update_rejected";
  }
  return "unknown";
}

namespace detail {

using UpdateCompletion = awaken::Completion<std::error_code, std::uint64_t>;
using StopCompletion = awaken::Completion<std::error_code>;

std::atomic<std::uint64_t> next_source_id{1};

struct SourceState : std::enable_shared_from_this<SourceState> {
  explicit SourceState(const asio::any_io_executor& executor) : strand(asio::make_strand(executor)), timer(strand) {}

  // Configuration, fixed before the supervisor starts.
  std::function<WorkloadApiClient()> factory;
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{10'000};
  std::chrono::milliseconds shutdown_timeout{30'000};
  ResourceLimits limits;
  std::shared_ptr<MetricsRecorder> metrics;
  std::shared_ptr<spdlog::logger> log;
  JitterSource* jitter = nullptr;
  const std::uint64_t id = next_source_id.fetch_add(1, std::memory_order_relaxed);

  // What readers see. `current` changes under `current_mutex`, then `version` is bumped; a
  // reader whose thread cache holds the latest version touches neither.
  std::mutex current_mutex;
  std::shared_ptr<const JwtBundleSet> current = std::make_shared<const JwtBundleSet>();
  std::atomic<std::uint64_t> version{0};
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<bool> closed{false};
  std::atomic<bool> running{false};

  // Waiters and the end of the supervisor.
  std::mutex mutex;
  struct UpdateWaiter {
    std::uint64_t after = 0;  // wakes once the sequence passes this
    std::unique_ptr<UpdateCompletion> completion;
  };
  std::map<std::uint64_t, UpdateWaiter> update_waiters;  // by id
  std::uint64_t next_waiter = 0;
  struct StopWaiter {
    std::unique_ptr<StopCompletion> completion;
  };
  std::map<std::uint64_t, StopWaiter> stop_waiters;
  bool stopped = false;
  std::error_code fatal;  // why the initial sync gave up, when it did
  std::string fatal_text;
  std::string last_failure;  // the latest failure, for the initial-sync timeout's text

  // The supervisor's own, touched on `strand` only.
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer timer;
  std::optional<JwtBundleStream> stream;
  bool stopping = false;

  std::shared_ptr<const JwtBundleSet> load_current() {
    std::lock_guard lk(current_mutex);
    return current;
  }

  void record(MetricsErrorKind kind) {
    if (metrics) metrics->record_error(kind);
  }

  void note_failure(const std::string& text) {
    std::lock_guard lk(mutex);
    last_failure = text;
  }

  // Publishes a set whose content differs from the current one and wakes the waiters it is
  // news for.
  void publish(JwtBundleSet set) {
    auto shared = std::make_shared<const JwtBundleSet>(std::move(set));
    {
      std::lock_guard lk(current_mutex);
      current = std::move(shared);
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

  // Fails every update waiter with `ec` (the source closed, or the initial sync failed).
  void fail_waiters(std::error_code ec) {
    std::map<std::uint64_t, UpdateWaiter> all;
    {
      std::lock_guard lk(mutex);
      all.swap(update_waiters);
    }
    for (auto& [id, w] : all) w.completion->complete(ec, 0);
  }

  // Marks the source closed; the version bump sends every reader to its slow path, which is
  // where `closed` is checked. Returns whether this call closed it.
  bool close() {
    if (closed.exchange(true)) return false;
    version.fetch_add(1, std::memory_order_release);
    return true;
  }

  // Closes the source: readers fail from now on, waiters at once, and the supervisor is told
  // to stop (on its strand). Never waits.
  void request_stop() {
    if (!close()) return;
    fail_waiters(make_error_code(spiffe_errc::source_closed));
    asio::post(strand, [self = shared_from_this()] {
      self->stopping = true;
      self->timer.cancel();
      if (self->stream) self->stream->cancel();
    });
  }

  // The supervisor has returned: asked to, after a fatal initial failure, or (`failed`) by an
  // exception it could not handle. Nothing will publish any more, so the source closes.
  void finish(bool failed) {
    running.store(false);
    std::map<std::uint64_t, StopWaiter> waiting;
    std::error_code fatal_code;
    {
      std::lock_guard lk(mutex);
      stopped = true;
      waiting.swap(stop_waiters);
      if (failed && !fatal) {
        fatal = make_error_code(spiffe_errc::source_closed);
        fatal_text = "the supervisor failed";
      }
      fatal_code = fatal;
    }
    if (fatal_code) {
      close();
      fail_waiters(fatal_code);
    }
    for (auto& [id, w] : waiting) w.completion->complete({});
  }

  std::chrono::milliseconds next_backoff(std::chrono::milliseconds current, std::chrono::milliseconds cap) const {
    const auto base = std::min(current * 2, cap);
    const double unit = std::clamp(jitter->next_unit(), 0.0, 1.0);
    const auto cut =
        std::chrono::milliseconds{static_cast<long long>(std::floor(static_cast<double>(base.count()) / 10 * unit))};
    return std::max(base - cut, std::chrono::milliseconds{1});
  }
};

// Lets a cancellation through `slot` take waiter `id` out of `waiters` (a member of
// SourceState) and complete it with operation_aborted (and `rest...`).
template <class Map, class... Rest>
void on_cancel(const std::shared_ptr<SourceState>& s, Map SourceState::*waiters, std::uint64_t id,
               asio::cancellation_slot slot, Rest... rest) {
  if (!slot.is_connected()) return;
  slot.assign([weak = std::weak_ptr<SourceState>(s), waiters, id, rest...](asio::cancellation_type type) {
    if (type == asio::cancellation_type::none) return;
    auto state = weak.lock();
    if (!state) return;
    std::unique_lock lock(state->mutex);
    auto& map = (*state).*waiters;
    auto it = map.find(id);
    if (it == map.end()) return;  // already answered
    auto mine = std::move(it->second.completion);
    map.erase(it);
    lock.unlock();
    mine->complete(make_error_code(asio::error::operation_aborted), rest...);
  });
}

void start_changed(const std::shared_ptr<SourceState>& s, std::uint64_t after, std::unique_ptr<UpdateCompletion> c) {
  std::unique_lock lk(s->mutex);
  const std::uint64_t seq = s->sequence.load(std::memory_order_acquire);
  if (s->fatal || s->closed.load()) {
    const std::error_code ec = s->fatal ? s->fatal : make_error_code(spiffe_errc::source_closed);
    lk.unlock();
    c->complete(ec, 0);
    return;
  }
  if (seq > after) {
    lk.unlock();
    c->complete({}, seq);
    return;
  }
  const std::uint64_t id = s->next_waiter++;
  on_cancel(s, &SourceState::update_waiters, id, c->cancellation_slot(), std::uint64_t{0});
  s->update_waiters.emplace(id, SourceState::UpdateWaiter{after, std::move(c)});
}

template <class CompletionToken>
auto async_changed(std::shared_ptr<SourceState> s, std::uint64_t after, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code, std::uint64_t)>(
      [s = std::move(s), after](auto handler) {
        auto fallback = s->strand.get_inner_executor();
        start_changed(s, after, awaken::make_completion<std::error_code, std::uint64_t>(std::move(handler), fallback));
      },
      token);
}

void start_stopped(const std::shared_ptr<SourceState>& s, std::unique_ptr<StopCompletion> c) {
  std::unique_lock lk(s->mutex);
  if (s->stopped) {
    lk.unlock();
    c->complete({});
    return;
  }
  const std::uint64_t id = s->next_waiter++;
  on_cancel(s, &SourceState::stop_waiters, id, c->cancellation_slot());
  s->stop_waiters.emplace(id, SourceState::StopWaiter{std::move(c)});
}

template <class CompletionToken>
auto async_stopped(std::shared_ptr<SourceState> s, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code)>(
      [s = std::move(s)](auto handler) {
        auto fallback = s->strand.get_inner_executor();
        start_stopped(s, awaken::make_completion<std::error_code>(std::move(handler), fallback));
      },
      token);
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

// Which metric a rejected message counts as, besides update_rejected.
std::optional<MetricsErrorKind> limit_kind(std::error_code ec) {
  if (ec == spiffe_errc::resource_limit_exceeded) return MetricsErrorKind::limit_max_bundles;
  if (ec == spiffe_errc::bundle_too_large) return MetricsErrorKind::limit_max_bundle_jwks_bytes;
  return std::nullopt;
}

// Keeps a FetchJWTBundles stream open for as long as the source lives.
asio::awaitable<void> supervise(std::shared_ptr<SourceState> s) {
  using namespace std::chrono_literals;
  auto backoff = s->min_backoff;
  bool synced = false;
  bool gave_up = false;  // the initial sync met a failure that retrying cannot mend
  while (!s->stopping && !gave_up) {
    bool applied = false;
    bool no_identity = false;
    std::optional<WorkloadApiClient> client;
    std::string failure;
    std::error_code failure_code;
    try {
      client.emplace(s->factory());
    } catch (const std::system_error& e) {
      failure = e.what();
      failure_code = e.code();
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "the client factory threw";
    }
    if (!client) {
      s->record(MetricsErrorKind::client_creation);
      s->note_failure(failure);
      s->log->warn("awaken: JwtSource: cannot make a Workload API client: {}", failure);
      if (!synced) {
        s->record(MetricsErrorKind::initial_sync_failed);
        if (failure_code == spiffe_errc::invalid_endpoint || failure_code == spiffe_errc::endpoint_not_configured) {
          std::lock_guard lk(s->mutex);
          s->fatal = failure_code;
          s->fatal_text = failure;
          gave_up = true;
          continue;
        }
      }
    }
    if (client) {
      s->stream.emplace(client->watch_jwt_bundles(s->limits));
      bool first = true;
      for (;;) {
        std::optional<JwtBundleSet> set;
        std::error_code ec;
        std::string text;
        try {
          set = co_await s->stream->next();
        } catch (const std::system_error& e) {
          ec = e.code();
          text = e.what();
          no_identity = is_no_identity_issued(e);
        } catch (const std::exception& e) {  // out of memory, say: this stream is done, not the source
          ec = make_error_code(grpc_status::internal);
          text = e.what();
        }
        if (s->stopping) break;
        if (ec && ec.category() == spiffe_category()) {  // one bad message; the stream goes on
          if (auto kind = limit_kind(ec)) s->record(*kind);
          s->record(MetricsErrorKind::update_rejected);
          if (!synced) s->record(MetricsErrorKind::initial_sync_failed);
          s->note_failure(text);
          s->log->warn("awaken: JwtSource: bundle update rejected, keeping the last good set: {}", text);
          first = false;
          continue;
        }
        if (ec) {
          s->record(no_identity ? MetricsErrorKind::no_identity_issued
                                : (first ? MetricsErrorKind::stream_connect : MetricsErrorKind::stream_error));
          s->note_failure(text);
          s->log->debug("awaken: JwtSource: bundle stream failed: {}", text);
          if (!synced) {
            s->record(MetricsErrorKind::initial_sync_failed);
            if (ec == grpc_status::invalid_argument || ec == grpc_status::unimplemented) {
              std::lock_guard lk(s->mutex);
              s->fatal = ec;
              s->fatal_text = text;
              gave_up = true;
            }
          }
          break;
        }
        if (!set) {
          s->record(MetricsErrorKind::stream_ended);
          s->note_failure("the Workload API ended the bundle stream");
          if (!synced) s->record(MetricsErrorKind::initial_sync_failed);
          break;
        }
        first = false;
        applied = true;
        if (!synced || !(*s->load_current() == *set)) s->publish(std::move(*set));
        synced = true;
      }
      s->stream.reset();
    }
    if (s->stopping || gave_up) break;
    if (applied) backoff = s->min_backoff;
    // An agent with no identity for us yet needs time: wait at least 1 s, growing to 10 s at most.
    constexpr std::chrono::milliseconds no_identity_floor{1s};
    constexpr std::chrono::milliseconds no_identity_cap{10s};
    if (no_identity) backoff = std::max(backoff, no_identity_floor);
    if (s->metrics) s->metrics->record_reconnect();
    s->timer.expires_after(backoff);
    co_await s->timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    backoff = s->next_backoff(backoff, no_identity ? std::min(s->max_backoff, no_identity_cap) : s->max_backoff);
  }
}

// The reader's per-thread view of a source's current set, behind a holder of this thread's own
// so that the reference counts a lookup touches are never shared with another thread. The holder
// takes whole cache lines: two threads' holders allocated side by side would share one.
struct alignas(64) Holder {
  std::shared_ptr<const JwtBundleSet> set;
};

struct ReaderSlot {
  std::uint64_t source = 0;
  std::uint64_t version = 0;
  std::shared_ptr<const JwtBundleSet> set;
};
thread_local ReaderSlot reader_slot;

[[noreturn]] void closed_error() { throw_error(spiffe_errc::source_closed, "JwtSource"); }

// The thread's view of the current set; throws `source_closed` once the source is closed.
[[gnu::always_inline]] inline const std::shared_ptr<const JwtBundleSet>& thread_view(SourceState& s) {
  const std::uint64_t v = s.version.load(std::memory_order_acquire);
  ReaderSlot& slot = reader_slot;
  if (slot.source != s.id || slot.version != v) [[unlikely]] {
    if (s.closed.load(std::memory_order_acquire)) closed_error();
    auto holder = std::make_shared<Holder>(Holder{s.load_current()});
    slot.set = std::shared_ptr<const JwtBundleSet>(holder, holder->set.get());
    slot.version = v;
    slot.source = s.id;
  }
  return slot.set;
}

}  // namespace detail

struct JwtSource::Core {
  explicit Core(std::shared_ptr<detail::SourceState> s) noexcept : state(std::move(s)) {}
  ~Core() { state->request_stop(); }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  std::shared_ptr<detail::SourceState> state;
};

using detail::closed_error;

JwtSourceBuilder JwtSource::builder() { return JwtSourceBuilder{}; }

std::shared_ptr<const JwtBundleSet> JwtSource::bundle_set() const {
  if (state_ == nullptr) closed_error();
  return detail::thread_view(*state_);
}

std::shared_ptr<const JwtBundle> JwtSource::bundle_for_trust_domain(const TrustDomain& td) const {
  if (state_ == nullptr) [[unlikely]]
    closed_error();
  const auto& set = detail::thread_view(*state_);
  const JwtBundle* bundle = set->find(td.name());
  return bundle == nullptr ? nullptr : std::shared_ptr<const JwtBundle>(set, bundle);
}

bool JwtSource::is_healthy() const noexcept {
  if (!core_) return false;
  auto& s = *core_->state;
  if (s.closed.load() || !s.running.load()) return false;
  try {
    return detail::thread_view(s)->authority_count() > 0;
  } catch (...) {  // the thread's view could not be allocated
    return false;
  }
}

std::uint64_t JwtSource::sequence() const noexcept {
  return core_ ? core_->state->sequence.load(std::memory_order_acquire) : 0;
}

JwtSourceUpdates JwtSource::updates() const {
  if (!core_) closed_error();
  return JwtSourceUpdates{core_->state, sequence()};
}

std::uint64_t JwtSourceUpdates::last() const noexcept { return state_->sequence.load(std::memory_order_acquire); }

asio::awaitable<std::uint64_t> JwtSourceUpdates::changed() {
  auto [ec, seq] = co_await detail::async_changed(state_, seen_, asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) throw_error(ec, "JwtSource: waiting for an update");
  seen_ = seq;
  co_return seq;
}

asio::awaitable<std::shared_ptr<const JwtBundleSet>> JwtSourceUpdates::wait_for(
    std::function<bool(const JwtBundleSet&)> predicate) {
  for (;;) {
    if (state_->closed.load()) closed_error();
    seen_ = state_->sequence.load(std::memory_order_acquire);
    auto set = state_->load_current();
    if (predicate(*set)) co_return set;
    co_await changed();
  }
}

asio::awaitable<JwtSvid> JwtSource::fetch_jwt_svid(std::vector<std::string> audiences,
                                                   std::optional<SpiffeId> spiffe_id) const {
  if (!core_) closed_error();
  auto state = core_->state;
  if (state->closed.load()) closed_error();
  std::error_code first_failure;
  try {
    const WorkloadApiClient client = state->factory();
    co_return co_await client.fetch_jwt_svid(audiences, spiffe_id);
  } catch (const Error& e) {
    if (!is_transient_workload_error(e.code())) throw;
    first_failure = e.code();
  }
  if (state->closed.load()) closed_error();
  state->log->debug("awaken: JwtSource: fetch_jwt_svid failed ({}), once more on a fresh connection",
                    first_failure.message());
  const WorkloadApiClient client = state->factory();
  co_return co_await client.fetch_jwt_svid(std::move(audiences), std::move(spiffe_id));
}

asio::awaitable<void> JwtSource::shutdown() const {
  if (!core_) co_return;
  co_await shutdown(core_->state->shutdown_timeout);
}

asio::awaitable<void> JwtSource::shutdown(std::chrono::milliseconds timeout) const {
  if (!core_) co_return;
  auto state = core_->state;
  state->request_stop();
  const auto stopped = [&](auto token) { return detail::async_stopped(state, std::move(token)); };
  auto [expired, result] = co_await detail::with_deadline(timeout, stopped);
  if (expired)
    throw_error(spiffe_errc::shutdown_timeout,
                "JwtSource: the supervisor did not stop within " + std::to_string(timeout.count()) + " ms");
  if (auto ec = std::get<0>(result)) throw_error(ec, "JwtSource: shutdown");
}

JwtSourceBuilder& JwtSourceBuilder::endpoint(WorkloadEndpoint endpoint) {
  endpoint_ = std::move(endpoint);
  factory_ = nullptr;
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::client_factory(std::function<WorkloadApiClient()> factory) {
  factory_ = std::move(factory);
  endpoint_.reset();
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::reconnect_backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
  if (min > max) std::swap(min, max);
  min_backoff_ = std::max(min, std::chrono::milliseconds{1});
  max_backoff_ = std::max(max, min_backoff_);
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::resource_limits(ResourceLimits limits) {
  limits_ = limits;
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::initial_sync_timeout(std::chrono::milliseconds timeout) {
  initial_sync_timeout_ = timeout;
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::shutdown_timeout(std::chrono::milliseconds timeout) {
  shutdown_timeout_ = timeout;
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::metrics(std::shared_ptr<MetricsRecorder> recorder) {
  metrics_ = std::move(recorder);
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::logger(std::shared_ptr<spdlog::logger> logger) {
  logger_ = std::move(logger);
  return *this;
}

JwtSourceBuilder& JwtSourceBuilder::jitter(JitterSource& jitter) {
  jitter_ = &jitter;
  return *this;
}

asio::awaitable<JwtSource> JwtSourceBuilder::build() const {
  const auto executor = co_await asio::this_coro::executor;
  co_return co_await build(executor);
}

asio::awaitable<JwtSource> JwtSourceBuilder::build(asio::any_io_executor executor) const {
  auto s = std::make_shared<detail::SourceState>(executor);
  s->min_backoff = min_backoff_;
  s->max_backoff = max_backoff_;
  s->shutdown_timeout = shutdown_timeout_;
  s->limits = limits_;
  s->metrics = metrics_;
  s->log = logger_ ? logger_ : awaken::logger();
  s->jitter = jitter_ != nullptr ? jitter_ : &default_jitter();
  if (factory_) {
    s->factory = factory_;
  } else {
    // Resolved per client, so that a missing or bad endpoint is reported the same way.
    s->factory = [endpoint = endpoint_, http = http::HttpClient{executor}, limits = limits_]() {
      WorkloadApiOptions options;
      options.bundle_limits = limits;
      options.max_message_bytes =
          std::max<std::size_t>(options.max_message_bytes, limits.max_bundle_jwks_bytes + (1u << 20));
      return WorkloadApiClient{http, endpoint ? *endpoint : WorkloadEndpoint::from_environment(), options};
    };
  }
  JwtSource source{std::make_shared<JwtSource::Core>(s), s.get()};
  s->running.store(true);
  asio::co_spawn(s->strand, detail::supervise(s), [s](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        s->log->error("awaken: JwtSource: the supervisor failed: {}", ex.what());
      } catch (...) {
        s->log->error("awaken: JwtSource: the supervisor failed");
      }
    }
    s->finish(e != nullptr);
  });

  // Nothing of the builder is read after this point: a temporary builder may be gone.
  const auto sync_timeout = initial_sync_timeout_;
  const auto first_set = [&](auto token) { return detail::async_changed(s, 0, std::move(token)); };
  auto [expired, result] = co_await detail::with_deadline<std::uint64_t>(sync_timeout, first_set);
  const std::error_code ec = std::get<0>(result);
  if (!expired && !ec) co_return source;

  std::string why;
  std::error_code fatal;
  {
    std::lock_guard lk(s->mutex);
    why = s->last_failure;
    fatal = s->fatal;
    if (fatal) why = s->fatal_text;
  }
  s->request_stop();
  if (fatal) throw_error(fatal, "JwtSource: initial sync: " + why);
  if (expired)
    throw_error(spiffe_errc::initial_sync_timeout, "JwtSource: no bundle set within " +
                                                       std::to_string(sync_timeout->count()) + " ms" +
                                                       (why.empty() ? std::string{} : "; last failure: " + why));
  throw_error(ec, "JwtSource: initial sync");
}

}  // namespace awaken::spiffe
