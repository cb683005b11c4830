// JwtSource: a FetchJWTBundles stream under the one supervisor (spiffe/source_state.hpp),
// readers, update waiters, fetch_jwt_svid and shutdown.
#include <awaken/spiffe/jwt_source.hpp>

#include <algorithm>
#include <typeinfo>

#include <spdlog/logger.h>
#include <asio/co_spawn.hpp>
#include <asio/this_coro.hpp>

#include <awaken/error.hpp>
#include <awaken/log.hpp>

#include "spiffe/source_state.hpp"
#include "spiffe/stream_driver.hpp"

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

struct JwtSource::Core {
  explicit Core(std::shared_ptr<detail::JwtState> s) noexcept : state(std::move(s)) {}
  ~Core() { state->request_stop(); }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  std::shared_ptr<detail::JwtState> state;
};

namespace {
[[noreturn]] void closed_error() { detail::closed_error("JwtSource"); }
}  // namespace

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

asio::any_io_executor JwtSourceUpdates::fallback_executor() const noexcept {
  return state_->strand.get_inner_executor();
}

namespace {
// Remembers the sequence a successful wait returns, then completes the caller.
class SeenCompletion final
    : public ForwardingCompletion<Completion<std::error_code, std::uint64_t>, std::error_code, std::uint64_t> {
 public:
  SeenCompletion(std::uint64_t& seen, std::unique_ptr<Completion<std::error_code, std::uint64_t>> c)
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
}  // namespace

void JwtSourceUpdates::start_changed(std::unique_ptr<Completion<std::error_code, std::uint64_t>> completion) {
  detail::start_changed(state_, seen_, std::make_unique<SeenCompletion>(seen_, std::move(completion)));
}

asio::awaitable<std::shared_ptr<const JwtBundleSet>> JwtSourceUpdates::run_wait_for(
    std::function<bool(const JwtBundleSet&)> predicate) {
  for (;;) {
    if (state_->closed.load()) closed_error();
    seen_ = state_->sequence.load(std::memory_order_acquire);
    auto set = state_->load_current();
    if (predicate(*set)) co_return set;
    co_await changed();
  }
}

asio::any_io_executor JwtSource::fallback_executor() const noexcept {
  if (!core_) return asio::system_executor{};
  return core_->state->strand.get_inner_executor();
}

std::shared_ptr<detail::JwtState> JwtSource::state_handle() const noexcept { return core_ ? core_->state : nullptr; }

asio::awaitable<JwtSvid> JwtSource::run_fetch_jwt_svid(std::shared_ptr<detail::JwtState> state,
                                                       std::vector<std::string> audiences,
                                                       std::optional<SpiffeId> spiffe_id) {
  if (!state || state->closed.load()) closed_error();
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

asio::awaitable<void> JwtSource::run_shutdown(JwtSource self, std::optional<std::chrono::milliseconds> timeout) {
  if (!self.core_) co_return;
  auto state = self.core_->state;
  const auto bound = timeout.value_or(state->shutdown_timeout);
  state->request_stop();
  const auto stopped = [&](auto token) { return detail::async_stopped(state, std::move(token)); };
  auto [expired, result] = co_await detail::with_deadline(bound, stopped);
  if (expired)
    throw_error(spiffe_errc::shutdown_timeout,
                "JwtSource: the supervisor did not stop within " + std::to_string(bound.count()) + " ms");
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

JwtSourceBuilder JwtSourceBuilder::resolved() const {
  JwtSourceBuilder b = *this;
  if (b.factory_ || b.endpoint_) return b;
  try {
    b.endpoint_ = WorkloadEndpoint::from_environment();
  } catch (const Error& e) {
    b.endpoint_error_ = e;  // reported by the supervisor, as a bad endpoint given here would be
  }
  return b;
}

asio::awaitable<JwtSource> JwtSourceBuilder::run_build(JwtSourceBuilder self, std::optional<asio::any_io_executor> on) {
  const asio::any_io_executor executor = on ? *on : co_await asio::this_coro::executor;
  if (executor.target_type() == typeid(asio::system_executor))  // Asio 1.22's target<T>() does not check T
    throw_error(std::make_error_code(std::errc::invalid_argument),
                "JwtSourceBuilder::build: the handler has no executor; pass one to build");
  auto s = std::make_shared<detail::JwtState>(executor, "JwtSource");
  s->min_backoff = self.min_backoff_;
  s->max_backoff = self.max_backoff_;
  s->shutdown_timeout = self.shutdown_timeout_;
  s->limits = self.limits_;
  s->metrics = self.metrics_;
  s->log = self.logger_ ? self.logger_ : awaken::logger();
  s->jitter = self.jitter_ != nullptr ? self.jitter_ : &default_jitter();
  if (self.factory_) {
    s->factory = self.factory_;
  } else {
    // Resolved per client, so that a missing or bad endpoint is reported the same way.
    s->factory = [endpoint = self.endpoint_, failure = self.endpoint_error_, http = http::HttpClient{executor},
                  limits = self.limits_]() {
      if (!endpoint) throw failure;
      WorkloadApiOptions options;
      options.bundle_limits = limits;
      options.max_message_bytes =
          std::max<std::size_t>(options.max_message_bytes, limits.max_bundle_jwks_bytes + (1u << 20));
      return WorkloadApiClient{http, *endpoint, options};
    };
  }
  JwtSource source{std::make_shared<JwtSource::Core>(s), s.get()};
  s->running.store(true);
  const auto open = [limits = self.limits_](WorkloadApiClient& client) { return client.watch_jwt_bundles(limits); };
  asio::co_spawn(s->strand, detail::supervise(s, open, "bundle"), [s](std::exception_ptr e) {
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

  const auto sync_timeout = self.initial_sync_timeout_;
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
