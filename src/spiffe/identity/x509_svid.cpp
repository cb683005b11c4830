// X.509-SVIDs: the standard's rules on a chain, this workload's own SVID and its key, and path
// validation of a peer's chain against its own trust domain's authorities.
#include <awaken/spiffe/x509_svid.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <awaken/error.hpp>

#include "core/openssl_ptr.hpp"
#include "core/wipe.hpp"

namespace awaken::spiffe {
namespace {

using awaken::detail::OpensslPtr;
using BioPtr = OpensslPtr<BIO, BIO_free>;
using PkeyPtr = OpensslPtr<EVP_PKEY, EVP_PKEY_free>;

constexpr std::size_t max_key_file_bytes = 64 * 1024;

void free_stack(STACK_OF(X509) * s) noexcept { sk_X509_free(s); }  // a macro in OpenSSL 3

[[noreturn]] void fail(std::error_code code, const std::string& text) { throw_error(code, text); }

std::string nth(std::size_t i) { return "certificate " + std::to_string(i + 1) + " of the chain"; }

// The leaf's SPIFFE ID: its one URI SAN, a SPIFFE ID with a path.
SpiffeId leaf_id(X509* leaf) {
  int crit = 0;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, nullptr));
  ERR_clear_error();
  if (names == nullptr && crit == -2) fail(spiffe_errc::multiple_uri_sans, "leaf certificate: two SAN extensions");
  const OpensslPtr<GENERAL_NAMES, GENERAL_NAMES_free> owned{names};
  const ASN1_IA5STRING* uri = nullptr;
  int count = 0;
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    ++count;
    uri = n->d.uniformResourceIdentifier;
  }
  if (count == 0) fail(spiffe_errc::missing_uri_san, "leaf certificate: no URI SAN");
  if (count > 1) fail(spiffe_errc::multiple_uri_sans, "leaf certificate: " + std::to_string(count) + " URI SANs");
  const std::string_view text{reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                              static_cast<std::size_t>(ASN1_STRING_length(uri))};
  std::error_code ec;
  auto id = SpiffeId::parse(text, ec);
  if (!id)
    fail(spiffe_errc::invalid_uri_san,
         "leaf certificate: URI SAN '" + bounded_excerpt(text, 128) + "' is not a SPIFFE ID (" + ec.message() + ")");
  if (id->path().empty())
    fail(spiffe_errc::root_path_id, "leaf certificate: SPIFFE ID '" + id->str() + "' has no path");
  return std::move(*id);
}

bool key_usage_critical(X509* x) {
  const int at = X509_get_ext_by_NID(x, NID_key_usage, -1);
  return at >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, at)) == 1;
}

void check_leaf_key(X509* leaf) {
  const EVP_PKEY* key = X509_get0_pubkey(leaf);
  if (key == nullptr) fail(spiffe_errc::unsupported_key, "leaf certificate: the public key does not decode");
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_ED25519: return;
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      if (EVP_PKEY_get_bits(key) >= 2048) return;
      fail(spiffe_errc::unsupported_key,
           "leaf certificate: RSA key of " + std::to_string(EVP_PKEY_get_bits(key)) + " bits (at least 2048)");
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) == 1 &&
          (std::strcmp(group, "prime256v1") == 0 || std::strcmp(group, "secp384r1") == 0))
        return;
      ERR_clear_error();
      fail(spiffe_errc::unsupported_key,
           "leaf certificate: EC key on curve '" + std::string{group} + "' (P-256 or P-384 only)");
    }
    default: fail(spiffe_errc::unsupported_key, "leaf certificate: key type is not EC, RSA or Ed25519");
  }
}

PkeyPtr parse_pkcs8(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  const OpensslPtr<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free> info{
      d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size()))};
  PkeyPtr key{info ? EVP_PKCS82PKEY(info.get()) : nullptr};
  ERR_clear_error();
  if (!key) fail(jose_errc::invalid_private_key, "X.509-SVID key: not an unencrypted PKCS#8 DER private key");
  if (p != der.data() + der.size()) fail(jose_errc::invalid_private_key, "X.509-SVID key: trailing bytes");
  return key;
}

std::string read_file(const std::filesystem::path& file, std::size_t max_bytes, const char* what,
                      std::error_code code) {
  std::ifstream in{file, std::ios::binary};
  if (!in) fail(code, std::string{what} + " '" + file.string() + "' cannot be read");
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_bytes) {
    awaken::detail::wipe(text);  // a key file, perhaps
    fail(code, std::string{what} + " '" + file.string() + "' is too large");
  }
  return text;
}

