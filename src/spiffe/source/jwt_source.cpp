// JwtSource: the JWT profile of the one source (one FetchJWTBundles stream), its readers and
// fetch_jwt_svid.
#include <awaken/spiffe/jwt_source.hpp>

#include <spdlog/logger.h>

#include <awaken/error.hpp>

#include "spiffe/source/basic_source.hpp"

namespace awaken::spiffe {
namespace detail {

template <>
struct ProfileRules<JwtProfile> {
  static constexpr const char* name = "JwtSource";
  static constexpr std::size_t lanes = 1;
  static const JwtBundleSet& view(const JwtBundleSet& set) noexcept { return set; }
  static bool healthy(const JwtBundleSet& set, const Clock& /*clock*/) noexcept { return set.authority_count() > 0; }
  static void spawn(const std::shared_ptr<SourceState<JwtBundleSet>>& s, const SourceSettings& settings,
                    JwtProfile::options /*options*/) {
    const auto open = [limits = settings.limits](WorkloadApiClient& client) {
      return client.watch_jwt_bundles(limits);
    };
    spawn_supervisor(s, 0, open, "bundle", false);
  }
};

}  // namespace detail

namespace {
const JwtSource& source_of(const JwtSourceReaders& readers) noexcept { return static_cast<const JwtSource&>(readers); }
}  // namespace

std::shared_ptr<const JwtBundleSet> JwtSourceReaders::bundle_set() const { return source_of(*this).snapshot(); }

std::shared_ptr<const JwtBundle> JwtSourceReaders::bundle_for_trust_domain(const TrustDomain& td) const {
  const auto& set = source_of(*this).snapshot();
  return detail::bundle_in(set, *set, td);
}

std::shared_ptr<detail::SourceState<JwtBundleSet>> JwtSourceReaders::fetch_state() const noexcept {
  return source_of(*this).state_handle();
}

asio::any_io_executor JwtSourceReaders::fetch_executor() const noexcept { return source_of(*this).fallback_executor(); }

asio::awaitable<JwtSvid> JwtSourceReaders::run_fetch_jwt_svid(std::shared_ptr<detail::SourceState<JwtBundleSet>> state,
                                                              std::vector<std::string> audiences,
                                                              std::optional<SpiffeId> spiffe_id) {
  if (!state || state->closed.load()) detail::closed_error("JwtSource");
  std::error_code first_failure;
  try {
    const WorkloadApiClient client = state->factory();
    co_return co_await client.fetch_jwt_svid(audiences, spiffe_id);
  } catch (const Error& e) {
    if (!(e.code() == awaken::condition::workload_transient)) throw;
    first_failure = e.code();
  }
  if (state->closed.load()) detail::closed_error("JwtSource");
  state->log->debug("awaken: JwtSource: fetch_jwt_svid failed ({}), trying once more", first_failure.message());
  const WorkloadApiClient client = state->factory();
  co_return co_await client.fetch_jwt_svid(std::move(audiences), std::move(spiffe_id));
}

template class basic_source<JwtProfile>;
template class SourceUpdates<JwtProfile>;

}  // namespace awaken::spiffe
