// SPIFFE (m)TLS on OpenSSL contexts: a certificate callback that presents the current SVID at
// each handshake, and a verification callback that replaces OpenSSL's whole chain building with
// `verify_x509_svid` against the peer's own trust domain, then the authorizer.
#include <awaken/spiffe/tls.hpp>

#include <algorithm>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <spdlog/logger.h>

#include <awaken/log.hpp>

#include "core/openssl_ptr.hpp"

namespace awaken::spiffe {
namespace {

using awaken::detail::OpensslPtr;

void free_stack(STACK_OF(X509) * s) noexcept { sk_X509_free(s); }  // a macro in OpenSSL 3

// What a configured context reads at each handshake; owned by the SSL_CTX's ex_data.
struct TlsConfig {
  std::shared_ptr<const X509SvidSource> svids;      // null: present nothing
  std::shared_ptr<const X509BundleSource> bundles;  // null: verify nothing
  std::optional<Authorizer> authorizer;
  TlsOptions options;
};

// What a connection learned about its peer; owned by the SSL's ex_data.
struct PeerInfo {
  std::optional<SpiffeId> id;
  std::optional<Error> refusal;
};

// Every configuration a context was given; the last one applies. Earlier ones are kept until
// the context is freed, so that a handshake that read one just before a reconfiguration never
// reads freed memory.
struct TlsConfigs {
  std::vector<std::unique_ptr<TlsConfig>> all;
};

template <class T>
void free_ex_data(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/, void* /*argp*/) {
  delete static_cast<T*>(ptr);
}

// A duplicated connection (SSL_dup) has verified nobody yet.
int dup_peer_info(CRYPTO_EX_DATA* /*to*/, const CRYPTO_EX_DATA* /*from*/, void** from_d, int /*idx*/, long /*argl*/,
                  void* /*argp*/) {
  *from_d = nullptr;
  return 1;
}

int config_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_ex_data<TlsConfigs>);
  return index;
}

int peer_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, dup_peer_info, free_ex_data<PeerInfo>);
  return index;
}

PeerInfo& peer_info(SSL* ssl) {
  auto* info = static_cast<PeerInfo*>(SSL_get_ex_data(ssl, peer_index()));
  if (info == nullptr) {
    auto fresh = std::make_unique<PeerInfo>();
    if (SSL_set_ex_data(ssl, peer_index(), fresh.get()) != 1) throw std::bad_alloc{};
    info = fresh.release();
  }
  return *info;
}

// The configuration in force for `ssl`: its context's latest. (OpenSSL copies the certificate
// callback's argument into each connection when it is made, but reads the verification
// callback's from the context at each handshake; both read the context's here.)
const TlsConfig* current_config(const SSL* ssl) noexcept {
  const auto* configs = static_cast<const TlsConfigs*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), config_index()));
  return configs == nullptr || configs->all.empty() ? nullptr : configs->all.back().get();
}

// Presents the SVID current at this handshake: leaf, key and intermediates.
int certificate_callback(SSL* ssl, void* /*arg*/) {
  const TlsConfig* config = current_config(ssl);
  if (config == nullptr || !config->svids) return 0;
  try {
    const auto svid = config->svids->x509_svid();
    if (!svid || svid->empty()) throw_error(spiffe_errc::no_svid, "the SVID source gave none");
    const auto chain = svid->chain();
    const OpensslPtr<STACK_OF(X509), free_stack> rest{sk_X509_new_null()};
    if (!rest) return 0;
    for (std::size_t i = 1; i < chain.size(); ++i)
      if (sk_X509_push(rest.get(), chain[i].native_handle()) <= 0) return 0;
    // Copies (up-refs) what it is given: the SVID may be replaced while the connection lives.
    if (SSL_use_cert_and_key(ssl, chain.front().native_handle(), svid->private_key(), rest.get(), 1) != 1) {
      ERR_clear_error();
      return 0;
    }
    return 1;
  } catch (const std::exception& e) {
    awaken::logger()->warn("awaken: TLS: no X.509-SVID to present: {}", e.what());
  } catch (...) {  // nothing may unwind through OpenSSL
    awaken::logger()->warn("awaken: TLS: the SVID source threw");
  }
  return 0;
}

