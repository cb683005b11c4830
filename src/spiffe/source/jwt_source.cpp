// JwtSource: a FetchJWTBundles stream under the one supervisor (spiffe/source/stream_driver.hpp),
// readers, update waiters, fetch_jwt_svid and shutdown.
#include <awaken/spiffe/jwt_source.hpp>

#include <algorithm>
#include <typeinfo>

#include <spdlog/logger.h>
#include <asio/co_spawn.hpp>
#include <asio/this_coro.hpp>

#include <awaken/error.hpp>
#include <awaken/log.hpp>

#include "spiffe/source/source_state.hpp"
#include "spiffe/source/stream_driver.hpp"

namespace awaken::spiffe {

struct JwtSource::Core : detail::SourceCore<JwtBundleSet> {
  using SourceCore::SourceCore;
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

template class SourceUpdates<JwtBundleSet, JwtBundleSet>;

asio::any_io_executor JwtSource::fallback_executor() const noexcept {
  if (!core_) return asio::system_executor{};
  return core_->state->strand.get_inner_executor();
}

std::shared_ptr<detail::SourceState<JwtBundleSet>> JwtSource::state_handle() const noexcept {
  return core_ ? core_->state : nullptr;
}

asio::awaitable<JwtSvid> JwtSource::run_fetch_jwt_svid(std::shared_ptr<detail::SourceState<JwtBundleSet>> state,
                                                       std::vector<std::string> audiences,
                                                       std::optional<SpiffeId> spiffe_id) {
  if (!state || state->closed.load()) closed_error();
  std::error_code first_failure;
  try {
    const WorkloadApiClient client = state->factory();
    co_return co_await client.fetch_jwt_svid(audiences, spiffe_id);
  } catch (const Error& e) {
    if (!(e.code() == awaken::condition::workload_transient)) throw;
    first_failure = e.code();
  }
  if (state->closed.load()) closed_error();
  state->log->debug("awaken: JwtSource: fetch_jwt_svid failed ({}), trying once more", first_failure.message());
  const WorkloadApiClient client = state->factory();
  co_return co_await client.fetch_jwt_svid(std::move(audiences), std::move(spiffe_id));
}

asio::awaitable<void> JwtSource::run_shutdown(JwtSource self, std::optional<std::chrono::milliseconds> timeout) {
  if (self.core_) co_await detail::stop_source(self.core_->state, timeout);
}

asio::awaitable<JwtSource> JwtSourceBuilder::run_build(detail::SourceSettings settings,
                                                       std::optional<asio::any_io_executor> on) {
  const auto executor = co_await detail::source_executor(on, "JwtSourceBuilder");
  auto s = detail::make_source_state<JwtBundleSet>(settings, executor, "JwtSource");
  JwtSource source{std::make_shared<JwtSource::Core>(s), s.get()};  // its end stops the supervisor
  const auto open = [limits = settings.limits](WorkloadApiClient& client) { return client.watch_jwt_bundles(limits); };
  co_await detail::start_source(s, settings, open, "bundle");
  co_return source;
}

}  // namespace awaken::spiffe
