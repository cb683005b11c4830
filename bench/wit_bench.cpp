// Proofs of possession: making a DPoP proof and a workload proof token next to one raw
// ES256 signature of a signing input of the same size, and verifying a WIT-SVID with its proof
// next to two raw ES256 verifications, with the same keys, in the same run. Prints the ratios of
// the median CPU times at the end.
#include <benchmark/benchmark.h>

#include "bench_report.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <awaken/credentials/dpop.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>

#include "jose/key_holder.hpp"

namespace {

using awaken::jose::Algorithm;
using awaken::jose::PrivateKey;
using nlohmann::json;
namespace wit = awaken::spiffe::experimental;

constexpr std::string_view target = "https://orders.example.org/orders/17";
constexpr std::string_view origin = "https://orders.example.org";
constexpr std::string_view path = "/orders/17";
// An access token of a common size (a JWT with a few claims).
const std::string access_token(420, 'a');

long long now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json public_jwk(const PrivateKey& key) {
  json jwk = key.public_key().to_jwk();
  jwk["alg"] = "ES256";
  return jwk;
}

// A trust domain's WIT authority, one workload's WIT-SVID holding its key, and the verifier's
// bundle. Times are the system clock's: the WIT lives a day, each proof a minute.
struct Fixture {
  PrivateKey issuer = PrivateKey::generate();
  PrivateKey workload = PrivateKey::generate();
  std::shared_ptr<const awaken::spiffe::JwtBundleSet> bundles;
  wit::WitSvid svid;

  Fixture() {
    json authority = public_jwk(issuer);
    authority["kid"] = "wit-1";
    authority["use"] = "wit-svid";
    const json jwks = {{"keys", json::array({authority})}};
    bundles = std::make_shared<awaken::spiffe::JwtBundleSet>(std::vector<awaken::spiffe::JwtBundle>{
        wit::parse_wit_bundle(awaken::spiffe::TrustDomain::parse("example.org"), jwks.dump())});
    const json claims = {{"sub", "spiffe://example.org/ns/prod/sa/orders-client"},
                         {"exp", now_seconds() + 86400},
                         {"iat", now_seconds()},
                         {"jti", awaken::jose::random_base64url()},
                         {"cnf", {{"jwk", public_jwk(workload)}}}};
    const std::string token =
        awaken::jose::sign_compact(Algorithm::es256, {{"typ", "wit+jwt"}, {"kid", "wit-1"}}, claims.dump(), issuer);
    svid = wit::WitSvid::parse_insecure(token).with_private_key(workload);
  }

  std::string proof() const {
    return std::string{make_workload_proof(svid, {target, access_token}).workload_proof_token.reveal()};
  }

  std::unique_ptr<wit::WptVerifier> verifier(std::size_t wit_cache_capacity) const {
    wit::WptVerifierOptions o;
    o.origins = {std::string{origin}};
    o.wit_cache_capacity = wit_cache_capacity;
    return std::make_unique<wit::WptVerifier>(bundles, o);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

std::string_view signing_input(std::string_view token) { return token.substr(0, token.rfind('.')); }

// JOSE R || S to the DER form OpenSSL verifies, done once before the timed loop.
std::string der_signature(std::string_view token) {
  const std::string raw = awaken::jose::CompactJws::parse(token).signature();
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG* s = ECDSA_SIG_new();
  ECDSA_SIG_set0(s, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(s, &der);
  ECDSA_SIG_free(s);
  if (len <= 0) throw std::runtime_error("DER encoding failed");
  std::string out{reinterpret_cast<const char*>(der), static_cast<std::size_t>(len)};
  OPENSSL_free(der);
  return out;
}

// --- making proofs -----------------------------------------------------------------------------

// What any caller pays for one ES256 signature: a fresh EVP_MD_CTX, the digest fetched once, the
// DER signature left as it is. The input is a workload proof token's signing input.
void raw_sign(benchmark::State& state) {
  const Fixture& f = fixture();
  EVP_PKEY* pkey = f.workload.holder()->pkey;
  const std::string proof = f.proof();
  const std::string input{signing_input(proof)};
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  unsigned char sig[80];
  for (auto _ : state) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = sizeof sig;
    const bool ok =
        ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, md, nullptr, pkey) == 1 &&
        EVP_DigestSign(ctx, sig, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) state.SkipWithError("signing failed");
    benchmark::DoNotOptimize(sig);
  }
  EVP_MD_free(md);
  state.counters["input_bytes"] = static_cast<double>(input.size());
}

// A DPoP proof as a client makes one per request with a bound token (DpopKey::proof: the
// header with the public JWK encoded once, the claims with ath built and signed each time).
void dpop_proof(benchmark::State& state) {
  const awaken::DpopKey key = awaken::DpopKey::generate();
  std::size_t input_bytes = 0;
  for (auto _ : state) {
    const std::string proof = key.proof("GET", "https://orders.example.org/orders/17?page=2", access_token);
    input_bytes = proof.rfind('.');
    benchmark::DoNotOptimize(proof);
  }
  state.counters["input_bytes"] = static_cast<double>(input_bytes);
}

void wpt_make(benchmark::State& state) {
  const Fixture& f = fixture();
  const wit::WptRequest request{target, access_token};
  std::size_t input_bytes = 0;
  for (auto _ : state) {
    const wit::WptHeaders headers = make_workload_proof(f.svid, request);
    input_bytes = headers.workload_proof_token.reveal().rfind('.');
    benchmark::DoNotOptimize(headers);
  }
  state.counters["input_bytes"] = static_cast<double>(input_bytes);
}

// --- verifying them ----------------------------------------------------------------------------

// The two signatures a service checks: the WIT-SVID's under the issuer's key and the proof's
// under the workload's, each with a fresh EVP_MD_CTX, the signatures already in DER.
void raw_verify_two(benchmark::State& state) {
  const Fixture& f = fixture();
  const std::string wit_token{f.svid.token().reveal()};
  const std::string proof = f.proof();
  struct Check {
    EVP_PKEY* pkey;
    std::string input;
    std::string der;
  };
  const Check checks[] = {{f.issuer.holder()->pkey, std::string{signing_input(wit_token)}, der_signature(wit_token)},
                          {f.workload.holder()->pkey, std::string{signing_input(proof)}, der_signature(proof)}};
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  for (auto _ : state) {
    for (const Check& c : checks) {
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      const bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, c.pkey) == 1 &&
                      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(c.der.data()), c.der.size(),
                                       reinterpret_cast<const unsigned char*>(c.input.data()), c.input.size()) == 1;
      EVP_MD_CTX_free(ctx);
      if (!ok) state.SkipWithError("verification failed");
    }
  }
  EVP_MD_free(md);
}