// Verifies the peer's chain as an X.509-SVID of its own trust domain and authorizes its ID.
int verify_callback(X509_STORE_CTX* store, void* /*arg*/) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const TlsConfig* config = ssl == nullptr ? nullptr : current_config(ssl);
  if (config == nullptr || !config->bundles || !config->authorizer) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  try {
    PeerInfo& info = peer_info(ssl);
    info.id.reset();
    info.refusal.reset();
    try {
      X509* leaf = X509_STORE_CTX_get0_cert(store);
      if (leaf == nullptr) throw_error(spiffe_errc::invalid_chain, "TLS peer sent no certificate");
      STACK_OF(X509)* sent = X509_STORE_CTX_get0_untrusted(store);
      std::vector<Certificate> chain;
      chain.reserve(1 + static_cast<std::size_t>(std::max(sk_X509_num(sent), 0)));
      chain.push_back(Certificate::from_native(leaf));
      for (int i = 0; i < sk_X509_num(sent); ++i) {
        X509* x = sk_X509_value(sent, i);
        if (x != leaf) chain.push_back(Certificate::from_native(x));
      }
      VerifiedX509Svid verified = verify_x509_svid(chain, *config->bundles, config->options.verify);
      if (!(*config->authorizer)(verified.spiffe_id, verified.chain))
        throw_error(spiffe_errc::peer_not_authorized,
                    "TLS peer " + verified.spiffe_id.str() +
                        " is not authorized (allowed: " + config->authorizer->description() + ")");
      info.id = std::move(verified.spiffe_id);
      X509_STORE_CTX_set_error(store, X509_V_OK);
      return 1;
    } catch (const Error& e) {
      awaken::logger()->debug("awaken: TLS: peer refused: {}", e.what());
      info.refusal = e;
    }
  } catch (const std::exception& e) {  // out of memory, or a source or authorizer of the user's
    awaken::logger()->warn("awaken: TLS: peer verification failed: {}", e.what());
  } catch (...) {  // nothing may unwind through OpenSSL
    awaken::logger()->warn("awaken: TLS: peer verification failed: a source or the authorizer threw");
  }
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

void install(asio::ssl::context& ctx, std::unique_ptr<TlsConfig> config, int verify_mode) {
  SSL_CTX* native = ctx.native_handle();
  if (native == nullptr) throw_error(std::make_error_code(std::errc::invalid_argument), "SPIFFE TLS: no SSL_CTX");
  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1)
    throw_error(std::make_error_code(std::errc::not_supported), "SPIFFE TLS: cannot require TLS 1.2");
  // A renegotiation could change the peer, and its ID, within one connection.
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
  // No resumption: a resumed session would skip the verification and the authorizer, and
  // outlive a bundle that no longer trusts the peer.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(native, 0);
  // No client CA list is ever sent: SPIFFE peers choose their SVID without one, and hundreds of
  // authorities would overflow the handshake.
  SSL_CTX_set_client_CA_list(native, nullptr);

  TlsConfig* raw = config.get();
  auto* configs = static_cast<TlsConfigs*>(SSL_CTX_get_ex_data(native, config_index()));
  if (configs == nullptr) {
    auto fresh = std::make_unique<TlsConfigs>();
    if (SSL_CTX_set_ex_data(native, config_index(), fresh.get()) != 1) throw std::bad_alloc{};
    configs = fresh.release();
  }
  configs->all.push_back(std::move(config));
  if (raw->svids)
    SSL_CTX_set_cert_cb(native, certificate_callback, nullptr);
  else
    SSL_CTX_set_cert_cb(native, nullptr, nullptr);
  if (raw->bundles) {
    SSL_CTX_set_verify(native, verify_mode, nullptr);
    SSL_CTX_set_cert_verify_callback(native, verify_callback, nullptr);
  } else {
    SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_cert_verify_callback(native, nullptr, nullptr);
  }
}

void require(bool ok, const char* what) {
  if (!ok) throw_error(std::make_error_code(std::errc::invalid_argument), std::string{"SPIFFE TLS: "} + what);
}

}  // namespace

