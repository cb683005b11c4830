// Material for the GCE / GKE metadata server's access tokens.
#pragma once

#include <string>

#include <awaken/credentials/material.hpp>

namespace awaken {

/// Where the metadata server is and which service account to ask for.
struct GceMetadataOptions {
  /// The server's base URL; tests point it at a local peer. http is allowed here only because
  /// the metadata server is link-local and speaks nothing else.
  std::string base_url = "http://metadata.google.internal";
  /// The service account: `default` or an email address.
  std::string account = "default";
};

/// Material that mints with `GET {base_url}/computeMetadata/v1/instance/service-accounts/
/// {account}/token` and `Metadata-Flavor: Google`. A non-empty broker scope is sent as
/// `scopes` (spaces become commas). Errors follow the broker's classification.
///
/// Throws `Error{credential_errc::invalid_material}` for a malformed base URL or account.
CredentialMaterial gce_metadata(GceMetadataOptions options = {});

}  // namespace awaken
