// WitSource: the WIT profile of the one source (a FetchWITSVID stream, its SVID picked, and a
// FetchWITBundles stream, folded into one snapshot), and its readers.
#include <awaken/spiffe/experimental/wit_source.hpp>

#include <spdlog/logger.h>

#include <awaken/error.hpp>

#include "spiffe/source/basic_source.hpp"

namespace awaken::spiffe {
namespace detail {

using experimental::WitContext;
using experimental::WitProfile;
using experimental::WitSvid;
using experimental::WitSvidPicker;

namespace {
// Tokens are equal when they are the same token with the same hint (a token names its key: the
// same token, the same key).
bool same_svids(const std::vector<WitSvid>& a, const std::vector<WitSvid>& b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].token().reveal() != b[i].token().reveal() || a[i].hint() != b[i].hint()) return false;
  return true;
}
}  // namespace

// One SVID update with the SVID picked from it: what the FetchWITSVID lane delivers.
struct WitPick {
  std::vector<WitSvid> svids;
  std::size_t picked = 0;
  static const std::vector<WitSvid>& svids_of(const std::vector<WitSvid>& update) noexcept { return update; }
};

struct WitSnapshot {
  WitContext context;
  std::size_t picked = 0;

  const WitSvid* svid() const noexcept { return picked < context.svids.size() ? &context.svids[picked] : nullptr; }
};

// The SVID lane's update replaces the SVIDs, the bundle lane's the bundles.
struct FoldSvids {
  static bool same(const WitSnapshot& latest, const WitPick& update) noexcept {
    return latest.picked == update.picked && same_svids(latest.context.svids, update.svids);
  }
  static WitSnapshot merge(const WitSnapshot& latest, WitPick&& update) {
    return {{std::move(update.svids), latest.context.bundles}, update.picked};
  }
};
struct FoldBundles {
  static bool same(const WitSnapshot& latest, const JwtBundleSet& update) noexcept {
    return latest.context.bundles == update;
  }
  static WitSnapshot merge(const WitSnapshot& latest, JwtBundleSet&& update) {
    return {{latest.context.svids, std::move(update)}, latest.picked};
  }
};

template <>
struct ProfileRules<WitProfile> {
  static constexpr const char* name = "WitSource";
  static constexpr std::size_t lanes = 2;
  static const WitContext& view(const WitSnapshot& snapshot) noexcept { return snapshot.context; }
  static bool healthy(const WitSnapshot& s, const Clock& clock) noexcept { return serves_live_svid(s, clock); }
  // Both streams on the source's one client: one connection.
  static void spawn(const std::shared_ptr<SourceState<WitSnapshot>>& s, const SourceSettings& settings,
                    WitProfile::options options) {
    const auto open_svids = [limits = settings.limits, id = std::move(options.spiffe_id),
                             picker = std::move(options.picker),
                             clock = &s->timing.clock_or_real()](WorkloadApiClient& client) {
      return PickedStream<WitSvidStream, WitPick, WitSvidPicker>{client.watch_wit_svids(id, limits), picker, clock,
                                                                 name};
    };
    const auto open_bundles = [limits = settings.limits](WorkloadApiClient& client) {
      return client.watch_wit_bundles(limits);
    };
    spawn_supervisor(s, 0, open_svids, "WIT-SVID", false, FoldSvids{});
    spawn_supervisor(s, 1, open_bundles, "WIT bundle", false, FoldBundles{});
  }
};

}  // namespace detail

namespace experimental {
namespace {
const WitSource& source_of(const WitSourceReaders& readers) noexcept { return static_cast<const WitSource&>(readers); }
}  // namespace

std::shared_ptr<const WitSvid> WitSourceReaders::svid() const {
  return spiffe::detail::picked_svid(source_of(*this).snapshot(), "WitSource");
}

std::shared_ptr<const std::vector<WitSvid>> WitSourceReaders::svids() const {
  const auto& snapshot = source_of(*this).snapshot();
  return std::shared_ptr<const std::vector<WitSvid>>(snapshot, &snapshot->context.svids);
}

std::shared_ptr<const WitContext> WitSourceReaders::wit_context() const {
  const auto& snapshot = source_of(*this).snapshot();
  return std::shared_ptr<const WitContext>(snapshot, &snapshot->context);
}

std::shared_ptr<const JwtBundleSet> WitSourceReaders::bundle_set() const {
  const auto& snapshot = source_of(*this).snapshot();
  return std::shared_ptr<const JwtBundleSet>(snapshot, &snapshot->context.bundles);
}

std::shared_ptr<const JwtBundle> WitSourceReaders::bundle_for_trust_domain(const TrustDomain& td) const {
  const auto& snapshot = source_of(*this).snapshot();
  return spiffe::detail::bundle_in(snapshot, snapshot->context.bundles, td);
}

}  // namespace experimental

template class basic_source<experimental::WitProfile>;
template class SourceUpdates<experimental::WitProfile>;

}  // namespace awaken::spiffe
