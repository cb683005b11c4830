// JWS verification through awaken versus the same work done with OpenSSL directly, on the same
// EVP_PKEY, in the same run. Prints awaken/openssl ratios of the median CPU times at the end.
#include <benchmark/benchmark.h>

#include "bench_report.hpp"

#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>

#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

#include "jose/key_holder.hpp"

namespace {

using namespace awaken::jose;

PrivateKey generate_private_key(const char* type, const char* curve, std::size_t bits) {
  EVP_PKEY* k = curve != nullptr ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, curve)
                                 : EVP_PKEY_Q_keygen(nullptr, nullptr, type, bits);
  if (k == nullptr) throw std::runtime_error("key generation failed");
  OSSL_ENCODER_CTX* ctx = OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo", nullptr);
  unsigned char* data = nullptr;
  std::size_t len = 0;
  const bool ok = ctx != nullptr && OSSL_ENCODER_to_data(ctx, &data, &len) == 1;
  OSSL_ENCODER_CTX_free(ctx);
  EVP_PKEY_free(k);
  if (!ok) throw std::runtime_error("PEM encoding failed");
  PrivateKey key =
      PrivateKey::from_pem(awaken::RedactedString{std::string_view{reinterpret_cast<const char*>(data), len}});
  OPENSSL_clear_free(data, len);
  return key;
}

struct Case {
  Case(Algorithm alg, const PrivateKey& priv)
      : pub(priv.public_key()),
        token(sign_compact(alg, {{"typ", "JWT"}, {"kid", "bench"}},
                           R"({"iss":"https://issuer.example","sub":"user-1234","aud":"awaken",)"
                           R"("exp":1900000000,"iat":1700000000,"scope":"read write"})",
                           priv)),
        parsed(CompactJws::parse(token)) {}
  PublicKey pub;
  std::string token;
  CompactJws parsed;
};

const Case& es256() {
  static const Case c{Algorithm::es256, generate_private_key("EC", "P-256", 0)};
  return c;
}
const Case& rs256() {
  static const Case c{Algorithm::rs256, generate_private_key("RSA", nullptr, 2048)};
  return c;
}

// --- awaken ------------------------------------------------------------------------------------

void awaken_parse_verify(benchmark::State& state, const Case& c) {
  for (auto _ : state) {
    std::error_code ec;
    const CompactJws jws = CompactJws::parse(c.token);
    if (!jws.verify(c.pub, ec)) state.SkipWithError("verification failed");
    benchmark::DoNotOptimize(jws);
  }
}

void awaken_verify(benchmark::State& state, const Case& c) {
  for (auto _ : state) {
    std::error_code ec;
    const bool ok = c.parsed.verify(c.pub, ec);
    if (!ok) state.SkipWithError("verification failed");
    benchmark::DoNotOptimize(ok);
  }
}

// --- OpenSSL baseline --------------------------------------------------------------------------

// What a careful hand-written verifier does: digest fetched once, a fresh EVP_MD_CTX per call,
// and for ECDSA the R || S to DER conversion through ECDSA_SIG.
bool openssl_verify(EVP_PKEY* pkey, const EVP_MD* md, bool ecdsa, std::string_view input,
                    const std::string& signature) {
  const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
  std::size_t sig_len = signature.size();
  unsigned char* der = nullptr;
  if (ecdsa) {
    const int half = static_cast<int>(signature.size() / 2);
    ECDSA_SIG* s = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(sig, half, nullptr);
    BIGNUM* ss = BN_bin2bn(sig + half, half, nullptr);
    if (s == nullptr || r == nullptr || ss == nullptr || ECDSA_SIG_set0(s, r, ss) != 1) {
      ECDSA_SIG_free(s);
      return false;
    }
    const int len = i2d_ECDSA_SIG(s, &der);
    ECDSA_SIG_free(s);
    if (len <= 0) return false;
    sig = der;
    sig_len = static_cast<std::size_t>(len);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, pkey) == 1 &&
      EVP_DigestVerify(ctx, sig, sig_len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

// The baseline is handed the decoded signature and signing input, as awaken's verify() is.
void openssl_baseline(benchmark::State& state, const Case& c, bool ecdsa) {
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  EVP_PKEY* pkey = c.pub.holder()->pkey;
  const std::string signature = c.parsed.signature();
  const std::string input{c.parsed.signing_input()};
  for (auto _ : state) {
    const bool ok = openssl_verify(pkey, md, ecdsa, input, signature);
    if (!ok) state.SkipWithError("verification failed");
    benchmark::DoNotOptimize(ok);
  }
  EVP_MD_free(md);
}

// Like the above, plus splitting the token and decoding its signature, the least a parser does.
void openssl_decode_verify(benchmark::State& state, const Case& c, bool ecdsa) {
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  EVP_PKEY* pkey = c.pub.holder()->pkey;
  const std::string_view token = c.token;
  for (auto _ : state) {
    const auto last_dot = token.rfind('.');
    const std::string signature = base64url_decode(token.substr(last_dot + 1));
    const bool ok = openssl_verify(pkey, md, ecdsa, token.substr(0, last_dot), signature);
    if (!ok) state.SkipWithError("verification failed");
    benchmark::DoNotOptimize(ok);
  }
  EVP_MD_free(md);
}

}  // namespace

int main(int argc, char** argv) {
  // Build keys and tokens before any timing starts.
  const Case& es = es256();
  const Case& rs = rs256();

  const auto add = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMicrosecond)->Repetitions(7)->DisplayAggregatesOnly(true);
  };
  add("ES256/awaken_parse_verify", [&es](benchmark::State& s) { awaken_parse_verify(s, es); });
  add("ES256/openssl_decode_verify", [&es](benchmark::State& s) { openssl_decode_verify(s, es, true); });
  add("ES256/awaken_verify", [&es](benchmark::State& s) { awaken_verify(s, es); });
  add("ES256/openssl_verify", [&es](benchmark::State& s) { openssl_baseline(s, es, true); });
  add("RS256/awaken_parse_verify", [&rs](benchmark::State& s) { awaken_parse_verify(s, rs); });
  add("RS256/openssl_decode_verify", [&rs](benchmark::State& s) { openssl_decode_verify(s, rs, false); });
  add("RS256/awaken_verify", [&rs](benchmark::State& s) { awaken_verify(s, rs); });
  add("RS256/openssl_verify", [&rs](benchmark::State& s) { openssl_baseline(s, rs, false); });

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\n");
  awaken::bench::print_ratio(reporter, "ES256 verify:", "ES256/awaken_verify", "ES256/openssl_verify");
  awaken::bench::print_ratio(reporter, "ES256 parse+verify:", "ES256/awaken_parse_verify",
                             "ES256/openssl_decode_verify");
  awaken::bench::print_ratio(reporter, "ES256 parse+verify vs raw:", "ES256/awaken_parse_verify",
                             "ES256/openssl_verify");
  awaken::bench::print_ratio(reporter, "RS256 verify:", "RS256/awaken_verify", "RS256/openssl_verify");
  awaken::bench::print_ratio(reporter, "RS256 parse+verify:", "RS256/awaken_parse_verify",
                             "RS256/openssl_decode_verify");
  awaken::bench::print_ratio(reporter, "RS256 parse+verify vs raw:", "RS256/awaken_parse_verify",
                             "RS256/openssl_verify");
  // bench/http_bench.cpp
  awaken::bench::print_ratio(reporter, "HTTP GET round trip:", "HTTP/awaken_get", "HTTP/curl_easy_get", "curl_easy",
                             true);
  return 0;
}
