// JwtSource: JWT bundles kept current from the Workload API by a supervised `FetchJWTBundles`
// stream, read without blocking, and JWT-SVIDs fetched on demand.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <awaken/completion.hpp>
#include <awaken/detail/spawn_operation.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/jwt_svid.hpp>
#include <awaken/spiffe/source.hpp>

namespace awaken::spiffe {

/// What a `JwtSource` adds to every source's members: its bundles, and JWT-SVIDs on demand.
class JwtSourceReaders : public BundleSource {
 public:
  /// The current bundle set. Throws `Error{spiffe_errc::source_closed}` after shutdown.
  std::shared_ptr<const JwtBundleSet> bundle_set() const;
  /// The current bundle of `td`, or null. Throws `source_closed` after shutdown.
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override;

  /// A JWT-SVID for `audiences` (and `spiffe_id`, when given) from the Workload API, on the
  /// source's client (its one connection, or a new client of the `client_factory`); a failure
  /// equal to `awaken::condition::workload_transient` is retried once, on a new client. Not
  /// cached: put a broker in front for that. Completes with `void(std::error_code, JwtSvid)`;
  /// `source_closed` after shutdown.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto fetch_jwt_svid(std::vector<std::string> audiences, std::optional<SpiffeId> spiffe_id = std::nullopt,
                      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<JwtSvid>(
        fetch_executor(),
        [state = fetch_state(), a = std::move(audiences), id = std::move(spiffe_id)]() mutable {
          return run_fetch_jwt_svid(std::move(state), std::move(a), std::move(id));
        },
        std::forward<CompletionToken>(token));
  }

 protected:
  JwtSourceReaders() = default;

 private:
  // A fetch holds the source's state only: it does not keep the supervisor running.
  std::shared_ptr<detail::SourceState<JwtBundleSet>> fetch_state() const noexcept;
  asio::any_io_executor fetch_executor() const noexcept;
  static asio::awaitable<JwtSvid> run_fetch_jwt_svid(std::shared_ptr<detail::SourceState<JwtBundleSet>> state,
                                                     std::vector<std::string> audiences,
                                                     std::optional<SpiffeId> spiffe_id);
};

/// The JWT profile: one `FetchJWTBundles` stream; publishes the `JwtBundleSet`.
struct JwtProfile {
  using snapshot_type = JwtBundleSet;
  using view_type = JwtBundleSet;
  using readers = JwtSourceReaders;
  struct options {};
};

/// The JWT bundles of every trust domain the Workload API tells this workload about (see
/// `basic_source` for what every source does). `is_healthy` asks for one authority at least.
using JwtSource = basic_source<JwtProfile>;
using JwtSourceBuilder = basic_source_builder<JwtProfile>;
/// The sequence numbers of a `JwtSource`'s bundle sets, and waiting for the next one.
using JwtSourceUpdates = SourceUpdates<JwtProfile>;

extern template class basic_source<JwtProfile>;
extern template class SourceUpdates<JwtProfile>;

}  // namespace awaken::spiffe
