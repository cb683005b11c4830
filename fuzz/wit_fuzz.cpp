// Fuzzes WIT-SVIDs and workload proof tokens. The first byte chooses what the rest is:
//   0 a WIT-SVID for parse_insecure          1 a WIT-SVID for parse_and_validate
//   2 a WIT bundle (JWKS)                    3 a private JWK
//   4 a proof, verified with a valid WIT     5 a request: proofs (comma-separated), path,
//                                              access token, transaction token, then headers
//                                              "name:value", one per line
//   6 WIT-SVID claims, signed by the WIT authority, then parse_and_validate
//   7 proof claims, signed with the WIT's key, then verified as a request (the lines of 5 after
//     the first)
//   8 a request made with make_workload_proof (path, access token, transaction token, headers,
//     one per line), then verified
// Only awaken::Error may escape a call; anything else crashes. What is accepted keeps its
// invariants: a parsed WIT-SVID keeps its token and never prints it, a private JWK signs what its
// public half verifies, a WIT-SVID that validates makes proofs that verify, and so does every
// request make_workload_proof accepts.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <awaken/clock.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>

using namespace awaken::spiffe;
using namespace awaken::spiffe::experimental;
using awaken::RedactedString;
using awaken::jose::Algorithm;
using awaken::jose::PrivateKey;

namespace {

// Keys made for this target alone. The authority signs WIT-SVIDs (kid fuzz-wit-1); the workload
// key is the cnf.jwk of `wit` and signs its proofs. The seeds in fuzz/corpus/wit were made with
// them, valid at `now`.
constexpr std::string_view authority_jwk = R"({"kty":"EC","crv":"P-256",
  "x":"8tCEY1dGr_Jai9lXjmmQJbEWPgXWTv3d9A1bI5AYPi4","y":"-VKXTVOP3_HkfBn_muwZ3N9jNNgAjj_YRO6-19cBfZM",
  "d":"8713kgq6myHuKnoul_EwByjwX8kKXPJu15EYaUW1RuA"})";
constexpr std::string_view workload_jwk = R"({"kty":"EC","crv":"P-256",
  "x":"3k1umqkWMWt1jVO1AMp7R-_gVOUQt2P9Ryub3SIrSic","y":"nZZq12gU9secLLdqw4OQAGGS2kKKwrdoyDlbtY62c4o",
  "d":"eSuO0CIcbTvLZbq6W9Zgjvm6Y0-4kF6PaGb0XRTToco"})";
// The authority, and the workload key under another use, which is no WIT authority.
constexpr std::string_view bundle_jwks = R"({"keys":[
  {"kty":"EC","crv":"P-256","kid":"fuzz-wit-1","use":"wit-svid","alg":"ES256",
   "x":"8tCEY1dGr_Jai9lXjmmQJbEWPgXWTv3d9A1bI5AYPi4","y":"-VKXTVOP3_HkfBn_muwZ3N9jNNgAjj_YRO6-19cBfZM"},
  {"kty":"EC","crv":"P-256","kid":"jwt-1","use":"jwt-svid",
   "x":"3k1umqkWMWt1jVO1AMp7R-_gVOUQt2P9Ryub3SIrSic","y":"nZZq12gU9secLLdqw4OQAGGS2kKKwrdoyDlbtY62c4o"}]})";
// spiffe://example.org/caller, iat 1799999000, exp 1800086400, cnf.jwk the workload key (ES256).
constexpr std::string_view wit =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImZ1enotd2l0LTEiLCJ0eXAiOiJ3aXQrand0In0."
    "eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9jYWxsZXIiLCJleHAiOjE4MDAwODY0MDAsImlhdCI6MTc5OTk5OTAwMCwianRpIjoid2l0"
    "LWZ1enotMSIsImNuZiI6eyJqd2siOnsia3R5IjoiRUMiLCJjcnYiOiJQLTI1NiIsIngiOiIzazF1bXFrV01XdDFqVk8xQU1wN1ItX2dWT1VR"
    "dDJQOVJ5dWIzU0lyU2ljIiwieSI6Im5aWnExMmdVOXNlY0xMZHF3NE9RQUdHUzJrS0t3cmRveURsYnRZNjJjNG8iLCJhbGciOiJFUzI1NiJ9"
    "fX0.5jAiNGURWIRKc5arv88d6DDkr-PnLkmM_awB3xpr2WOk_0p5iS5jTTFBcgA3EcdXB9OngeCIgif0aLzg2H2Y_A";