// WptVerifier::verify of a fresh proof each time (a replayed one is refused). Proofs are made in
// batches outside the timing, each batch checked by a new verifier so that the replay cache
// stays at most one batch large. With `cached`, the verifier has seen the caller's WIT-SVID
// once before the timing (as a service has, from the caller's first request on): each verify
// checks the proof's signature and finds the WIT-SVID remembered. Without, every verify parses
// and checks the WIT-SVID too (a first request, or `wit_cache_capacity = 0`).
void wit_wpt_verify(benchmark::State& state, bool cached) {
  constexpr std::size_t batch = 256;
  const Fixture& f = fixture();
  const std::string wit_token{f.svid.token().reveal()};
  const std::string_view wits[] = {wit_token};
  std::vector<std::string> proofs;
  std::unique_ptr<wit::WptVerifier> verifier;
  std::size_t next = batch;
  for (auto _ : state) {
    if (next == batch) {
      state.PauseTiming();
      proofs.clear();
      for (std::size_t i = 0; i < batch; ++i) proofs.push_back(f.proof());
      verifier = f.verifier(cached ? 1024 : 0);
      const std::string warm = f.proof();
      const std::string_view warm_wpts[] = {warm};
      (void)verifier->verify({wits, warm_wpts, path, access_token});
      next = 0;
      state.ResumeTiming();
    }
    const std::string_view wpts[] = {proofs[next++]};
    const wit::WptVerified verified = verifier->verify({wits, wpts, path, access_token});
    benchmark::DoNotOptimize(verified);
  }
  const wit::WptVerifierStats stats = verifier->stats();
  state.counters["wit_hits"] = static_cast<double>(stats.wit_cache_hits);
  state.counters["wit_misses"] = static_cast<double>(stats.wit_cache_misses);
}

void wit_wpt_verify_cached(benchmark::State& state) { wit_wpt_verify(state, true); }
void wit_wpt_verify_uncached(benchmark::State& state) { wit_wpt_verify(state, false); }

}  // namespace

int main(int argc, char** argv) {
  // Keys, the WIT-SVID and the bundle before any timing starts.
  (void)fixture();

  const auto add = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Unit(benchmark::kMicrosecond)->Repetitions(7)->DisplayAggregatesOnly(true);
  };
  add("sign/raw_es256", raw_sign);
  add("sign/dpop_proof", dpop_proof);
  add("sign/wpt_make", wpt_make);
  add("verify/raw_es256_x2", raw_verify_two);
  add("verify/wit_wpt", wit_wpt_verify_cached);
  add("verify/wit_wpt_uncached", wit_wpt_verify_uncached);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\n");
  awaken::bench::print_ratio(reporter, "DPoP proof make:", "sign/dpop_proof", "sign/raw_es256", "raw_sign");
  awaken::bench::print_ratio(reporter, "WPT make:", "sign/wpt_make", "sign/raw_es256", "raw_sign");
  awaken::bench::print_ratio(reporter, "WIT+WPT verify, WIT seen:", "verify/wit_wpt", "verify/raw_es256_x2",
                             "2_raw_verify");
  awaken::bench::print_ratio(reporter, "WIT+WPT verify, WIT new:", "verify/wit_wpt_uncached", "verify/raw_es256_x2",
                             "2_raw_verify");
  return 0;
}
