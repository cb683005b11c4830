#include <awaken/jose/jws.hpp>

#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>

#include <pthread.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>

#include "core/bounded_json.hpp"
#include "core/openssl_ptr.hpp"
#include "core/wipe.hpp"
#include "jose/key_holder.hpp"

namespace awaken::jose {
namespace detail {
namespace {

// Fetched once: an explicit fetch per signature would cost a method-store lookup every time.
struct Digests {
  Digests() noexcept
      : sha256(EVP_MD_fetch(nullptr, "SHA2-256", nullptr)),
        sha384(EVP_MD_fetch(nullptr, "SHA2-384", nullptr)),
        sha512(EVP_MD_fetch(nullptr, "SHA2-512", nullptr)) {}
  ~Digests() {
    EVP_MD_free(sha256);
    EVP_MD_free(sha384);
    EVP_MD_free(sha512);
  }
  Digests(const Digests&) = delete;
  Digests& operator=(const Digests&) = delete;

  EVP_MD* const sha256;
  EVP_MD* const sha384;
  EVP_MD* const sha512;
};

}  // namespace

const EVP_MD* digest_for(Algorithm alg) noexcept {
  static const Digests digests;
  switch (alg) {
    case Algorithm::rs256:
    case Algorithm::ps256:
    case Algorithm::es256: return digests.sha256;
    case Algorithm::rs384:
    case Algorithm::ps384:
    case Algorithm::es384: return digests.sha384;
    case Algorithm::rs512:
    case Algorithm::ps512:
    case Algorithm::es512: return digests.sha512;
  }
  return nullptr;
}

}  // namespace detail

namespace {

using detail::KeyHolder;
using detail::OpensslErrorScope;

using MdCtxPtr = awaken::detail::OpensslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;

[[noreturn]] void fail(jose_errc code, std::string_view context) { throw_error(make_error_code(code), context); }

bool is_pss(Algorithm alg) noexcept {
  return alg == Algorithm::ps256 || alg == Algorithm::ps384 || alg == Algorithm::ps512;
}
bool is_ecdsa(Algorithm alg) noexcept {
  return alg == Algorithm::es256 || alg == Algorithm::es384 || alg == Algorithm::es512;
}

Curve curve_of(Algorithm alg) noexcept {
  switch (alg) {
    case Algorithm::es256: return Curve::p256;
    case Algorithm::es384: return Curve::p384;
    case Algorithm::es512: return Curve::p521;
    default: return Curve::none;
  }
}

// RFC 7518 section 3.5: MGF1 with the signature's hash and a salt as long as that hash.
bool set_pss_params(EVP_PKEY_CTX* pctx, const EVP_MD* md) noexcept {
  int pad_mode = RSA_PKCS1_PSS_PADDING;
  int salt_len = EVP_MD_get_size(md);
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PAD_MODE, &pad_mode),
      OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &salt_len),
      OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, const_cast<char*>(EVP_MD_get0_name(md)), 0),
      OSSL_PARAM_construct_end()};
  return EVP_PKEY_CTX_set_params(pctx, params) == 1;
}

// A JOSE ECDSA signature holds R and S of at most 66 bytes each; in DER each becomes an
// INTEGER of up to 2 + 67 bytes inside a SEQUENCE with a header of up to 3 bytes.
constexpr std::size_t max_ecdsa_der_bytes = 3 + 2 * (2 + 67);

std::size_t put_der_integer(unsigned char* out, const unsigned char* value, std::size_t size) {
  while (size > 1 && value[0] == 0) {
    ++value;
    --size;
  }
  const bool pad = (value[0] & 0x80) != 0;  // DER integers are signed
  std::size_t o = 0;
  out[o++] = 0x02;
  out[o++] = static_cast<unsigned char>(size + (pad ? 1 : 0));
  if (pad) out[o++] = 0x00;
  std::memcpy(out + o, value, size);
  return o + size;
}

