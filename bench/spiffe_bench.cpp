// SPIFFE identity benchmarks: JWT-SVID validation against a bundle of 10 keys next to raw
// OpenSSL verification of the same signature, SPIFFE ID parsing, bundle lookups. Prints the
// ratios after the run; the baselines are measured in the same run.
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdio>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/jwt_svid.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

#include "bench_report.hpp"
#include "jose/key_holder.hpp"

namespace {

using awaken::jose::Algorithm;
namespace spiffe = awaken::spiffe;

std::string b64(const BIGNUM* bn, int pad = 0) {
  std::string bytes(static_cast<std::size_t>(pad > 0 ? pad : BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  return awaken::jose::base64url_encode(bytes);
}

BIGNUM* param(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) throw std::runtime_error(name);
  return bn;
}

// A fresh key, its private side for signing and its public JWK for the bundle.
struct Key {
  awaken::jose::PrivateKey priv;
  nlohmann::json jwk;
};

Key make_key(bool ec, const std::string& kid) {
  EVP_PKEY* pkey = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
  nlohmann::json jwk{{"kid", kid}, {"use", "jwt-svid"}};
  if (ec) {
    BIGNUM* x = param(pkey, OSSL_PKEY_PARAM_EC_PUB_X);
    BIGNUM* y = param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y);
    jwk.update({{"kty", "EC"}, {"crv", "P-256"}, {"x", b64(x, 32)}, {"y", b64(y, 32)}});
    BN_free(x);
    BN_free(y);
  } else {
    BIGNUM* n = param(pkey, OSSL_PKEY_PARAM_RSA_N);
    BIGNUM* e = param(pkey, OSSL_PKEY_PARAM_RSA_E);
    jwk.update({{"kty", "RSA"}, {"n", b64(n)}, {"e", b64(e)}});
    BN_free(n);
    BN_free(e);
  }
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  awaken::RedactedString pem{std::string_view{data, static_cast<std::size_t>(len)}};
  BIO_free(bio);
  EVP_PKEY_free(pkey);
  return {awaken::jose::PrivateKey::from_pem(pem), std::move(jwk)};
}

// A bundle of 10 keys (4 EC, 6 RSA) and one token per algorithm, each signed by one of them.
struct Fixture {
  std::vector<Key> keys;
  std::shared_ptr<const spiffe::JwtBundleSet> set;
  std::string es256, rs256, ps256;

