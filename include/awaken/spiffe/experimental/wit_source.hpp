// WitSource (experimental, as the WIT-SVID profile is): this workload's WIT-SVIDs and the WIT
// bundles of every trust domain it is told about, kept current from the Workload API by two
// supervised streams (`FetchWITSVID`, `FetchWITBundles`) publishing one snapshot, and read
// without blocking.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/source.hpp>

namespace awaken::spiffe {
namespace detail {
struct WitSnapshot;  // a context and the SVID picked from it
}  // namespace detail

namespace experimental {

/// Chooses the SVID a `WitSource` serves from those of an update: its index, or nullopt when
/// none fits (the update is then rejected with `no_svid` and the last good one kept).
using WitSvidPicker = std::function<std::optional<std::size_t>(std::span<const WitSvid>)>;
/// (`spiffe::pick_by_hint` and `spiffe::pick_by_id` make pickers for it.)

/// What a `WitSource` publishes: the WIT-SVIDs of the last good SVID update, in the agent's
/// order, and the WIT bundles of the last good bundle update.
struct WitContext {
  std::vector<WitSvid> svids;
  JwtBundleSet bundles;
};

/// What a `WitSource` adds to every source's members: the SVID to prove with, and the bundles
/// to verify against. Use `svid()` to make workload proofs (`make_workload_proof`) and the
/// source itself as the bundle source of a `WptVerifier` or of `WitSvid::parse_and_validate`.
class WitSourceReaders : public BundleSource {
 public:
  /// The SVID to prove with now (the picker's choice), with its private key. Throws
  /// `source_closed` after shutdown.
  std::shared_ptr<const WitSvid> svid() const;
  /// Every SVID of the last good update, in the agent's order.
  std::shared_ptr<const std::vector<WitSvid>> svids() const;
  /// The SVIDs and bundles together, as one snapshot.
  std::shared_ptr<const WitContext> wit_context() const;
  /// The WIT bundles of every trust domain the last good update carried.
  std::shared_ptr<const JwtBundleSet> bundle_set() const;
  /// The current WIT bundle of `td`, or null. Throws `source_closed` after shutdown.
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override;

 protected:
  WitSourceReaders() = default;
};

/// The WIT profile: a `FetchWITSVID` and a `FetchWITBundles` stream on one connection; publishes
/// the `WitContext` with the SVID the picker chose. The profile is optional: an agent that
/// answers `Unimplemented` (or `FailedPrecondition`) does not offer it, and `build` fails at
/// once with `spiffe_errc::not_offered`; an agent that withdraws it later closes the source.
struct WitProfile {
  using snapshot_type = spiffe::detail::WitSnapshot;
  using view_type = WitContext;
  using readers = WitSourceReaders;
  struct options {
    WitSvidPicker picker;
    std::optional<SpiffeId> spiffe_id;
  };
};

/// This workload's WIT-SVIDs and WIT bundles (see `basic_source` for what every source does).
/// `is_healthy` asks for an SVID that has not expired and one authority at least.
using WitSource = basic_source<WitProfile>;
using WitSourceBuilder = basic_source_builder<WitProfile>;
/// The sequence numbers of a `WitSource`'s snapshots, and waiting for the next one.
using WitSourceUpdates = SourceUpdates<WitProfile>;

}  // namespace experimental

extern template class basic_source<experimental::WitProfile>;
extern template class SourceUpdates<experimental::WitProfile>;

}  // namespace awaken::spiffe
