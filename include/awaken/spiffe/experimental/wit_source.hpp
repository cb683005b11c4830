// WitSource (experimental, as the WIT-SVID profile is): this workload's WIT-SVIDs and the WIT
// bundles of every trust domain it is told about, kept current from the Workload API by the same
// supervisor as JwtSource and X509Source, and read without blocking.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/execution/executor.hpp>
#include <asio/system_executor.hpp>

#include <awaken/detail/spawn_operation.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/source.hpp>
#include <awaken/spiffe/workload_api.hpp>

namespace awaken::spiffe::experimental {

/// Chooses the SVID a `WitSource` serves from those of an update: its index, or nullopt when
/// none fits (the update is then rejected with `no_svid` and the last good one kept).
using WitSvidPicker = std::function<std::optional<std::size_t>(std::span<const WitSvid>)>;
/// (`spiffe::pick_by_hint` and `spiffe::pick_by_id` make pickers for it.)

class WitSourceBuilder;

/// This workload's WIT-SVIDs (a `FetchWITSVID` stream) and the WIT bundles (a `FetchWITBundles`
/// stream), each stream kept open by the supervisor every source shares, with its contract: an
/// initial sync of both (started together, within one timeout), jittered backoff reset by a
/// good update, the last good set kept through any failure, limits checked before anything is
/// published, publication by atomic swap, and a bounded idempotent shutdown. An SVID update is refused when no SVID
/// fits the picker or the picked one has expired.
///
/// The WIT profile is optional: an agent that answers `Unimplemented` (or `FailedPrecondition`)
/// does not offer it, and `build` fails at once with `spiffe_errc::not_offered` (no retry). An
/// agent that withdraws it later ends the source the same way: it closes (readers fail with
/// `source_closed`, `is_healthy` is false), since what the agent no longer offers must not be
/// used.
///
/// Use `svid()` to make workload proofs (`make_workload_proof`) and the source itself as the
/// bundle source of a `WptVerifier` or of `WitSvid::parse_and_validate`.
///
/// A cheap handle: copies share one source; destroying the last handle stops the supervisors.
///
/// Thread safety: every member may be called from any thread at once. Readers take no lock and
/// allocate nothing once their thread has seen the current update.
class WitSource final : public BundleSource, public spiffe::SourceShutdown<WitSource> {
 public:
  WitSource() = default;  ///< an empty handle, which behaves as a closed source

  static WitSourceBuilder builder();

  /// The SVID to prove with now (the picker's choice), with its private key. Throws
  /// `source_closed` after shutdown.
  std::shared_ptr<const WitSvid> svid() const;
  /// Every SVID of the last good update, in the agent's order.
  std::shared_ptr<const std::vector<WitSvid>> svids() const;
  /// The WIT bundles of every trust domain the last good update carried.
  std::shared_ptr<const JwtBundleSet> bundle_set() const;
  /// The current WIT bundle of `td`, or null. Throws `source_closed` after shutdown.
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override;

  /// Open, both supervisors running, an SVID that has not expired, and at least one authority.
  bool is_healthy() const noexcept;
  /// How many updates were published, SVIDs and bundles together.
  std::uint64_t sequence() const noexcept;
  // shutdown() and shutdown(timeout): `SourceShutdown`.

 private:
  friend class WitSourceBuilder;
  friend class spiffe::SourceShutdown<WitSource>;
  struct Core;
  explicit WitSource(std::shared_ptr<Core> core) noexcept : core_(std::move(core)) {}
  asio::any_io_executor fallback_executor() const noexcept;
  static asio::awaitable<void> run_shutdown(WitSource self, std::optional<std::chrono::milliseconds> timeout);

  std::shared_ptr<Core> core_;
};

/// Configures and builds a `WitSource` (the common settings are `SourceBuilder`'s).
class WitSourceBuilder : public SourceBuilder<WitSourceBuilder> {
 public:
  /// Asks the agent for this identity's SVIDs only; every identity of the workload by default.
  WitSourceBuilder& spiffe_id(SpiffeId id) {
    spiffe_id_ = std::move(id);
    return *this;
  }
  /// Which SVID `svid()` serves; the first of each update by default.
  WitSourceBuilder& svid_picker(WitSvidPicker picker) {
    picker_ = std::move(picker);
    return *this;
  }

  /// Starts the source on `executor` and completes once the first good SVIDs and bundles are
  /// published: `void(std::error_code, WitSource)`, failing as `JwtSourceBuilder::build` does,
  /// and with `not_offered` when the agent has no WIT profile.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto build(asio::any_io_executor executor, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<WitSource>(
        executor,
        [s = settings_.resolved(), id = spiffe_id_, p = picker_, executor]() mutable {
          return run_build(std::move(s), std::move(id), std::move(p), executor);
        },
        std::forward<CompletionToken>(token));
  }
  /// As above, on the handler's associated executor.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!asio::execution::is_executor<std::decay_t<CompletionToken>>::value) auto build(
      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<WitSource, true>(
        asio::system_executor{},
        [s = settings_.resolved(), id = spiffe_id_, p = picker_]() mutable {
          return run_build(std::move(s), std::move(id), std::move(p), std::nullopt);
        },
        std::forward<CompletionToken>(token));
  }

 private:
  std::optional<SpiffeId> spiffe_id_;
  WitSvidPicker picker_;
  static asio::awaitable<WitSource> run_build(detail::SourceSettings settings, std::optional<SpiffeId> id,
                                              WitSvidPicker picker, std::optional<asio::any_io_executor> executor);
};

}  // namespace awaken::spiffe::experimental
