// X509Source: a FetchX509SVID stream under the one supervisor (spiffe/source/stream_driver.hpp), the
// picker, and readers.
#include <awaken/spiffe/x509_source.hpp>

#include <spdlog/logger.h>

#include <awaken/error.hpp>

#include "spiffe/source/source_state.hpp"
#include "spiffe/source/stream_driver.hpp"

namespace awaken::spiffe {
namespace detail {

struct X509Snapshot {
  X509Context context;
  std::size_t picked = 0;

  const X509Svid* svid() const noexcept { return picked < context.svids.size() ? &context.svids[picked] : nullptr; }
  static const std::vector<X509Svid>& svids_of(const X509Context& c) noexcept { return c.svids; }
  friend bool operator==(const X509Snapshot&, const X509Snapshot&) noexcept = default;
};

template <>
struct published<X509Snapshot> {
  static const X509Context& view(const X509Snapshot& snapshot) noexcept { return snapshot.context; }
};

}  // namespace detail

struct X509Source::Core : detail::SourceCore<detail::X509Snapshot> {
  using SourceCore::SourceCore;
};

namespace {
[[noreturn]] void closed_error() { detail::closed_error("X509Source"); }
}  // namespace

X509SourceBuilder X509Source::builder() { return X509SourceBuilder{}; }

std::shared_ptr<const X509Svid> X509Source::svid() const {
  if (state_ == nullptr) [[unlikely]]
    closed_error();
  const auto& snapshot = detail::thread_view(*state_);
  const X509Svid* svid = snapshot->svid();
  if (svid == nullptr) [[unlikely]]
    throw_error(spiffe_errc::no_svid, "X509Source");
  return std::shared_ptr<const X509Svid>(snapshot, svid);
}

std::shared_ptr<const X509Context> X509Source::x509_context() const {
  if (state_ == nullptr) closed_error();
  const auto& snapshot = detail::thread_view(*state_);
  return std::shared_ptr<const X509Context>(snapshot, &snapshot->context);
}

std::shared_ptr<const X509BundleSet> X509Source::bundle_set() const {
  if (state_ == nullptr) closed_error();
  const auto& snapshot = detail::thread_view(*state_);
  return std::shared_ptr<const X509BundleSet>(snapshot, &snapshot->context.bundles);
}

std::shared_ptr<const X509Bundle> X509Source::x509_bundle_for_trust_domain(const TrustDomain& td) const {
  if (state_ == nullptr) [[unlikely]]
    closed_error();
  const auto& snapshot = detail::thread_view(*state_);
  const X509Bundle* bundle = snapshot->context.bundles.find(td.name());
  return bundle == nullptr ? nullptr : std::shared_ptr<const X509Bundle>(snapshot, bundle);
}

bool X509Source::is_healthy() const noexcept {
  if (!core_) return false;
  auto& s = *core_->state;
  if (s.closed.load() || !s.running.load()) return false;
  try {
    const auto& snapshot = detail::thread_view(s);
    const X509Svid* svid = snapshot->svid();
    return svid != nullptr && svid->expires_at() > s.clock->system_now() &&
           snapshot->context.bundles.authority_count() > 0;
  } catch (...) {
    return false;
  }
}

std::uint64_t X509Source::sequence() const noexcept {
  return core_ ? core_->state->sequence.load(std::memory_order_acquire) : 0;
}

X509SourceUpdates X509Source::updates() const {
  if (!core_) closed_error();
  return X509SourceUpdates{core_->state, sequence()};
}

template class SourceUpdates<detail::X509Snapshot, X509Context>;

asio::any_io_executor X509Source::fallback_executor() const noexcept {
  if (!core_) return asio::system_executor{};
  return core_->state->strand.get_inner_executor();
}

asio::awaitable<void> X509Source::run_shutdown(X509Source self, std::optional<std::chrono::milliseconds> timeout) {
  if (self.core_) co_await detail::stop_source(self.core_->state, timeout);
}

asio::awaitable<X509Source> X509SourceBuilder::run_build(detail::SourceSettings settings, X509SvidPicker picker,
                                                         std::optional<asio::any_io_executor> on) {
  const auto executor = co_await detail::source_executor(on, "X509SourceBuilder");
  auto s = detail::make_source_state<detail::X509Snapshot>(settings, executor, "X509Source");
  s->x509 = true;
  X509Source source{std::make_shared<X509Source::Core>(s), s.get()};  // its end stops the supervisor
  const auto open = [limits = settings.limits, picker = std::move(picker),
                     clock = s->clock](WorkloadApiClient& client) {
    return detail::PickedStream<X509ContextStream, detail::X509Snapshot, X509SvidPicker>{
        client.watch_x509_context(limits), picker, clock, "X509Source"};
  };
  co_await detail::start_source(s, settings, open, "X.509 context");
  co_return source;
}

}  // namespace awaken::spiffe