  Fixture() {
    nlohmann::json jwks{{"keys", nlohmann::json::array()}};
    for (int i = 0; i < 10; ++i) {
      keys.push_back(make_key(i < 4, "key-" + std::to_string(i)));
      jwks["keys"].push_back(keys.back().jwk);
    }
    set = std::make_shared<spiffe::JwtBundleSet>(std::vector<spiffe::JwtBundle>{
        spiffe::JwtBundle::parse(spiffe::TrustDomain::parse("example.org"), jwks.dump())});
    const auto now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    const std::string claims = nlohmann::json{
        {"sub", "spiffe://example.org/ns/prod/sa/api"},
        {"aud", {"svc-a"}},
        {"exp", now + 3600},
        {"iat", now}}.dump();
    auto sign = [&](Algorithm alg, int k) {
      return awaken::jose::sign_compact(alg, {{"typ", "JWT"}, {"kid", "key-" + std::to_string(k)}}, claims,
                                        keys[k].priv);
    };
    es256 = sign(Algorithm::es256, 2);
    rs256 = sign(Algorithm::rs256, 6);
    ps256 = sign(Algorithm::ps256, 8);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

void validate(benchmark::State& state, const std::string* token) {
  const auto& set = *fixture().set;
  for (auto _ : state) {
    auto svid = spiffe::JwtSvid::parse_and_validate(*token, set, {"svc-a"});
    benchmark::DoNotOptimize(svid);
  }
  state.SetItemsProcessed(state.iterations());
}

// Raw OpenSSL: the same signature over the same bytes with the same EVP_PKEY, the DER form of an
// ECDSA signature made once beforehand; a context per verification, as any caller needs.
void raw_openssl(benchmark::State& state, const std::string* token, Algorithm alg) {
  const auto jws = awaken::jose::CompactJws::parse(*token);
  const auto* authority = fixture().set->find("example.org")->find_authority(jws.header()["kid"].get<std::string>());
  EVP_PKEY* pkey = authority->key().holder()->pkey;
  std::string sig = jws.signature();
  if (alg == Algorithm::es256) {
    ECDSA_SIG* s = ECDSA_SIG_new();
    const auto* raw = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG_set0(s, BN_bin2bn(raw, 32, nullptr), BN_bin2bn(raw + 32, 32, nullptr));
    unsigned char* der = nullptr;
    const int len = i2d_ECDSA_SIG(s, &der);
    sig.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    ECDSA_SIG_free(s);
  }
  const std::string input{jws.signing_input()};
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  for (auto _ : state) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    bool ok = EVP_DigestVerifyInit(ctx, &pctx, md, nullptr, pkey) == 1;
    if (alg == Algorithm::ps256)
      ok = ok && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) state.SkipWithError("verification failed");
  }
  EVP_MD_free(md);
  state.SetItemsProcessed(state.iterations());
}

void parse_id(benchmark::State& state) {
  const std::string text = "spiffe://example.org/ns/production/sa/api-server";
  for (auto _ : state) {
    auto id = spiffe::SpiffeId::parse(text);
    benchmark::DoNotOptimize(id);
  }
  state.SetItemsProcessed(state.iterations());
}

// A set of 10 trust domains; lookups of the last one.
void bundle_find(benchmark::State& state) {
  std::vector<spiffe::JwtBundle> bundles;
  for (int i = 0; i < 10; ++i)
    bundles.emplace_back(spiffe::TrustDomain::parse("td-" + std::to_string(i) + ".example.org"));
  const spiffe::JwtBundleSet set{std::move(bundles)};
  const std::string name = "td-9.example.org";
  for (auto _ : state) benchmark::DoNotOptimize(set.find(name));
}

void bundle_for_trust_domain(benchmark::State& state) {
  const auto& set = *fixture().set;
  const auto td = spiffe::TrustDomain::parse("example.org");
  for (auto _ : state) benchmark::DoNotOptimize(set.bundle_for_trust_domain(td));
}

void authority_find(benchmark::State& state) {
  const auto* bundle = fixture().set->find("example.org");
  for (auto _ : state) benchmark::DoNotOptimize(bundle->find_authority("key-7"));
}

const Fixture& f = fixture();
BENCHMARK_CAPTURE(validate, ES256, &f.es256)
    ->Name("ES256/awaken_validate")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK_CAPTURE(raw_openssl, ES256, &f.es256, Algorithm::es256)
    ->Name("ES256/raw_openssl_verify")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK_CAPTURE(validate, RS256, &f.rs256)
    ->Name("RS256/awaken_validate")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK_CAPTURE(raw_openssl, RS256, &f.rs256, Algorithm::rs256)
    ->Name("RS256/raw_openssl_verify")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK_CAPTURE(validate, PS256, &f.ps256)
    ->Name("PS256/awaken_validate")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK_CAPTURE(raw_openssl, PS256, &f.ps256, Algorithm::ps256)
    ->Name("PS256/raw_openssl_verify")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(parse_id)->Name("spiffe_id/parse")->Repetitions(5)->DisplayAggregatesOnly(true);
BENCHMARK(bundle_find)->Name("bundle_set/find_of_10")->Repetitions(5)->DisplayAggregatesOnly(true);
BENCHMARK(bundle_for_trust_domain)
    ->Name("bundle_set/bundle_for_trust_domain")
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(authority_find)->Name("bundle/find_authority_of_10")->Repetitions(5)->DisplayAggregatesOnly(true);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\n");
  for (const char* alg : {"ES256", "RS256", "PS256"}) {
    const double ours = reporter.time(std::string{alg} + "/awaken_validate");
    const double raw = reporter.time(std::string{alg} + "/raw_openssl_verify");
    if (ours > 0 && raw > 0)
      std::printf("%s validation: %.2f of raw OpenSSL throughput (%.1f us vs %.1f us per token, median CPU)\n", alg,
                  raw / ours, ours / 1000, raw / 1000);
  }
  for (const char* name : {"spiffe_id/parse", "bundle_set/find_of_10", "bundle_set/bundle_for_trust_domain",
                           "bundle/find_authority_of_10"})
    if (const double ns = reporter.time(name); ns > 0) std::printf("%-36s %.1f ns\n", name, ns);
  return 0;
}