// JOSE R || S (each `half` bytes) to the DER ECDSA-Sig-Value OpenSSL verifies.
std::size_t ecdsa_raw_to_der(const unsigned char* raw, std::size_t half,
                             std::array<unsigned char, max_ecdsa_der_bytes>& der) noexcept {
  std::array<unsigned char, max_ecdsa_der_bytes> body;
  std::size_t body_len = put_der_integer(body.data(), raw, half);
  body_len += put_der_integer(body.data() + body_len, raw + half, half);
  std::size_t o = 0;
  der[o++] = 0x30;
  if (body_len >= 0x80) der[o++] = 0x81;
  der[o++] = static_cast<unsigned char>(body_len);
  std::memcpy(der.data() + o, body.data(), body_len);
  return o + body_len;
}

// OpenSSL's DER ECDSA signature to JOSE R || S, each left-padded to the field size.
std::string ecdsa_der_to_raw(const unsigned char* der, std::size_t der_len, std::size_t half) {
  const unsigned char* p = der;
  const awaken::detail::OpensslPtr<ECDSA_SIG, ECDSA_SIG_free> sig{
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len))};
  if (!sig) fail(jose_errc::signing_failed, "sign_compact: ECDSA signature");
  std::string raw(2 * half, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  const int h = static_cast<int>(half);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out, h) != h ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out + half, h) != h) {
    fail(jose_errc::signing_failed, "sign_compact: ECDSA signature");
  }
  return raw;
}

std::string sign_bytes(Algorithm alg, const KeyHolder& key, std::string_view input) {
  const std::string ctx = std::string{"sign_compact ("} + std::string{to_string(alg)} + ")";
  const EVP_MD* md = detail::digest_for(alg);
  const MdCtxPtr mctx{EVP_MD_CTX_new()};
  EVP_PKEY_CTX* pctx = nullptr;
  if (md == nullptr || !mctx || EVP_DigestSignInit(mctx.get(), &pctx, md, nullptr, key.pkey) != 1) {
    fail(jose_errc::signing_failed, ctx);
  }
  if (is_pss(alg) && !set_pss_params(pctx, md)) fail(jose_errc::signing_failed, ctx);
  const int max_size = EVP_PKEY_get_size(key.pkey);
  if (max_size <= 0) fail(jose_errc::signing_failed, ctx);
  std::string sig(static_cast<std::size_t>(max_size), '\0');
  std::size_t len = sig.size();
  if (EVP_DigestSign(mctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    fail(jose_errc::signing_failed, ctx);
  }
  if (is_ecdsa(alg)) {
    return ecdsa_der_to_raw(reinterpret_cast<const unsigned char*>(sig.data()), len,
                            static_cast<std::size_t>(detail::field_bytes(key.curve)));
  }
  sig.resize(len);
  return sig;
}

}  // namespace

JwsSigner::JwsSigner(Algorithm alg, const nlohmann::json& header, PrivateKey key) : alg_(alg), key_(std::move(key)) {
  const OpensslErrorScope errors;
  if (!detail::key_supports(key_.holder().get(), alg)) {
    fail(jose_errc::algorithm_key_mismatch, std::string{"sign_compact: "} + std::string{to_string(alg)} + " with a " +
                                                std::to_string(key_.bits()) + "-bit " +
                                                (key_.type() == KeyType::rsa ? "RSA" : "EC") + " key");
  }
  if (!header.is_null() && !header.is_object()) {
    fail(jose_errc::malformed_json, "sign_compact: header is not a JSON object");
  }
  nlohmann::json full = header.is_null() ? nlohmann::json::object() : header;
  full["alg"] = std::string{to_string(alg)};
  std::string header_text;
  try {
    header_text = full.dump();
  } catch (const nlohmann::json::exception&) {
    fail(jose_errc::malformed_json, "sign_compact: header holds invalid UTF-8");
  }
  encoded_header_ = base64url_encode(header_text);
  encoded_header_ += '.';
}

