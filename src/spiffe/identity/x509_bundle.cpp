// Certificates, X.509 bundles and bundle sets.
#include <awaken/spiffe/x509_bundle.hpp>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iterator>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>

#include "core/bounded_json.hpp"
#include "core/openssl_ptr.hpp"

namespace awaken::spiffe {
namespace {

using awaken::detail::OpensslPtr;
using BioPtr = OpensslPtr<BIO, BIO_free>;

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t) noexcept {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string_view as_chars(std::span<const std::uint8_t> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace

struct Certificate::Impl {
  Impl(X509* c, std::string d) noexcept : x509(c), der(std::move(d)) {}
  ~Impl() { X509_free(x509); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  X509* const x509;
  const std::string der;
  std::chrono::system_clock::time_point not_before, not_after;
};

Certificate Certificate::from_der(std::span<const std::uint8_t> der) {
  if (der.size() > max_der_bytes)
    throw_error(spiffe_errc::invalid_certificate, "certificate of " + std::to_string(der.size()) + " bytes (at most " +
                                                      std::to_string(max_der_bytes) + ")");
  const unsigned char* p = der.data();
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  ERR_clear_error();
  if (x == nullptr) throw_error(spiffe_errc::invalid_certificate, "DER certificate does not parse");
  if (p != der.data() + der.size()) {
    X509_free(x);
    throw_error(spiffe_errc::invalid_certificate, "DER certificate followed by trailing bytes");
  }
  auto impl = std::make_shared<Impl>(x, std::string{as_chars(der)});
  impl->not_before = to_time_point(X509_get0_notBefore(x));
  impl->not_after = to_time_point(X509_get0_notAfter(x));
  return Certificate{std::move(impl)};
}

Certificate Certificate::from_native(x509_st* x509) {
  if (x509 == nullptr) throw_error(spiffe_errc::invalid_certificate, "no certificate");
  unsigned char* der = nullptr;
  const int n = i2d_X509(x509, &der);
  if (n <= 0) {
    ERR_clear_error();
    throw_error(spiffe_errc::invalid_certificate, "certificate does not encode");
  }
  std::string bytes{reinterpret_cast<const char*>(der), static_cast<std::size_t>(n)};
  OPENSSL_free(der);
  X509_up_ref(x509);
  auto impl = std::make_shared<Impl>(x509, std::move(bytes));
  impl->not_before = to_time_point(X509_get0_notBefore(x509));
  impl->not_after = to_time_point(X509_get0_notAfter(x509));
  return Certificate{std::move(impl)};
}

std::vector<Certificate> Certificate::parse_der_sequence(std::span<const std::uint8_t> der, std::size_t max_count) {
  std::vector<Certificate> out;
  std::size_t pos = 0;
  while (pos < der.size()) {
    if (out.size() == max_count)
      throw_error(spiffe_errc::invalid_chain, "more than " + std::to_string(max_count) + " certificates");
    // The length of the next DER element, from its header, so that each certificate is parsed
    // from exactly its own bytes.
    const unsigned char* p = der.data() + pos;
    long len = 0;
    int tag = 0, cls = 0;
    const int r = ASN1_get_object(&p, &len, &tag, &cls, static_cast<long>(der.size() - pos));
    ERR_clear_error();
    if ((r & 0x80) != 0 || tag != V_ASN1_SEQUENCE || (r & V_ASN1_CONSTRUCTED) == 0)
      throw_error(spiffe_errc::invalid_certificate,
                  "certificate " + std::to_string(out.size() + 1) + " is not a DER SEQUENCE");
    const auto header = static_cast<std::size_t>(p - (der.data() + pos));
    const std::size_t total = header + static_cast<std::size_t>(len);
    if (total > der.size() - pos)
      throw_error(spiffe_errc::invalid_certificate, "certificate " + std::to_string(out.size() + 1) + " is truncated");
    out.push_back(from_der(der.subspan(pos, total)));
    pos += total;
  }
  return out;
}

std::vector<Certificate> Certificate::parse_pem(std::string_view pem, std::size_t max_count) {
  if (pem.size() > static_cast<std::size_t>(INT32_MAX)) throw_error(spiffe_errc::invalid_certificate, "PEM too large");
  const BioPtr bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
  if (!bio) throw std::bad_alloc{};
  std::vector<Certificate> out;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) break;
    const std::string block{name};
    OPENSSL_free(name);
    OPENSSL_free(header);
    const std::span<const std::uint8_t> bytes{data, static_cast<std::size_t>(len)};
    if (block == "CERTIFICATE" && out.size() == max_count) {
      OPENSSL_free(data);
      throw_error(spiffe_errc::invalid_chain, "more than " + std::to_string(max_count) + " certificates");
    }
    if (block == "CERTIFICATE") {
      try {
        out.push_back(from_der(bytes));
      } catch (...) {
        OPENSSL_free(data);
        throw;
      }
    }
    OPENSSL_clear_free(data, static_cast<std::size_t>(len));  // a skipped block may be a key
  }
  const unsigned long last = ERR_peek_last_error();
  ERR_clear_error();
  if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE)
    throw_error(spiffe_errc::invalid_certificate, "a PEM block does not decode");
  if (out.empty()) throw_error(spiffe_errc::invalid_certificate, "no CERTIFICATE block in the PEM text");
  return out;
}

std::span<const std::uint8_t> Certificate::der() const noexcept {
  return {reinterpret_cast<const std::uint8_t*>(impl_->der.data()), impl_->der.size()};
}

std::string Certificate::pem() const {
  const BioPtr bio{BIO_new(BIO_s_mem())};
  if (!bio || PEM_write_bio_X509(bio.get(), impl_->x509) != 1) throw std::bad_alloc{};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string{data, static_cast<std::size_t>(n)};
}

std::string Certificate::subject() const {
  const BioPtr bio{BIO_new(BIO_s_mem())};
  if (!bio) throw std::bad_alloc{};
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(impl_->x509), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string{data, static_cast<std::size_t>(n)};
}

std::chrono::system_clock::time_point Certificate::not_before() const noexcept { return impl_->not_before; }
std::chrono::system_clock::time_point Certificate::not_after() const noexcept { return impl_->not_after; }
x509_st* Certificate::native_handle() const noexcept { return impl_->x509; }

bool operator==(const Certificate& a, const Certificate& b) noexcept {
  return a.impl_ == b.impl_ || a.impl_->der == b.impl_->der;
}

X509Bundle::X509Bundle(TrustDomain td) : td_(std::move(td)) {}

X509Bundle::X509Bundle(TrustDomain td, std::vector<Certificate> authorities) : td_(std::move(td)) {
  if (authorities.size() > max_authorities)
    throw_error(spiffe_errc::invalid_chain,
                "X.509 bundle of " + td_.name() + ": more than " + std::to_string(max_authorities) + " authorities");
  for (auto& c : authorities)
    if (std::find(authorities_.begin(), authorities_.end(), c) == authorities_.end())
      authorities_.push_back(std::move(c));
  if (authorities_.empty()) return;
  store_.reset(X509_STORE_new(), X509_STORE_free);
  if (!store_) throw std::bad_alloc{};
  for (const auto& c : authorities_)
    if (X509_STORE_add_cert(store_.get(), c.native_handle()) != 1) throw std::bad_alloc{};
}

X509Bundle X509Bundle::parse_der(TrustDomain td, std::span<const std::uint8_t> der, std::size_t max_bytes) {
  if (der.size() > max_bytes)
    throw_error(spiffe_errc::bundle_too_large, "X.509 bundle of " + td.name() + ": " + std::to_string(der.size()) +
                                                   " bytes (at most " + std::to_string(max_bytes) + ")");
  try {
    return X509Bundle{td, Certificate::parse_der_sequence(der, max_authorities)};
  } catch (const Error& e) {
    throw_error(e.code(), "X.509 bundle of " + td.name() + ": " + e.context());
  }
}

X509Bundle X509Bundle::parse_pem(TrustDomain td, std::string_view pem, std::size_t max_bytes) {
  if (pem.size() > max_bytes)
    throw_error(spiffe_errc::bundle_too_large, "X.509 bundle of " + td.name() + ": " + std::to_string(pem.size()) +
                                                   " bytes (at most " + std::to_string(max_bytes) + ")");
  try {
    return X509Bundle{td, Certificate::parse_pem(pem, max_authorities)};
  } catch (const Error& e) {
    throw_error(e.code(), "X.509 bundle of " + td.name() + ": " + e.context());
  }
}

X509Bundle X509Bundle::parse_jwks(TrustDomain td, std::string_view jwks, std::size_t max_bytes) {
  const std::string ctx = "X.509 bundle of " + td.name();
  if (jwks.size() > max_bytes)
    throw_error(spiffe_errc::bundle_too_large,
                ctx + ": " + std::to_string(jwks.size()) + " bytes (at most " + std::to_string(max_bytes) + ")");
  const auto doc = awaken::detail::parse_bounded_json(jwks);
  if (doc.is_discarded() || !doc.is_object()) throw_error(spiffe_errc::invalid_bundle, ctx + ": not a JSON object");
  const auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array())
    throw_error(spiffe_errc::invalid_bundle, ctx + ": `keys` is not an array");
  std::vector<Certificate> authorities;
  for (const auto& key : *keys) {
    if (!key.is_object()) throw_error(spiffe_errc::invalid_bundle, ctx + ": a key is not an object");
    const auto use = key.find("use");
    if (use == key.end() || *use != "x509-svid") continue;
    // An entry without a known `kty` or without `x5c` is ignored, not the whole bundle
    // (Trust Domain and Bundle standard, 4.2.2).
    const auto kty = key.find("kty");
    if (kty == key.end() || !kty->is_string() || (*kty != "EC" && *kty != "RSA" && *kty != "OKP")) continue;
    const auto x5c = key.find("x5c");
    if (x5c == key.end() || (x5c->is_array() && x5c->empty())) continue;
    if (!x5c->is_array()) throw_error(spiffe_errc::invalid_bundle, ctx + ": `x5c` is not an array");
    if (!x5c->front().is_string()) throw_error(spiffe_errc::invalid_bundle, ctx + ": an `x5c` value is not a string");
    // Standard base64 (RFC 7517 4.7), read through the strict base64url decoder.
    std::string text = x5c->front().get<std::string>();
    while (!text.empty() && text.back() == '=') text.pop_back();
    std::replace(text.begin(), text.end(), '+', '-');
    std::replace(text.begin(), text.end(), '/', '_');
    std::error_code ec;
    const std::string der = jose::base64url_decode(text, ec, max_bytes);
    if (ec) throw_error(spiffe_errc::invalid_certificate, ctx + ": an `x5c` value is not base64");
    try {
      authorities.push_back(Certificate::from_der({reinterpret_cast<const std::uint8_t*>(der.data()), der.size()}));
    } catch (const Error& e) {
      throw_error(e.code(), ctx + ": " + e.context());
    }
  }
  return X509Bundle{std::move(td), std::move(authorities)};
}

