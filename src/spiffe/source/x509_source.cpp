// X509Source: the X.509 profile of the one source (one FetchX509SVID stream, its SVID picked),
// and its readers.
#include <awaken/spiffe/x509_source.hpp>

#include <spdlog/logger.h>

#include <awaken/error.hpp>

#include "spiffe/source/basic_source.hpp"

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
struct ProfileRules<X509Profile> {
  static constexpr const char* name = "X509Source";
  static constexpr std::size_t lanes = 1;
  static const X509Context& view(const X509Snapshot& snapshot) noexcept { return snapshot.context; }
  static bool healthy(const X509Snapshot& s, const Clock& clock) noexcept { return serves_live_svid(s, clock); }
  static void spawn(const std::shared_ptr<SourceState<X509Snapshot>>& s, const SourceSettings& settings,
                    X509Profile::options options) {
    const auto open = [limits = settings.limits, picker = std::move(options.picker),
                       clock = &s->timing.clock_or_real()](WorkloadApiClient& client) {
      return PickedStream<X509ContextStream, X509Snapshot, X509SvidPicker>{client.watch_x509_context(limits), picker,
                                                                           clock, name};
    };
    spawn_supervisor(s, 0, open, "X.509 context", true);
  }
};

}  // namespace detail

namespace {
const X509Source& source_of(const X509SourceReaders& readers) noexcept {
  return static_cast<const X509Source&>(readers);
}
}  // namespace

std::shared_ptr<const X509Svid> X509SourceReaders::svid() const {
  return detail::picked_svid(source_of(*this).snapshot(), "X509Source");
}

std::shared_ptr<const X509Context> X509SourceReaders::x509_context() const {
  const auto& snapshot = source_of(*this).snapshot();
  return std::shared_ptr<const X509Context>(snapshot, &snapshot->context);
}

std::shared_ptr<const X509BundleSet> X509SourceReaders::bundle_set() const {
  const auto& snapshot = source_of(*this).snapshot();
  return std::shared_ptr<const X509BundleSet>(snapshot, &snapshot->context.bundles);
}

std::shared_ptr<const X509Bundle> X509SourceReaders::x509_bundle_for_trust_domain(const TrustDomain& td) const {
  const auto& snapshot = source_of(*this).snapshot();
  return detail::bundle_in(snapshot, snapshot->context.bundles, td);
}

template class basic_source<X509Profile>;
template class SourceUpdates<X509Profile>;

}  // namespace awaken::spiffe