std::string JwsSigner::sign(std::string_view payload) const {
  const OpensslErrorScope errors;
  std::string token;
  token.reserve(encoded_header_.size() + (payload.size() * 4 + 2) / 3 + 1 + 2 * 2 * 66);
  token += encoded_header_;
  token += base64url_encode(payload);
  const std::string sig = sign_bytes(alg_, *key_.holder(), token);
  token += '.';
  token += base64url_encode(sig);
  return token;
}

std::string sign_compact(Algorithm alg, const nlohmann::json& header, std::string_view payload, const PrivateKey& key) {
  return JwsSigner{alg, header, key}.sign(payload);
}

std::string sha256_base64url(std::string_view bytes) {
  std::array<unsigned char, 32> digest{};
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, detail::digest_for(Algorithm::es256), nullptr) != 1 ||
      len != digest.size()) {
    fail(jose_errc::signing_failed, "SHA-256");
  }
  return base64url_encode(std::string_view{reinterpret_cast<const char*>(digest.data()), digest.size()});
}

namespace {

// Random bytes for identifiers, drawn from OpenSSL's generator 512 at a time per thread: one
// RAND_bytes call costs a getpid() system call and a generator lock, which would be a tenth of
// a proof's price. Bytes handed out are wiped from the pool, and a fork discards the pool (its
// bytes would otherwise be handed out twice, once in each process).
std::atomic<unsigned> fork_generation{0};

struct RandomPool {
  std::array<unsigned char, 512> bytes{};
  std::size_t used = bytes.size();
  unsigned generation = 0;
  RandomPool() = default;
  RandomPool(const RandomPool&) = delete;
  RandomPool& operator=(const RandomPool&) = delete;
  ~RandomPool() { awaken::detail::wipe(bytes.data(), bytes.size()); }
};

// `n` is at most 64 (random_base64url's bound), well within the pool.
void pooled_random(unsigned char* out, std::size_t n) {
  static const int registered =
      pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
  thread_local RandomPool pool;
  const unsigned generation = fork_generation.load(std::memory_order_relaxed);
  if (registered != 0) {
    if (RAND_bytes(out, static_cast<int>(n)) != 1) fail(jose_errc::signing_failed, "random_base64url");
    return;
  }
  if (pool.generation != generation || pool.bytes.size() - pool.used < n) {
    if (RAND_bytes(pool.bytes.data(), static_cast<int>(pool.bytes.size())) != 1) {
      awaken::detail::wipe(pool.bytes.data(), pool.bytes.size());
      pool.used = pool.bytes.size();
      fail(jose_errc::signing_failed, "random_base64url");
    }
    pool.used = 0;
    pool.generation = generation;
  }
  std::memcpy(out, pool.bytes.data() + pool.used, n);
  awaken::detail::wipe(pool.bytes.data() + pool.used, n);
  pool.used += n;
}

}  // namespace

std::string random_base64url(std::size_t bytes) {
  std::array<unsigned char, 64> buffer{};
  if (bytes == 0 || bytes > buffer.size()) fail(jose_errc::signing_failed, "random_base64url");
  pooled_random(buffer.data(), bytes);
  std::string out = base64url_encode(std::string_view{reinterpret_cast<const char*>(buffer.data()), bytes});
  awaken::detail::wipe(buffer.data(), bytes);
  return out;
}