// The shared X509_STORE_CTX ex_data slot through which the verify callback finds the leeway.
int leeway_index() {
  static const int index = X509_STORE_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Accepts a notBefore ahead of the check time when it is within the leeway.
int verify_callback(int ok, X509_STORE_CTX* ctx) {
  if (ok != 0 || X509_STORE_CTX_get_error(ctx) != X509_V_ERR_CERT_NOT_YET_VALID) return ok;
  const auto* limit = static_cast<const std::time_t*>(X509_STORE_CTX_get_ex_data(ctx, leeway_index()));
  X509* cert = X509_STORE_CTX_get_current_cert(ctx);
  if (limit == nullptr || cert == nullptr) return ok;
  std::time_t t = *limit;
  return X509_cmp_time(X509_get0_notBefore(cert), &t) == -1 ? 1 : 0;
}

}  // namespace

SpiffeId check_x509_svid_chain(std::span<const Certificate> chain) {
  if (chain.empty()) fail(spiffe_errc::invalid_chain, "X.509-SVID: empty certificate chain");
  if (chain.size() > max_x509_chain_length)
    fail(spiffe_errc::invalid_chain, "X.509-SVID: " + std::to_string(chain.size()) + " certificates (at most " +
                                         std::to_string(max_x509_chain_length) + ")");
  X509* leaf = chain.front().native_handle();
  SpiffeId id = leaf_id(leaf);
  const std::uint32_t flags = X509_get_extension_flags(leaf);
  if ((flags & EXFLAG_INVALID) != 0) fail(spiffe_errc::invalid_certificate, "leaf certificate: invalid extensions");
  if ((flags & EXFLAG_CA) != 0) fail(spiffe_errc::leaf_is_ca, "leaf certificate of " + id.str() + ": CA:TRUE");
  if ((flags & EXFLAG_KUSAGE) == 0)
    fail(spiffe_errc::missing_key_usage, "leaf certificate of " + id.str() + ": no key usage");
  if (!key_usage_critical(leaf))
    fail(spiffe_errc::key_usage_not_critical, "leaf certificate of " + id.str() + ": key usage not critical");
  const std::uint32_t usage = X509_get_key_usage(leaf);
  if ((usage & KU_DIGITAL_SIGNATURE) == 0)
    fail(spiffe_errc::missing_digital_signature, "leaf certificate of " + id.str() + ": no digitalSignature");
  if ((usage & KU_KEY_CERT_SIGN) != 0)
    fail(spiffe_errc::leaf_has_key_cert_sign, "leaf certificate of " + id.str() + ": keyCertSign");
  if ((usage & KU_CRL_SIGN) != 0) fail(spiffe_errc::leaf_has_crl_sign, "leaf certificate of " + id.str() + ": cRLSign");
  check_leaf_key(leaf);
  for (std::size_t i = 1; i < chain.size(); ++i) {
    X509* signer = chain[i].native_handle();
    const std::uint32_t f = X509_get_extension_flags(signer);
    if ((f & EXFLAG_INVALID) != 0) fail(spiffe_errc::invalid_certificate, nth(i) + ": invalid extensions");
    if ((f & EXFLAG_CA) == 0) fail(spiffe_errc::signer_not_ca, nth(i) + ": signs the one before it but is not a CA");
    if ((f & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(signer) & KU_KEY_CERT_SIGN) == 0)
      fail(spiffe_errc::signer_missing_key_cert_sign, nth(i) + ": key usage lacks keyCertSign");
    if (!key_usage_critical(signer)) fail(spiffe_errc::key_usage_not_critical, nth(i) + ": key usage not critical");
  }
  return id;
}

struct X509Svid::Impl {
  Impl(SpiffeId i, std::vector<Certificate> c, PkeyPtr k, std::string h) noexcept
      : id(std::move(i)), chain(std::move(c)), key(std::move(k)), hint(std::move(h)) {}
  SpiffeId id;
  std::vector<Certificate> chain;
  PkeyPtr key;
  std::string hint;
};

namespace {
// Checks the chain first, then loads the key and matches it to the leaf.
std::shared_ptr<const X509Svid::Impl> make_svid(std::vector<Certificate> chain, const std::function<PkeyPtr()>& key,
                                                std::string hint);
PkeyPtr parse_pkcs8_pem(const RedactedString& key_pem);
}  // namespace