Authorizer authorize_any() {
  return Authorizer{[](const SpiffeId&, std::span<const Certificate>) { return true; }, "any SPIFFE ID"};
}

Authorizer authorize_id(SpiffeId id) {
  std::string text = id.str();
  return Authorizer{[id = std::move(id)](const SpiffeId& peer, std::span<const Certificate>) { return peer == id; },
                    std::move(text)};
}

Authorizer authorize_one_of(std::vector<SpiffeId> ids) {
  std::string text = "one of";
  for (std::size_t i = 0; i < ids.size() && i < 8; ++i) text += (i == 0 ? " " : ", ") + ids[i].str();
  if (ids.size() > 8) text += ", ... (" + std::to_string(ids.size()) + " IDs)";
  std::sort(ids.begin(), ids.end());
  return Authorizer{[ids = std::move(ids)](const SpiffeId& peer, std::span<const Certificate>) {
                      return std::binary_search(ids.begin(), ids.end(), peer);
                    },
                    std::move(text)};
}

Authorizer authorize_member_of(TrustDomain td) {
  std::string text = "member of " + td.name();
  return Authorizer{
      [td = std::move(td)](const SpiffeId& peer, std::span<const Certificate>) { return peer.member_of(td); },
      std::move(text)};
}

Authorizer authorize_if(std::function<bool(const SpiffeId&)> predicate, std::string description) {
  return Authorizer{
      [p = std::move(predicate)](const SpiffeId& peer, std::span<const Certificate>) { return p && p(peer); },
      std::move(description)};
}

TlsSources TlsSources::from(const X509Source& source) {
  auto shared = std::make_shared<const X509Source>(source);
  return TlsSources{shared, shared};
}

void configure_mtls_server(asio::ssl::context& ctx, TlsSources sources, Authorizer authorizer, TlsOptions options) {
  require(sources.svids && sources.bundles, "an mTLS server needs an SVID source and a bundle source");
  install(ctx,
          std::make_unique<TlsConfig>(
              TlsConfig{std::move(sources.svids), std::move(sources.bundles), std::move(authorizer), options}),
          SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
}

void configure_mtls_client(asio::ssl::context& ctx, TlsSources sources, Authorizer authorizer, TlsOptions options) {
  require(sources.svids && sources.bundles, "an mTLS client needs an SVID source and a bundle source");
  install(ctx,
          std::make_unique<TlsConfig>(
              TlsConfig{std::move(sources.svids), std::move(sources.bundles), std::move(authorizer), options}),
          SSL_VERIFY_PEER);
}

void configure_tls_server(asio::ssl::context& ctx, std::shared_ptr<const X509SvidSource> svids) {
  require(svids != nullptr, "a TLS server needs an SVID source");
  install(ctx, std::make_unique<TlsConfig>(TlsConfig{std::move(svids), nullptr, std::nullopt, {}}), SSL_VERIFY_NONE);
}

void configure_tls_client(asio::ssl::context& ctx, std::shared_ptr<const X509BundleSource> bundles,
                          Authorizer authorizer, TlsOptions options) {
  require(bundles != nullptr, "a TLS client needs a bundle source");
  install(ctx, std::make_unique<TlsConfig>(TlsConfig{nullptr, std::move(bundles), std::move(authorizer), options}),
          SSL_VERIFY_PEER);
}

std::optional<SpiffeId> peer_spiffe_id(const SSL* ssl) {
  if (ssl == nullptr) return std::nullopt;
  const auto* info = static_cast<const PeerInfo*>(SSL_get_ex_data(ssl, peer_index()));
  // Only a full handshake verified the peer; a resumed one (which awaken's contexts never
  // allow) would carry no ID.
  if (info == nullptr || SSL_session_reused(ssl) != 0 || !SSL_is_init_finished(ssl)) return std::nullopt;
  return info->id;
}

std::optional<Error> peer_refusal(const SSL* ssl) {
  if (ssl == nullptr) return std::nullopt;
  const auto* info = static_cast<const PeerInfo*>(SSL_get_ex_data(ssl, peer_index()));
  return info == nullptr ? std::nullopt : info->refusal;
}

}  // namespace awaken::spiffe