CompactJws CompactJws::parse(std::string_view token, std::size_t max_bytes) {
  if (token.size() > max_bytes) {
    fail(jose_errc::input_too_large,
         "CompactJws::parse (" + std::to_string(token.size()) + " bytes, limit " + std::to_string(max_bytes) + ")");
  }
  const auto first = token.find('.');
  const auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    fail(jose_errc::malformed_jws, "CompactJws::parse: not three segments");
  }
  const std::string_view header_text = token.substr(0, first);
  const std::string_view payload_text = token.substr(first + 1, second - first - 1);
  const std::string_view signature_text = token.substr(second + 1);
  if (header_text.empty()) fail(jose_errc::malformed_jws, "CompactJws::parse: empty header segment");

  CompactJws jws;
  std::error_code ec;
  const std::string header_bytes = base64url_decode(header_text, ec, max_bytes);
  if (ec) throw_error(ec, "CompactJws::parse: header segment");
  jws.payload_ = base64url_decode(payload_text, ec, max_bytes);
  if (ec) throw_error(ec, "CompactJws::parse: payload segment");
  jws.signature_ = base64url_decode(signature_text, ec, max_bytes);
  if (ec) throw_error(ec, "CompactJws::parse: signature segment");

  if (awaken::detail::starts_with_bom(header_bytes))
    fail(jose_errc::malformed_json, "CompactJws::parse: header begins with a byte-order mark");
  jws.header_ = awaken::detail::parse_bounded_json(header_bytes);
  if (jws.header_.is_discarded() || !jws.header_.is_object()) {
    fail(jose_errc::malformed_json, "CompactJws::parse: header is not a JSON object");
  }
  const auto alg = jws.header_.find("alg");
  if (alg == jws.header_.end() || !alg->is_string()) {
    fail(jose_errc::unsupported_algorithm, "CompactJws::parse: alg missing or not a string");
  }
  const auto parsed = parse_algorithm(alg->get_ref<const std::string&>());
  if (!parsed) fail(jose_errc::unsupported_algorithm, "CompactJws::parse: alg");
  jws.alg_ = *parsed;
  // Checked after alg, so that an unsecured JWS (alg none, nothing signed) is named for what it is.
  if (signature_text.empty()) fail(jose_errc::malformed_jws, "CompactJws::parse: empty signature segment");
  // RFC 7515 section 4.1.11: a recipient must reject extensions it does not understand, and we
  // understand none.
  if (jws.header_.contains("crit")) {
    fail(jose_errc::unsupported_critical_header, "CompactJws::parse");
  }
  jws.signing_input_.assign(token.substr(0, second));
  return jws;
}

bool CompactJws::verify(const PublicKey& key, std::error_code& ec) const noexcept {
  const OpensslErrorScope errors;
  ec.clear();
  const KeyHolder* holder = key.holder().get();
  if (!detail::key_supports(holder, alg_)) {
    ec = jose_errc::algorithm_key_mismatch;
    return false;
  }
  const auto* sig = reinterpret_cast<const unsigned char*>(signature_.data());
  std::size_t sig_len = signature_.size();
  std::array<unsigned char, max_ecdsa_der_bytes> der;
  if (is_ecdsa(alg_)) {
    const auto half = static_cast<std::size_t>(detail::field_bytes(curve_of(alg_)));
    if (sig_len != 2 * half) {
      ec = jose_errc::invalid_signature;
      return false;
    }
    sig_len = ecdsa_raw_to_der(sig, half, der);
    sig = der.data();
  }
  const EVP_MD* md = detail::digest_for(alg_);
  const MdCtxPtr mctx{EVP_MD_CTX_new()};
  EVP_PKEY_CTX* pctx = nullptr;
  const bool ok =
      md != nullptr && mctx && EVP_DigestVerifyInit(mctx.get(), &pctx, md, nullptr, holder->pkey) == 1 &&
      (!is_pss(alg_) || set_pss_params(pctx, md)) &&
      EVP_DigestVerify(mctx.get(), sig, sig_len, reinterpret_cast<const unsigned char*>(signing_input_.data()),
                       signing_input_.size()) == 1;
  if (!ok) ec = jose_errc::invalid_signature;
  return ok;
}

void CompactJws::verify(const PublicKey& key) const {
  std::error_code ec;
  if (!verify(key, ec)) {
    throw_error(ec, std::string{"CompactJws::verify ("} + std::string{to_string(alg_)} + ")");
  }
}

}  // namespace awaken::jose