X509Svid X509Svid::from_der(std::span<const std::uint8_t> chain_der, std::span<const std::uint8_t> key_der,
                            std::string hint) {
  auto chain = Certificate::parse_der_sequence(chain_der, max_x509_chain_length);
  return X509Svid{make_svid(
      std::move(chain), [&] { return parse_pkcs8(key_der); }, std::move(hint))};
}

X509Svid X509Svid::from_pem(std::string_view chain_pem, const RedactedString& key_pem, std::string hint) {
  auto chain = Certificate::parse_pem(chain_pem, max_x509_chain_length);
  return X509Svid{make_svid(
      std::move(chain), [&] { return parse_pkcs8_pem(key_pem); }, std::move(hint))};
}

namespace {
PkeyPtr parse_pkcs8_pem(const RedactedString& key_pem) {
  if (key_pem.size() > max_key_file_bytes)
    fail(jose_errc::invalid_private_key,
         "X.509-SVID key: PEM text over " + std::to_string(max_key_file_bytes) + " bytes");
  const BioPtr bio{BIO_new_mem_buf(key_pem.reveal().data(), static_cast<int>(key_pem.size()))};
  if (!bio) throw std::bad_alloc{};
  PkeyPtr key;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    // PEM_FLAG_SECURE: the decoded key is built in OpenSSL's secure heap, not in buffers that
    // a realloc would leave behind.
    if (PEM_read_bio_ex(bio.get(), &name, &header, &data, &len, PEM_FLAG_SECURE) != 1) break;
    const bool pkcs8 = std::strcmp(name, "PRIVATE KEY") == 0;
    OPENSSL_secure_free(name);
    OPENSSL_secure_free(header);
    try {
      if (pkcs8 && !key) key = parse_pkcs8({data, static_cast<std::size_t>(len)});
    } catch (...) {
      OPENSSL_secure_clear_free(data, static_cast<std::size_t>(len));
      throw;
    }
    OPENSSL_secure_clear_free(data, static_cast<std::size_t>(len));
  }
  ERR_clear_error();
  if (!key) fail(jose_errc::invalid_private_key, "X.509-SVID key: no PRIVATE KEY (PKCS#8) block in the PEM text");
  return key;
}
}  // namespace

X509Svid X509Svid::load(const std::filesystem::path& chain_file, const std::filesystem::path& key_file) {
  const std::string chain = read_file(chain_file, max_x509_chain_length * Certificate::max_der_bytes * 2, "chain file",
                                      spiffe_errc::invalid_certificate);
  RedactedString key{read_file(key_file, max_key_file_bytes, "key file", jose_errc::invalid_private_key)};
  return from_pem(chain, key);
}

namespace {
std::shared_ptr<const X509Svid::Impl> make_svid(std::vector<Certificate> chain, const std::function<PkeyPtr()>& load,
                                                std::string hint) {
  SpiffeId id = check_x509_svid_chain(chain);
  PkeyPtr key = load();
  if (EVP_PKEY_eq(X509_get0_pubkey(chain.front().native_handle()), key.get()) != 1) {
    ERR_clear_error();
    fail(spiffe_errc::key_mismatch, "X.509-SVID of " + id.str() + ": the private key is not the leaf's");
  }
  return std::make_shared<const X509Svid::Impl>(std::move(id), std::move(chain), std::move(key), std::move(hint));
}
}  // namespace

X509Svid::X509Svid() noexcept {
  // One empty state for every default-constructed SVID: its accessors read a real Impl.
  static const std::shared_ptr<const Impl> empty_svid =
      std::make_shared<const Impl>(SpiffeId{}, std::vector<Certificate>{}, nullptr, std::string{});
  impl_ = empty_svid;
}

bool X509Svid::empty() const noexcept { return impl_->chain.empty(); }

const SpiffeId& X509Svid::spiffe_id() const noexcept { return impl_->id; }
const std::string& X509Svid::hint() const noexcept { return impl_->hint; }
std::span<const Certificate> X509Svid::chain() const noexcept { return impl_->chain; }
evp_pkey_st* X509Svid::private_key() const noexcept { return impl_->key.get(); }

std::string X509Svid::chain_pem() const {
  std::string out;
  for (const auto& c : impl_->chain) out += c.pem();
  return out;
}

RedactedString X509Svid::private_key_pem() const {
  if (empty()) throw_error(spiffe_errc::no_svid, "the empty X509Svid has no private key");
  const BioPtr bio{BIO_new(BIO_s_secmem())};
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), impl_->key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw std::bad_alloc{};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return RedactedString{std::string_view{data, static_cast<std::size_t>(n)}};
}