constexpr std::string_view origin = "https://svc.test";

struct Fixed {
  // 1800000001 s: within the WIT's life.
  awaken::ManualClock clock{std::chrono::system_clock::time_point{std::chrono::seconds{1'800'000'000}}};
  PrivateKey authority = PrivateKey::from_jwk(RedactedString{authority_jwk});
  PrivateKey workload = PrivateKey::from_jwk(RedactedString{workload_jwk});
  std::shared_ptr<const JwtBundleSet> bundles = std::make_shared<JwtBundleSet>(
      std::vector<JwtBundle>{parse_wit_bundle(TrustDomain::parse("example.org"), bundle_jwks)});
  WitSvidOptions wit_options;
  WptVerifierOptions verifier_options;
  WptOptions proof_options;
  awaken::jose::JwsSigner wit_signer{Algorithm::es256, {{"typ", "wit+jwt"}, {"kid", "fuzz-wit-1"}}, authority};
  awaken::jose::JwsSigner proof_signer{Algorithm::es256, {{"typ", "wpt+jwt"}}, workload};

  Fixed() {
    wit_options.clock = &clock;
    verifier_options.origins = {std::string{origin}};
    verifier_options.wit = wit_options;
    proof_options.clock = &clock;
  }
};

const Fixed& fixed() {
  static const Fixed f;
  return f;
}

// A fresh verifier for each input, so that an input's outcome never depends on the ones before.
WptVerifier verifier() { return WptVerifier{fixed().bundles, fixed().verifier_options}; }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (std::size_t at = 0;;) {
    const auto end = s.find(sep, at);
    out.push_back(s.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
    if (end == std::string_view::npos) return out;
    at = end + 1;
  }
}

// The lines of a request after its first: path, access token, transaction token, headers.
struct Request {
  std::string_view path, access_token, transaction_token;
  std::vector<std::pair<std::string_view, std::string_view>> headers;

  explicit Request(const std::vector<std::string_view>& lines, std::size_t first) {
    auto line = [&](std::size_t i) { return i < lines.size() ? lines[i] : std::string_view{}; };
    path = line(first);
    access_token = line(first + 1);
    transaction_token = line(first + 2);
    for (std::size_t i = first + 3; i < lines.size(); ++i) {
      const auto colon = lines[i].find(':');
      headers.emplace_back(lines[i].substr(0, colon),
                           colon == std::string_view::npos ? std::string_view{} : lines[i].substr(colon + 1));
    }
  }
};

void check_verified(const WptVerified& v) {
  if (v.caller().str().empty() || v.jti.empty() || v.jti.size() > 256) std::abort();
  for (const auto& name : v.covered_headers)
    for (const char c : name)
      if (c >= 'A' && c <= 'Z') std::abort();
}

// A proof for `request` from `svid` must verify at the service `request` names.
void round_trip(const WitSvid& svid, const Request& request) {
  // A request's path is in origin form; anything else joined to the origin names another host.
  if (!request.path.empty() && request.path.front() != '/') return;
  const std::string target = std::string{origin} + std::string{request.path};
  const WptRequest made{target, request.access_token, request.transaction_token, request.headers};
  std::optional<WptHeaders> headers;
  try {
    headers.emplace(make_workload_proof(svid, made, fixed().proof_options));
  } catch (const awaken::Error&) {
    return;  // a target or header make_workload_proof refuses
  }
  const std::string_view wits[] = {headers->workload_identity_token.reveal()};
  const std::string_view wpts[] = {headers->workload_proof_token.reveal()};
  const WptPresented presented{wits,           wpts, request.path, request.access_token, request.transaction_token,
                               request.headers};
  try {
    check_verified(verifier().verify(presented));
  } catch (const awaken::Error&) {
    std::abort();  // a proof made by awaken that awaken refuses
  }
}

void run(unsigned mode, std::string_view input) {
  const Fixed& f = fixed();
  switch (mode) {
    case 0: {
      const auto svid = WitSvid::parse_insecure(input);
      if (svid.token().reveal() != input || svid.spiffe_id().str().empty() || svid.has_private_key() ||
          !svid.confirmation_key().supports(svid.confirmation_algorithm()) ||
          to_string(svid).find(input) != std::string::npos)
        std::abort();
      break;
    }
    case 1: {
      const auto svid = WitSvid::parse_and_validate(input, *f.bundles, f.wit_options);
      if (svid.token().reveal() != input || svid.key_id() != "fuzz-wit-1") std::abort();
      break;
    }
    case 2: {
      const auto bundle = parse_wit_bundle(TrustDomain::parse("example.org"), input);
      for (const auto& a : bundle.authorities())
        if (bundle.find_authority(a.key_id()) != &a) std::abort();
      break;
    }
    case 3: {
      const auto key = PrivateKey::from_jwk(RedactedString{input});
      const auto pub = key.public_key();
      if (pub.thumbprint() != awaken::jose::sha256_base64url(pub.to_jwk().dump())) std::abort();
      // EC keys only: a fuzzed RSA key of 16384 bits would take seconds to sign with.
      if (key.type() == awaken::jose::KeyType::ec) {
        const Algorithm alg = key.curve() == awaken::jose::Curve::p256   ? Algorithm::es256
                              : key.curve() == awaken::jose::Curve::p384 ? Algorithm::es384
                                                                         : Algorithm::es512;
        awaken::jose::CompactJws::parse(awaken::jose::sign_compact(alg, nullptr, "{}", key)).verify(pub);
      }
      break;
    }
    case 4: {
      const std::string_view wits[] = {wit};
      const std::string_view wpts[] = {input};
      check_verified(verifier().verify({wits, wpts, "/p"}));
      break;
    }
    case 5:
    case 7: {
      const auto lines = split(input, '\n');
      const Request request{lines, 1};
      std::vector<std::string_view> proofs;
      std::string signed_proof;
      if (mode == 5) {
        if (!lines[0].empty()) proofs = split(lines[0], ',');
      } else {
        signed_proof = f.proof_signer.sign(lines[0]);
        proofs.push_back(signed_proof);
      }
      const std::string_view wits[] = {wit};
      check_verified(verifier().verify(
          {wits, proofs, request.path, request.access_token, request.transaction_token, request.headers}));
      break;
    }
    case 6: {
      const auto svid = WitSvid::parse_and_validate(f.wit_signer.sign(input), *f.bundles, f.wit_options);
      std::optional<WitSvid> holder;
      try {
        holder.emplace(svid.with_private_key(f.workload));
      } catch (const awaken::Error&) {
        return;  // cnf.jwk is another key
      }
      round_trip(*holder, Request{{"/p"}, 0});
      break;
    }
    case 8: {
      static const WitSvid svid = WitSvid::parse_insecure(wit).with_private_key(f.workload);
      round_trip(svid, Request{split(input, '\n'), 0});
      break;
    }
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // ASCII digits choose their own mode.
  const unsigned mode = (data[0] & 0x0fU) % 9;
  try {
    run(mode, std::string_view{reinterpret_cast<const char*>(data) + 1, size - 1});
  } catch (const awaken::Error&) {
  }
  return 0;
}
