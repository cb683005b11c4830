// SPIFFE TLS and mutual TLS on asio::ssl: contexts that present this workload's current
// X.509-SVID at every handshake and verify the peer's against the bundle of its own trust
// domain, then ask an authorizer.
//
//   asio::ssl::context ctx{asio::ssl::context::tls_server};
//   awaken::spiffe::configure_mtls_server(ctx, source, awaken::spiffe::authorize_member_of(td));
//   ... after the handshake: awaken::spiffe::peer_spiffe_id(stream)
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/spiffe_id.hpp>
#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_source.hpp>
#include <awaken/spiffe/x509_svid.hpp>

namespace awaken::spiffe {

/// Decides whether a peer whose X.509-SVID verified may go on.
///
/// Thread safety: called from any thread that runs a handshake; must not block.
class Authorizer {
 public:
  using Predicate = std::function<bool(const SpiffeId& id, std::span<const Certificate> verified_chain)>;
  /// `description` names the rule in refusals ("member of example.org").
  Authorizer(Predicate predicate, std::string description)
      : predicate_(std::move(predicate)), description_(std::move(description)) {}

  bool operator()(const SpiffeId& id, std::span<const Certificate> verified_chain) const {
    return predicate_ && predicate_(id, verified_chain);
  }
  const std::string& description() const noexcept { return description_; }

 private:
  Predicate predicate_;
  std::string description_;
};

/// Any peer whose SVID verifies.
Authorizer authorize_any();
/// Only `id`.
Authorizer authorize_id(SpiffeId id);
/// Any of `ids`.
Authorizer authorize_one_of(std::vector<SpiffeId> ids);
/// Any SPIFFE ID of trust domain `td`.
Authorizer authorize_member_of(TrustDomain td);
/// The IDs for which `predicate` holds.
Authorizer authorize_if(std::function<bool(const SpiffeId&)> predicate, std::string description = "a predicate");

/// How the TLS contexts verify peers.
struct TlsOptions {
  /// Time and `notBefore` leeway for the peer's chain.
  X509VerifyOptions verify;
};

/// The SVID and bundles a TLS context reads at each handshake; an `X509Source` is both.
/// `StaticX509Source` serves fixed ones. The context holds them until it is freed (after its
/// last stream): an `X509Source` lives on its io_context, so free the context first.
struct TlsSources {
  std::shared_ptr<const X509SvidSource> svids;
  std::shared_ptr<const X509BundleSource> bundles;

  /// Both from one source handle (copied).
  static TlsSources from(const X509Source& source);
};

/// Each `configure_*` replaces the context's verification with awaken's: OpenSSL's chain
/// building, `set_verify_callback` and host-name checks no longer apply, and the peer's verified
/// chain is not kept on the connection (`peer_spiffe_id` tells who it is). Configure a context
/// before its first handshake: a later configuration applies to the next handshake of every
/// stream of the context, those made before included, but must not run while handshakes are
/// under way on other threads. Do not lower the verify mode
/// afterwards: a client set to `verify_none` would finish handshakes that verification refused.
/// `TlsOptions::verify.clock`, when set, must outlive the context.
///
/// A server that presents its SVID and requires and verifies the client's.
void configure_mtls_server(asio::ssl::context& ctx, TlsSources sources, Authorizer authorizer, TlsOptions options = {});
/// A client that presents its SVID when asked and verifies the server's.
void configure_mtls_client(asio::ssl::context& ctx, TlsSources sources, Authorizer authorizer, TlsOptions options = {});
/// A server that presents its SVID and asks for no client certificate.
void configure_tls_server(asio::ssl::context& ctx, std::shared_ptr<const X509SvidSource> svids);
/// A client that verifies the server's SVID and presents none.
void configure_tls_client(asio::ssl::context& ctx, std::shared_ptr<const X509BundleSource> bundles,
                          Authorizer authorizer, TlsOptions options = {});

inline void configure_mtls_server(asio::ssl::context& ctx, const X509Source& source, Authorizer authorizer,
                                  TlsOptions options = {}) {
  configure_mtls_server(ctx, TlsSources::from(source), std::move(authorizer), options);
}
inline void configure_mtls_client(asio::ssl::context& ctx, const X509Source& source, Authorizer authorizer,
                                  TlsOptions options = {}) {
  configure_mtls_client(ctx, TlsSources::from(source), std::move(authorizer), options);
}
inline void configure_tls_server(asio::ssl::context& ctx, const X509Source& source) {
  configure_tls_server(ctx, TlsSources::from(source).svids);
}
inline void configure_tls_client(asio::ssl::context& ctx, const X509Source& source, Authorizer authorizer,
                                 TlsOptions options = {}) {
  configure_tls_client(ctx, TlsSources::from(source).bundles, std::move(authorizer), options);
}

/// The peer's SPIFFE ID once a handshake on `ssl` verified and authorized it; nullopt before,
/// after a refusal, or on a context awaken did not configure.
std::optional<SpiffeId> peer_spiffe_id(const SSL* ssl);
/// Why the peer was refused in the last handshake on `ssl` (wrong trust domain, not
/// authorized, expired, not an SVID...), or nullopt.
std::optional<Error> peer_refusal(const SSL* ssl);

template <class NextLayer>
std::optional<SpiffeId> peer_spiffe_id(asio::ssl::stream<NextLayer>& stream) {
  return peer_spiffe_id(stream.native_handle());
}
template <class NextLayer>
std::optional<Error> peer_refusal(asio::ssl::stream<NextLayer>& stream) {
  return peer_refusal(stream.native_handle());
}

}  // namespace awaken::spiffe