X509Bundle X509Bundle::load(TrustDomain td, const std::filesystem::path& file, std::size_t max_bytes) {
  std::ifstream in{file, std::ios::binary};
  if (!in) throw_error(spiffe_errc::invalid_bundle, "X.509 bundle file '" + file.string() + "' cannot be read");
  std::string text;
  text.resize(max_bytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_bytes)
    throw_error(spiffe_errc::bundle_too_large,
                "X.509 bundle file '" + file.string() + "' is over " + std::to_string(max_bytes) + " bytes");
  if (text.find("-----BEGIN") != std::string::npos) return parse_pem(std::move(td), text, max_bytes);
  return parse_der(std::move(td), {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, max_bytes);
}

bool X509Bundle::contains(const Certificate& cert) const noexcept {
  return std::find(authorities_.begin(), authorities_.end(), cert) != authorities_.end();
}

std::string X509Bundle::to_pem() const {
  std::string out;
  for (const auto& c : authorities_) out += c.pem();
  return out;
}

x509_store_st* X509Bundle::native_store() const noexcept { return store_.get(); }

bool operator==(const X509Bundle& a, const X509Bundle& b) noexcept {
  if (a.td_ != b.td_ || a.authorities_.size() != b.authorities_.size()) return false;
  return std::all_of(a.authorities_.begin(), a.authorities_.end(), [&](const Certificate& c) { return b.contains(c); });
}

}  // namespace awaken::spiffe
