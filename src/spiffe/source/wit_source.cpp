// WitSource: a FetchWITSVID stream and a FetchWITBundles stream, each under the one supervisor
// (spiffe/source/stream_driver.hpp), on one Workload API client; the picker and readers.
#include <awaken/spiffe/experimental/wit_source.hpp>

#include <spdlog/logger.h>

#include <awaken/error.hpp>

#include "spiffe/source/source_state.hpp"
#include "spiffe/source/stream_driver.hpp"

namespace awaken::spiffe::experimental {
namespace {

// One SVID update with the SVID picked from it. Updates are equal when they carry the same
// tokens with the same hints (a token names its key: the same token, the same key).
struct WitSnapshot {
  std::vector<WitSvid> svids;
  std::size_t picked = 0;

  const WitSvid* svid() const noexcept { return picked < svids.size() ? &svids[picked] : nullptr; }
  static const std::vector<WitSvid>& svids_of(const std::vector<WitSvid>& update) noexcept { return update; }
  friend bool operator==(const WitSnapshot& a, const WitSnapshot& b) noexcept {
    if (a.picked != b.picked || a.svids.size() != b.svids.size()) return false;
    for (std::size_t i = 0; i < a.svids.size(); ++i)
      if (a.svids[i].token().reveal() != b.svids[i].token().reveal() || a.svids[i].hint() != b.svids[i].hint())
        return false;
    return true;
  }
};

using SvidState = spiffe::detail::SourceState<WitSnapshot>;
using BundleState = spiffe::detail::SourceState<JwtBundleSet>;

[[noreturn]] void closed_error() { spiffe::detail::closed_error("WitSource"); }

}  // namespace

struct WitSource::Core {
  Core(std::shared_ptr<SvidState> s, std::shared_ptr<BundleState> b) noexcept
      : svids(std::move(s)), bundles(std::move(b)) {}
  ~Core() {
    svids->request_stop();
    bundles->request_stop();
  }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  std::shared_ptr<SvidState> svids;
  std::shared_ptr<BundleState> bundles;
};

namespace {

// The source is one: when either stream's state has closed (a shutdown, or the agent withdrew
// that half of the profile), both halves read as closed.
void check_open(const SvidState& svids, const BundleState& bundles) {
  if (svids.closed.load(std::memory_order_acquire) || bundles.closed.load(std::memory_order_acquire)) [[unlikely]]
    closed_error();
}

}  // namespace

WitSourceBuilder WitSource::builder() { return WitSourceBuilder{}; }

std::shared_ptr<const WitSvid> WitSource::svid() const {
  if (!core_) [[unlikely]]
    closed_error();
  check_open(*core_->svids, *core_->bundles);
  const auto& snapshot = spiffe::detail::thread_view(*core_->svids);
  const WitSvid* svid = snapshot->svid();
  if (svid == nullptr) [[unlikely]]
    throw_error(spiffe_errc::no_svid, "WitSource");
  return std::shared_ptr<const WitSvid>(snapshot, svid);
}

std::shared_ptr<const std::vector<WitSvid>> WitSource::svids() const {
  if (!core_) [[unlikely]]
    closed_error();
  check_open(*core_->svids, *core_->bundles);
  const auto& snapshot = spiffe::detail::thread_view(*core_->svids);
  return std::shared_ptr<const std::vector<WitSvid>>(snapshot, &snapshot->svids);
}

std::shared_ptr<const JwtBundleSet> WitSource::bundle_set() const {
  if (!core_) [[unlikely]]
    closed_error();
  check_open(*core_->svids, *core_->bundles);
  return spiffe::detail::thread_view(*core_->bundles);
}

std::shared_ptr<const JwtBundle> WitSource::bundle_for_trust_domain(const TrustDomain& td) const {
  if (!core_) [[unlikely]]
    closed_error();
  check_open(*core_->svids, *core_->bundles);
  const auto& set = spiffe::detail::thread_view(*core_->bundles);
  const JwtBundle* bundle = set->find(td.name());
  return bundle == nullptr ? nullptr : std::shared_ptr<const JwtBundle>(set, bundle);
}

bool WitSource::is_healthy() const noexcept {
  if (!core_) return false;
  auto& s = *core_->svids;
  auto& b = *core_->bundles;
  if (s.closed.load() || !s.running.load() || b.closed.load() || !b.running.load()) return false;
  try {
    const WitSvid* svid = spiffe::detail::thread_view(s)->svid();
    return svid != nullptr && svid->expiry() > s.clock->system_now() &&
           spiffe::detail::thread_view(b)->authority_count() > 0;
  } catch (...) {
    return false;
  }
}

std::uint64_t WitSource::sequence() const noexcept {
  if (!core_) return 0;
  return core_->svids->sequence.load(std::memory_order_acquire) +
         core_->bundles->sequence.load(std::memory_order_acquire);
}

asio::any_io_executor WitSource::fallback_executor() const noexcept {
  if (!core_) return asio::system_executor{};
  return core_->svids->strand.get_inner_executor();
}

asio::awaitable<void> WitSource::run_shutdown(WitSource self, std::optional<std::chrono::milliseconds> timeout) {
  if (!self.core_) co_return;
  // Both are asked to stop before either is waited for, and both within the one bound.
  self.core_->bundles->request_stop();
  const auto bound = timeout.value_or(self.core_->svids->shutdown_timeout);
  const auto started = std::chrono::steady_clock::now();
  co_await spiffe::detail::stop_source(self.core_->svids, bound);
  const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  co_await spiffe::detail::stop_source(self.core_->bundles, std::max(bound - spent, std::chrono::milliseconds{1}));
}

asio::awaitable<WitSource> WitSourceBuilder::run_build(spiffe::detail::SourceSettings settings,
                                                       std::optional<SpiffeId> id, WitSvidPicker picker,
                                                       std::optional<asio::any_io_executor> on) {
  const auto executor = co_await spiffe::detail::source_executor(on, "WitSourceBuilder");
  auto s = spiffe::detail::make_source_state<WitSnapshot>(settings, executor, "WitSource");
  auto b = spiffe::detail::make_source_state<JwtBundleSet>(settings, executor, "WitSource bundles");
  b->factory = s->factory;                                    // one client, one connection, for both streams
  WitSource source{std::make_shared<WitSource::Core>(s, b)};  // its end stops the supervisors
  const auto open_svids = [limits = settings.limits, id = std::move(id), picker = std::move(picker),
                           clock = s->clock](WorkloadApiClient& client) {
    return spiffe::detail::PickedStream<WitSvidStream, WitSnapshot, WitSvidPicker>{client.watch_wit_svids(id, limits),
                                                                                   picker, clock, "WitSource"};
  };
  const auto open_bundles = [limits = settings.limits](WorkloadApiClient& client) {
    return client.watch_wit_bundles(limits);
  };
  // Both streams start at once and share one initial-sync deadline.
  const auto started = std::chrono::steady_clock::now();
  spiffe::detail::spawn_supervisor(s, open_svids, "WIT-SVID");
  spiffe::detail::spawn_supervisor(b, open_bundles, "WIT bundle");
  co_await spiffe::detail::await_first_set(s, settings, started);
  co_await spiffe::detail::await_first_set(b, settings, started);
  co_return source;
}

}  // namespace awaken::spiffe::experimental
