// What the federation minters share: a JWT-SVID with Workload API failures in the broker's
// terms, and the generic OAuth minter under a kind label of the caller's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include <awaken/credentials/federation.hpp>
#include <awaken/credentials/material.hpp>
#include <awaken/spiffe/jwt_source.hpp>

namespace awaken::detail {

/// A JWT-SVID for `audiences` from `source`: a transient Workload API failure is
/// `credential_errc::transient_upstream`, any other `permanent_upstream`, the text naming the
/// provider.
asio::awaitable<spiffe::JwtSvid> fetch_svid(const spiffe::JwtSource& source, std::vector<std::string> audiences,
                                            const std::optional<spiffe::SpiffeId>& id, const MintContext& ctx);

/// Throws `invalid_material` naming `what` when `source` is an empty handle.
void need_source(const spiffe::JwtSource& source, std::string_view what);

/// `federated_oauth(config)` whose minter reports `kind_label` (a string literal) and whose
/// texts name it.
CredentialMaterial make_federated_oauth(FederatedOAuth config, const char* kind_label);

}  // namespace awaken::detail