X509Svid X509Svid::with_hint(std::string hint) const {
  PkeyPtr key{impl_->key.get()};
  if (key) EVP_PKEY_up_ref(key.get());
  return X509Svid{std::make_shared<const Impl>(impl_->id, impl_->chain, std::move(key), std::move(hint))};
}

bool operator==(const X509Svid& a, const X509Svid& b) noexcept {
  return a.impl_ == b.impl_ ||
         (a.impl_->id == b.impl_->id && a.impl_->hint == b.impl_->hint && a.impl_->chain == b.impl_->chain);
}

std::ostream& operator<<(std::ostream& os, const X509Svid& svid) {
  os << "X509Svid{" << svid.spiffe_id().str();
  if (!svid.hint().empty()) os << ", hint \"" << svid.hint() << '"';
  return os << ", expires " << utc_text(svid.expires_at()) << '}';
}

std::shared_ptr<const X509Svid> StaticX509Source::x509_svid() const {
  if (!svid_ || svid_->empty()) fail(spiffe_errc::no_svid, "StaticX509Source: no SVID given");
  return svid_;
}

VerifiedX509Svid verify_x509_svid(std::span<const Certificate> chain, const X509BundleSource& bundles,
                                  const X509VerifyOptions& options) {
  SpiffeId id = check_x509_svid_chain(chain);
  const auto bundle = bundles.x509_bundle_for_trust_domain(id.trust_domain());
  if (!bundle)
    fail(spiffe_errc::bundle_not_found,
         "X.509-SVID " + id.str() + ": no bundle for trust domain " + id.trust_domain().name());
  if (bundle->empty() || bundle->native_store() == nullptr)
    fail(spiffe_errc::no_authorities,
         "X.509-SVID " + id.str() + ": the bundle of " + id.trust_domain().name() + " holds no authority");
  if (bundle->contains(chain.front()))
    fail(spiffe_errc::leaf_is_authority, "X.509-SVID " + id.str() + ": the leaf is an authority of its trust domain");

  const OpensslPtr<STACK_OF(X509), free_stack> untrusted{sk_X509_new_reserve(nullptr, static_cast<int>(chain.size()))};
  const OpensslPtr<X509_STORE_CTX, X509_STORE_CTX_free> ctx{X509_STORE_CTX_new()};
  if (!untrusted || !ctx) throw std::bad_alloc{};
  for (std::size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].native_handle());
  if (X509_STORE_CTX_init(ctx.get(), bundle->native_store(), chain.front().native_handle(), untrusted.get()) != 1)
    throw std::bad_alloc{};
  const Clock& clock = options.clock != nullptr ? *options.clock : system_clock();
  const std::time_t now = std::chrono::system_clock::to_time_t(clock.system_now());
  const std::time_t limit = now + static_cast<std::time_t>(options.not_before_leeway.count());
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, now);  // sets X509_V_FLAG_USE_CHECK_TIME
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_STORE_CTX_set_ex_data(ctx.get(), leeway_index(), const_cast<std::time_t*>(&limit));
  X509_STORE_CTX_set_verify_cb(ctx.get(), verify_callback);
  const int ok = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (ok != 1) {
    const std::string why = X509_verify_cert_error_string(err);
    if (err == X509_V_ERR_CERT_HAS_EXPIRED)
      fail(spiffe_errc::certificate_expired, "X.509-SVID " + id.str() + ": " + why);
    if (err == X509_V_ERR_CERT_NOT_YET_VALID)
      fail(spiffe_errc::certificate_not_yet_valid, "X.509-SVID " + id.str() + ": " + why);
    fail(spiffe_errc::untrusted_chain,
         "X.509-SVID " + id.str() + ": " + why + " (against the authorities of " + id.trust_domain().name() + ")");
  }
  VerifiedX509Svid out{std::move(id), {}};
  STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(ctx.get());
  const int n = sk_X509_num(verified);
  out.chain.reserve(static_cast<std::size_t>(n));
  const auto authorities = bundle->authorities();
  for (int i = 0; i < n; ++i) {
    X509* x = sk_X509_value(verified, i);
    // The verified chain holds the very certificates given and the bundle's.
    auto same = [x](const Certificate& c) { return c.native_handle() == x; };
    if (auto it = std::find_if(chain.begin(), chain.end(), same); it != chain.end())
      out.chain.push_back(*it);
    else if (auto a = std::find_if(authorities.begin(), authorities.end(), same); a != authorities.end())
      out.chain.push_back(*a);
  }
  return out;
}

}  // namespace awaken::spiffe
