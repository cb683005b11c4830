// Proofs of possession without I/O. WIT-SVIDs and workload proof tokens: the draft's published
// example, every check of the WIT-SVID standard, proofs made and verified, the replay cache; the
// JOSE pieces they stand on (private JWKs, generated keys, thumbprints); and DPoP keys and proofs
// (RFC 9449) with the tokens that carry them.
#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <awaken/credentials/dpop.hpp>
#include <awaken/credentials/token.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>

#include "credentials/minters/token_request.hpp"
#include "support/errors.hpp"

using namespace awaken::spiffe::experimental;
using awaken::ManualClock;
using awaken::RedactedString;
using awaken::spiffe_errc;
using awaken::jose::Algorithm;
using awaken::jose::PrivateKey;
using awaken::jose::PublicKey;
using namespace awaken::spiffe;
using namespace awaken::test;
using json = nlohmann::json;

namespace {

// draft-ietf-wimse-s2s-protocol's examples: the issuer key ("June 5"), its WIT, and the WPT
// that goes with it (EdDSA, which the WIT-SVID standard excludes).
constexpr const char* draft_issuer_jwk = R"({"kty":"EC","kid":"June 5","crv":"P-256",
  "x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks","y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo",
  "d":"NRHs9bfMUcF49AV_NIoeh3UGopW4AXZLfv5G2px1WcY"})";
constexpr const char* draft_wit =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6Ikp1bmUgNSIsInR5cCI6IndpdCtqd3QifQ."
    "eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2IjoiRWQyNTUxOSIsImt0eSI6Ik9LUCIsIngiOiIxQ1hYdmZsTl9MVlZzSXNZWHNV"
    "dkIwM0ptbEdXZUNIcVFWdW91Q0Y5MmJnIn19LCJleHAiOjE3NDU1MTI1MTAsImlhdCI6MTc0NTUwODkxMCwianRpIjoieC1fMUNUTDJjY2Ez"
    "Q1NFNGN3Yl9sIiwic3ViIjoid2ltc2U6Ly9leGFtcGxlLmNvbS9zcGVjaWZpYy13b3JrbG9hZCJ9."
    "6KraSQUxWdl9dxFQ3Fj6dPY0Vi88OkwFwZpAIOhLeq6AbXAnLLQgOp8U9UDGcBuYF3KiNv6oKQD1ZWAzrMZOJw";
constexpr const char* draft_wpt =
    "eyJhbGciOiJFZERTQSIsInR5cCI6IndwdCtqd3QifQ."
    "eyJhdGgiOiJDTDR3amZwUm1OZi1iZFlJYllMblY5ZDVyTUFSR3dLWUUxMHdVd3pDMGpJIiwiYXVkIjoiaHR0cHM6Ly93b3JrbG9hZC5leGFt"
    "cGxlLmNvbS9wYXRoIiwiZXhwIjoxNzQ1NTEwMDE2LCJqdGkiOiJfX2J3YzRFU0MzYWNjMkxUQzEtX3giLCJ3dGgiOiJBYVlVZkMzNEQxZGky"
    "RnhRTHBpSUpKN1NnOFZaNm84T0Nkd1NmOUlUb0xnIn0."
    "PI7d9AcYhLoEgPgbJvcM132lkBKnM1NXU-5hZUzVTIyj2dRJaTLFs6e5NYv5gg6AqcV7NvkYCwfgMgWasWQzCA";

json public_jwk(const PrivateKey& key, const char* alg) {
  json jwk = key.public_key().to_jwk();
  jwk["alg"] = alg;
  return jwk;
}

// A trust domain that issues WIT-SVIDs, with a clock.
struct Issuer {
  ManualClock clock;
  PrivateKey key = PrivateKey::generate();
  std::string kid = "wit-1";
  std::shared_ptr<const JwtBundleSet> bundles;

  Issuer() {
    json jwks = {{"keys", json::array()}};
    json wit_key = public_jwk(key, "ES256");
    wit_key["kid"] = kid;
    wit_key["use"] = "wit-svid";
    jwks["keys"].push_back(wit_key);
    // A JWT-SVID key of the same trust domain: never a WIT authority.
    json jwt_key = public_jwk(PrivateKey::generate(), "ES256");
    jwt_key["kid"] = "jwt-1";
    jwt_key["use"] = "jwt-svid";
    jwks["keys"].push_back(jwt_key);
    bundles = std::make_shared<JwtBundleSet>(
        std::vector<JwtBundle>{parse_wit_bundle(TrustDomain::parse("example.org"), jwks.dump())});
  }

  long long now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock.system_now().time_since_epoch()).count();
  }

  json claims(const json& cnf_jwk, const std::string& sub = "spiffe://example.org/caller") const {
    return {{"sub", sub}, {"exp", now() + 600}, {"iat", now()}, {"jti", "w1"}, {"cnf", {{"jwk", cnf_jwk}}}};
  }

  std::string sign(const json& claims, json header = {{"typ", "wit+jwt"}}, const PrivateKey* with = nullptr) const {
    if (!header.contains("kid")) header["kid"] = kid;
    if (header["kid"].is_null()) header.erase("kid");
    return awaken::jose::sign_compact(Algorithm::es256, header, claims.dump(), with != nullptr ? *with : key);
  }

  WitSvidOptions options() const {
    WitSvidOptions o;
    o.clock = &clock;
    return o;
  }
};

}  // namespace

TEST_CASE("JOSE: private JWKs, generated keys and RFC 7638 thumbprints", "[wit]") {
  const auto issuer = PrivateKey::from_jwk(RedactedString{draft_issuer_jwk});
  CHECK(issuer.curve() == awaken::jose::Curve::p256);
  const json pub = issuer.public_key().to_jwk();
  CHECK(pub.dump() == R"({"crv":"P-256","kty":"EC","x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks",)"
                      R"("y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo"})");
  CHECK(issuer.public_key().thumbprint() == awaken::jose::sha256_base64url(pub.dump()));
  // The draft's WIT verifies under the draft's issuer key.
  CHECK_NOTHROW(awaken::jose::CompactJws::parse(draft_wit).verify(issuer.public_key()));

  json wrong_d = json::parse(draft_issuer_jwk);
  wrong_d["d"] = awaken::jose::base64url_encode(std::string(31, '\x01') + "\x02");
  CHECK(code_of([&] { PrivateKey::from_jwk(RedactedString{wrong_d.dump()}); }) ==
        awaken::jose_errc::invalid_private_key);
  json no_d = json::parse(draft_issuer_jwk);
  no_d.erase("d");
  CHECK(code_of([&] { PrivateKey::from_jwk(RedactedString{no_d.dump()}); }) == awaken::jose_errc::invalid_private_key);
  json okp = {{"kty", "OKP"},
              {"crv", "Ed25519"},
              {"x", "1CXXvflN_LVVsIsYXsUvB03JmlGWeCHqQVuouCF92bg"},
              {"d", "sdLX8yCYKqo_XvGBLn-ZWeKT7llYeeQpgeCaXVxb5kY"}};
  CHECK(code_of([&] { PrivateKey::from_jwk(RedactedString{okp.dump()}); }) == awaken::jose_errc::unsupported_key_type);
  CHECK(code_of([] { PrivateKey::from_jwk(RedactedString{"not json"}); }) == awaken::jose_errc::malformed_json);
  try {
    PrivateKey::from_jwk(RedactedString{wrong_d.dump()});
  } catch (const awaken::Error& e) {
    CHECK_THAT(e.what(), !Catch::Contains(wrong_d["d"].get<std::string>()));
  }

  const auto a = PrivateKey::generate();
  const auto b = PrivateKey::generate(awaken::jose::Curve::p384);
  CHECK(a.supports(Algorithm::es256));
  CHECK(b.supports(Algorithm::es384));
  CHECK(a.public_key().thumbprint() != PrivateKey::generate().public_key().thumbprint());
  CHECK(PublicKey::from_jwk(a.public_key().to_jwk()).thumbprint() == a.public_key().thumbprint());
  CHECK(awaken::jose::random_base64url(16).size() == 22);
  CHECK(awaken::jose::random_base64url() != awaken::jose::random_base64url());
}

TEST_CASE("JOSE: random identifiers are distinct across threads and either side of a fork", "[wit]") {
  CHECK(code_of([] { awaken::jose::random_base64url(0); }) == awaken::jose_errc::signing_failed);
  CHECK(code_of([] { awaken::jose::random_base64url(65); }) == awaken::jose_errc::signing_failed);
  CHECK(awaken::jose::random_base64url(64).size() == 86);

  std::vector<std::string> a, b;
  std::thread other{[&] {
    for (int i = 0; i < 5000; ++i) b.push_back(awaken::jose::random_base64url());
  }};
  for (int i = 0; i < 5000; ++i) a.push_back(awaken::jose::random_base64url());
  other.join();
  std::set<std::string> all{a.begin(), a.end()};
  all.insert(b.begin(), b.end());
  CHECK(all.size() == 10000);

  // The parent's pool is part used; the child must not hand out the parent's next bytes.
  (void)awaken::jose::random_base64url();
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const std::string id = awaken::jose::random_base64url();
    const ssize_t written = write(fds[1], id.data(), id.size());
    _exit(written == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  close(fds[1]);
  const std::string mine = awaken::jose::random_base64url();
  std::string theirs(22, '\0');
  const ssize_t got = read(fds[0], theirs.data(), theirs.size());
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(got == 22);
  CHECK(WIFEXITED(status));
  CHECK(theirs != mine);
}

TEST_CASE("The draft's example: hashes match, and its WIT is no WIT-SVID", "[wit]") {
  // The published WPT's wth and ath, recomputed.
  const std::string payload = awaken::jose::base64url_decode(std::string_view{draft_wpt}.substr(
      std::string_view{draft_wpt}.find('.') + 1,
      std::string_view{draft_wpt}.rfind('.') - std::string_view{draft_wpt}.find('.') - 1));
  const json claims = json::parse(payload);
  CHECK(claims["wth"] == awaken::jose::sha256_base64url(draft_wit));
  CHECK(claims["ath"] == awaken::jose::sha256_base64url("16_mAd0GiwaZokU26_0902100"));
  // A wimse:// subject and an Ed25519 cnf key: outside the SPIFFE profile.
  CHECK(code_of([] { WitSvid::parse_insecure(draft_wit); }) == spiffe_errc::invalid_subject);
  // EdDSA is not among the algorithms awaken verifies.
  CHECK(code_of([] { awaken::jose::CompactJws::parse(draft_wpt); }) == awaken::jose_errc::unsupported_algorithm);
}

TEST_CASE("WIT-SVID: a valid token, and each rule of the standard", "[wit]") {
  Issuer td;
  const auto workload_key = PrivateKey::generate();
  const json cnf = public_jwk(workload_key, "ES256");
  const std::string token = td.sign(td.claims(cnf));
  const auto svid = WitSvid::parse_and_validate(token, *td.bundles, td.options());
  CHECK(svid.spiffe_id().str() == "spiffe://example.org/caller");
  CHECK(svid.key_id() == "wit-1");
  CHECK(svid.confirmation_algorithm() == Algorithm::es256);
  CHECK(svid.confirmation_key().thumbprint() == workload_key.public_key().thumbprint());
  CHECK(svid.token_hash() == awaken::jose::sha256_base64url(token));
  CHECK_FALSE(svid.has_private_key());
  const std::string text = to_string(svid);
  CHECK_THAT(text, Catch::Contains("spiffe://example.org/caller") && Catch::Contains("[redacted]") &&
                       !Catch::Contains(token.substr(0, 20)));

  auto refused = [&](const std::string& t, WitSvidOptions o) {
    return code_of([&] { WitSvid::parse_and_validate(t, *td.bundles, o); });
  };
  const auto o = td.options();
  CHECK(refused(td.sign(td.claims(cnf), {{"typ", "JWT"}}), o) == spiffe_errc::invalid_typ);
  CHECK(refused(td.sign(td.claims(cnf), json::object()), o) == spiffe_errc::invalid_typ);
  CHECK(refused(td.sign(td.claims(cnf), {{"typ", "wit+jwt"}, {"kid", nullptr}}), o) == spiffe_errc::missing_key_id);
  json with_aud = td.claims(cnf);
  with_aud["aud"] = "spiffe://example.org/relying-party";
  CHECK(refused(td.sign(with_aud), o) == spiffe_errc::audience_present);
  json no_exp = td.claims(cnf);
  no_exp.erase("exp");
  CHECK(refused(td.sign(no_exp), o) == spiffe_errc::missing_expiration);
  CHECK(refused(td.sign(td.claims(cnf, "https://example.org/caller")), o) == spiffe_errc::invalid_subject);

  json no_cnf = td.claims(cnf);
  no_cnf.erase("cnf");
  CHECK(refused(td.sign(no_cnf), o) == spiffe_errc::invalid_confirmation);
  json no_alg = cnf;
  no_alg.erase("alg");
  CHECK(refused(td.sign(td.claims(no_alg)), o) == spiffe_errc::invalid_confirmation);
  json eddsa = cnf;
  eddsa["alg"] = "EdDSA";
  CHECK(refused(td.sign(td.claims(eddsa)), o) == spiffe_errc::invalid_confirmation);
  json unfit = cnf;  // an EC P-256 key claiming RS256: go-spiffe lets it through
  unfit["alg"] = "RS256";
  CHECK(refused(td.sign(td.claims(unfit)), o) == spiffe_errc::invalid_confirmation);
  json es384 = cnf;
  es384["alg"] = "ES384";
  CHECK(refused(td.sign(td.claims(es384)), o) == spiffe_errc::invalid_confirmation);
  json private_cnf = cnf;
  private_cnf["d"] = "AAAA";
  CHECK(refused(td.sign(td.claims(private_cnf)), o) == spiffe_errc::invalid_confirmation);

  // Keys and signatures: only wit-svid keys count.
  CHECK(refused(td.sign(td.claims(cnf), {{"typ", "wit+jwt"}, {"kid", "jwt-1"}}), o) ==
        spiffe_errc::authority_not_found);
  const auto stranger = PrivateKey::generate();
  CHECK(refused(td.sign(td.claims(cnf), {{"typ", "wit+jwt"}}, &stranger), o) == awaken::jose_errc::invalid_signature);
  CHECK(refused(td.sign(td.claims(cnf, "spiffe://other.org/caller")), o) == spiffe_errc::bundle_not_found);

  // Time: exp with a leeway, nbf honoured, and an optional cap on the lifetime.
  json nbf = td.claims(cnf);
  nbf["nbf"] = td.now() + 120;
  CHECK(refused(td.sign(nbf), o) == spiffe_errc::not_yet_valid);
  nbf["nbf"] = td.now() + 30;
  CHECK(refused(td.sign(nbf), o) == std::error_code{});
  auto capped = o;
  capped.max_lifetime = std::chrono::seconds{300};
  CHECK(refused(token, capped) == spiffe_errc::lifetime_too_long);
  td.clock.advance(std::chrono::seconds{600 + 59});
  CHECK(refused(token, o) == std::error_code{});
  td.clock.advance(std::chrono::seconds{2});
  CHECK(refused(token, o) == spiffe_errc::expired);
  // parse_insecure checks the shape, not the time or the signature.
  CHECK(WitSvid::parse_insecure(token).spiffe_id().str() == "spiffe://example.org/caller");
  CHECK(code_of([&] { WitSvid::parse_insecure(td.sign(with_aud)); }) == spiffe_errc::audience_present);
}

TEST_CASE("WPT: made for a request, verified by the service it calls", "[wit]") {
  Issuer td;
  const auto workload_key = PrivateKey::generate();
  const auto svid =
      WitSvid::parse_insecure(td.sign(td.claims(public_jwk(workload_key, "ES256")))).with_private_key(workload_key);
  CHECK(svid.has_private_key());
  CHECK(code_of([&] { svid.with_private_key(PrivateKey::generate()); }) == spiffe_errc::key_mismatch);
  CHECK(code_of([&] { make_workload_proof(WitSvid::parse_insecure(svid.token().reveal()), {"https://a.test/"}); }) ==
        spiffe_errc::missing_private_key);

  WptVerifierOptions vo;
  vo.origins = {"https://orders.example.org", "http://127.0.0.1:8443"};
  vo.wit = td.options();
  WptVerifier verifier{td.bundles, vo};
  WptOptions po;
  po.clock = &td.clock;

  const std::pair<std::string_view, std::string_view> sent[] = {{"Content-Type", " application/json "},
                                                                {"X-Order", "17"}};
  WptRequest request{"https://orders.example.org/orders/17?expand=1#top", "at-123", "txn-9", sent};
  const auto headers = make_workload_proof(svid, request, po);
  CHECK(headers.workload_identity_token.reveal() == svid.token().reveal());
  const auto proof = awaken::jose::CompactJws::parse(headers.workload_proof_token.reveal());
  CHECK(proof.header()["typ"] == "wpt+jwt");
  const json claims = json::parse(proof.payload());
  CHECK(claims["aud"] == "https://orders.example.org/orders/17");
  CHECK(claims["exp"] == td.now() + 60);
  CHECK(claims["jti"].get<std::string>().size() == 22);
  CHECK(claims["wth"] == svid.token_hash());
  CHECK(claims["ath"] == awaken::jose::sha256_base64url("at-123"));
  CHECK(claims["tth"] == awaken::jose::sha256_base64url("txn-9"));
  CHECK(claims["oth"]["content-type"] == awaken::jose::sha256_base64url("application/json"));
  CHECK_FALSE(claims.contains("iat"));

  const std::string wit{headers.workload_identity_token.reveal()};
  const std::string wpt{headers.workload_proof_token.reveal()};
  std::string_view wits[] = {wit};
  std::string_view wpts[] = {wpt};
  const std::pair<std::string_view, std::string_view> received[] = {
      {"content-type", "application/json"}, {"x-order", "17"}, {"host", "evil.test"}};
  WptPresented presented{wits, wpts, "/orders/17?expand=1", "at-123", "txn-9", received};

  auto refused = [&](WptPresented p) { return code_of([&] { verifier.verify(p); }); };
  // Each binding, broken one at a time, is refused before the jti is used.
  auto other = presented;
  other.path = "/orders/18";
  CHECK(refused(other) == spiffe_errc::audience_mismatch);
  other = presented;
  other.access_token = "at-456";
  CHECK(refused(other) == spiffe_errc::proof_mismatch);
  other.access_token = {};
  CHECK(refused(other) == spiffe_errc::proof_mismatch);  // ath without a token
  other = presented;
  other.transaction_token = "txn-8";
  CHECK(refused(other) == spiffe_errc::proof_mismatch);
  const std::pair<std::string_view, std::string_view> tampered[] = {{"content-type", "text/plain"}, {"x-order", "17"}};
  other = presented;
  other.headers = tampered;
  CHECK(refused(other) == spiffe_errc::proof_mismatch);
  const std::pair<std::string_view, std::string_view> lacking[] = {{"content-type", "application/json"}};
  other.headers = lacking;
  CHECK(refused(other) == spiffe_errc::proof_mismatch);
  const std::span<const std::string_view> none;
  std::string_view two[] = {wpt, wpt};
  other = presented;
  other.proof_tokens = none;
  CHECK(refused(other) == spiffe_errc::missing_proof);
  other.proof_tokens = two;
  CHECK(refused(other) == spiffe_errc::multiple_proofs);
  other = presented;
  other.identity_tokens = none;
  CHECK(refused(other) == spiffe_errc::missing_proof);
  CHECK(verifier.replay_cache_size() == 0);

  const auto verified = verifier.verify(presented);
  CHECK(verified.caller().str() == "spiffe://example.org/caller");
  CHECK(verified.covered_headers == std::vector<std::string>{"content-type", "x-order"});
  CHECK(verifier.replay_cache_size() == 1);
  CHECK(refused(presented) == spiffe_errc::replayed_proof);

  // The second origin, with a proof without ath, tth or oth.
  const auto plain = make_workload_proof(svid, {"http://127.0.0.1:8443/health"}, po);
  const std::string plain_wpt{plain.workload_proof_token.reveal()};
  std::string_view plain_wpts[] = {plain_wpt};
  CHECK(verifier.verify({wits, plain_wpts, "/health"}).covered_headers.empty());

  // Another WIT-SVID's proof with this WIT: wth no longer matches (and the key differs).
  const auto other_key = PrivateKey::generate();
  const auto other_svid =
      WitSvid::parse_insecure(td.sign(td.claims(public_jwk(other_key, "ES256")))).with_private_key(other_key);
  const std::string foreign{
      make_workload_proof(other_svid, {"https://orders.example.org/x"}, po).workload_proof_token.reveal()};
  std::string_view foreign_wpts[] = {foreign};
  CHECK(refused({wits, foreign_wpts, "/x"}) == awaken::jose_errc::invalid_signature);
  const std::string other_wit{other_svid.token().reveal()};
  std::string_view other_wits[] = {other_wit};
  const auto mixed = make_workload_proof(svid, {"https://orders.example.org/x"}, po);
  const std::string mixed_wpt{mixed.workload_proof_token.reveal()};
  std::string_view mixed_wpts[] = {mixed_wpt};
  CHECK(refused({other_wits, mixed_wpts, "/x"}) == awaken::jose_errc::invalid_signature);

  // typ: both spellings; alg must equal cnf.jwk.alg.
  const awaken::jose::JwsSigner media{Algorithm::es256, {{"typ", "application/wpt+jwt"}}, workload_key};
  json c = {{"aud", "https://orders.example.org/y"}, {"exp", td.now() + 30}, {"jti", "m1"}, {"wth", svid.token_hash()}};
  const std::string media_wpt = media.sign(c.dump());
  std::string_view media_wpts[] = {media_wpt};
  CHECK(refused({wits, media_wpts, "/y"}) == std::error_code{});
  const awaken::jose::JwsSigner jwt_typ{Algorithm::es256, {{"typ", "JWT"}}, workload_key};
  c["jti"] = "m2";
  const std::string jwt_wpt = jwt_typ.sign(c.dump());
  std::string_view jwt_wpts[] = {jwt_wpt};
  CHECK(refused({wits, jwt_wpts, "/y"}) == spiffe_errc::invalid_typ);
  // A proof signed under another algorithm than the WIT-SVID's key: the refusal names that key.
  const awaken::jose::JwsSigner p384{
      Algorithm::es384, {{"typ", "wpt+jwt"}}, PrivateKey::generate(awaken::jose::Curve::p384)};
  c["jti"] = "m2b";
  const std::string p384_wpt = p384.sign(c.dump());
  std::string_view p384_wpts[] = {p384_wpt};
  try {
    (void)verifier.verify({wits, p384_wpts, "/y"});
    FAIL("a proof under ES384 for an ES256 confirmation key was accepted");
  } catch (const awaken::Error& e) {
    CHECK(e.code() == spiffe_errc::algorithm_mismatch);
    CHECK_THAT(e.what(), Catch::Contains("alg ES384 with the WIT-SVID's confirmation key (cnf.jwk, alg ES256)"));
    CHECK_THAT(e.what(), !Catch::Contains("authority"));
  }

  // exp: required, not past, and not too far ahead.
  c["jti"] = "m3";
  c["exp"] = td.now() + 3600;
  const std::string long_wpt = media.sign(c.dump());
  std::string_view long_wpts[] = {long_wpt};
  CHECK(refused({wits, long_wpts, "/y"}) == spiffe_errc::lifetime_too_long);
  c.erase("exp");
  const std::string no_exp = media.sign(c.dump());
  std::string_view no_exp_wpts[] = {no_exp};
  CHECK(refused({wits, no_exp_wpts, "/y"}) == spiffe_errc::missing_expiration);
  const auto late = make_workload_proof(svid, {"https://orders.example.org/z"}, po);
  const std::string late_wpt{late.workload_proof_token.reveal()};
  std::string_view late_wpts[] = {late_wpt};
  td.clock.advance(std::chrono::seconds{60 + 31});
  CHECK(refused({wits, late_wpts, "/z"}) == spiffe_errc::expired);
}

TEST_CASE("WPT replay cache: bounded, fails closed, forgets what expired", "[wit]") {
  Issuer td;
  const auto key = PrivateKey::generate();
  const auto svid = WitSvid::parse_insecure(td.sign(td.claims(public_jwk(key, "ES256")))).with_private_key(key);
  WptVerifierOptions vo;
  vo.origins = {"https://svc.test"};
  vo.replay_cache_capacity = 3;
  vo.leeway = std::chrono::seconds{0};
  vo.wit = td.options();
  WptVerifier verifier{td.bundles, vo};
  WptOptions po;
  po.clock = &td.clock;
  po.lifetime = std::chrono::seconds{10};

  const std::string wit{svid.token().reveal()};
  std::string_view wits[] = {wit};
  auto present = [&] {
    const std::string wpt{make_workload_proof(svid, {"https://svc.test/p"}, po).workload_proof_token.reveal()};
    std::string_view wpts[] = {wpt};
    return code_of([&] { verifier.verify({wits, wpts, "/p"}); });
  };
  CHECK(present() == std::error_code{});
  CHECK(present() == std::error_code{});
  CHECK(present() == std::error_code{});
  CHECK(present() == spiffe_errc::replay_cache_full);
  CHECK(verifier.replay_cache_size() == 3);
  td.clock.advance(std::chrono::seconds{11});
  CHECK(present() == std::error_code{});
  CHECK(verifier.replay_cache_size() == 1);

  CHECK(code_of([&] { WptVerifier(td.bundles, WptVerifierOptions{}); }) == spiffe_errc::invalid_endpoint);
  WptVerifierOptions with_path;
  with_path.origins = {"https://svc.test/base"};
  CHECK(code_of([&] { WptVerifier(td.bundles, with_path); }) == spiffe_errc::invalid_endpoint);
  CHECK(code_of([&] { make_workload_proof(svid, {"/relative"}); }) == spiffe_errc::proof_mismatch);
  // What a verifier would refuse is not made: a header named twice (any case), or a target with
  // user info or a byte outside visible ASCII.
  const std::pair<std::string_view, std::string_view> twice[] = {{"X-Order", "1"}, {"x-order", "2"}};
  CHECK(code_of([&] {
          make_workload_proof(svid, {"https://svc.test/p", {}, {}, twice});
        }) == spiffe_errc::proof_mismatch);
  CHECK(code_of([&] { make_workload_proof(svid, {"https://u:p@svc.test/p"}); }) == spiffe_errc::proof_mismatch);
  CHECK(code_of([&] { make_workload_proof(svid, {"https://svc.test/\xdc"}); }) == spiffe_errc::proof_mismatch);
}

TEST_CASE("DPoP: proofs of a generated key, and tokens that carry it", "[dpop]") {
  const ManualClock clock{std::chrono::system_clock::time_point{std::chrono::seconds{1'800'000'000}}};
  const awaken::DpopKey key = awaken::DpopKey::generate();
  CHECK(key.algorithm() == Algorithm::es256);
  CHECK(key.thumbprint() == key.public_key().thumbprint());
  CHECK(to_string(key) == "DpopKey{alg=ES256, jkt=" + key.thumbprint() + "}");

  const std::string proof = key.proof("GET", "https://api.example.org/orders/7?page=2#top", "tok-123", "n-1", clock);
  const auto jws = awaken::jose::CompactJws::parse(proof);
  jws.verify(key.public_key());
  CHECK(jws.header()["typ"] == "dpop+jwt");
  CHECK(jws.header()["alg"] == "ES256");
  CHECK(jws.header()["jwk"].count("d") == 0);
  CHECK(PublicKey::from_jwk(jws.header()["jwk"]).thumbprint() == key.thumbprint());
  const json claims = json::parse(jws.payload());
  CHECK(claims["htm"] == "GET");
  CHECK(claims["htu"] == "https://api.example.org/orders/7");
  CHECK(claims["iat"] ==
        std::chrono::duration_cast<std::chrono::seconds>(clock.system_now().time_since_epoch()).count());
  CHECK(claims["ath"] == awaken::jose::sha256_base64url("tok-123"));
  CHECK(claims["nonce"] == "n-1");
  CHECK(claims["jti"].get<std::string>().size() == 22);
  CHECK(claims.size() == 6);
  // Each proof has its own jti; without a token or a nonce, no ath or nonce.
  const json bare = json::parse(awaken::jose::CompactJws::parse(key.proof("POST", "http://127.0.0.1:8/t")).payload());
  CHECK(bare.size() == 4);
  CHECK(bare["jti"] != claims["jti"]);
  // Another curve, its own algorithm.
  CHECK(awaken::DpopKey::generate(awaken::jose::Curve::p384).algorithm() == Algorithm::es384);

  // Bad input is refused before anything is signed, and the URL is quoted no further than its
  // origin.
  const auto refused = [&](std::string_view method, std::string_view url, std::string_view nonce = {}) {
    return code_of([&] { (void)key.proof(method, url, {}, nonce); }) == awaken::credential_errc::invalid_material;
  };
  CHECK(refused("", "https://a.example/"));
  CHECK(refused("GE T", "https://a.example/"));
  CHECK(refused("GET", "/relative"));
  CHECK(refused("GET", "ftp://a.example/"));
  CHECK(refused("GET", "https://user:pass@a.example/"));
  CHECK(refused("GET", "https://?x"));
  CHECK(refused("GET", "https://a.example/\xdc"));
  CHECK(refused("GET", "https://a.example/\r\nx"));
  CHECK(refused("GET", "https://a.example/", "with space"));
  CHECK(refused("GET", "https://a.example/", "quote\""));
  CHECK(refused("GET", "https://a.example/", std::string(1025, 'n')));
  CHECK_FALSE(refused("GET", "https://a.example/", std::string(1024, 'n')));
  try {
    (void)key.proof("GET", "gopher://user:secret@a.example/path?token=x");
    FAIL("no error");
  } catch (const awaken::Error& e) {
    CHECK(std::string{e.what()}.find("secret") == std::string::npos);
    CHECK(std::string{e.what()}.find("token=x") == std::string::npos);
  }

  // A bound token presents itself with a proof that hashes it; a bearer token needs none and
  // cannot make one.
  const auto dpop_key = std::make_shared<const awaken::DpopKey>(key);
  const awaken::Token bound{RedactedString{"bound-token"},
                            clock.system_now() + std::chrono::minutes{5},
                            clock.steady_now() + std::chrono::minutes{5},
                            "DPoP",
                            nullptr,
                            dpop_key};
  const awaken::AuthorizationHeaders h = bound.authorization("PATCH", "https://api.example.org/x", {}, clock);
  CHECK(h.authorization.reveal() == "DPoP bound-token");
  const json bound_claims = json::parse(awaken::jose::CompactJws::parse(h.dpop).payload());
  CHECK(bound_claims["ath"] == awaken::jose::sha256_base64url("bound-token"));
  CHECK(bound_claims["htm"] == "PATCH");
  CHECK(to_string(bound).find("bound-token") == std::string::npos);
  CHECK(to_string(bound).find("dpop_jkt=" + key.thumbprint()) != std::string::npos);

  const auto bearer = awaken::Token::expiring_in(RedactedString{"plain-token"}, std::chrono::minutes{5}, clock);
  const awaken::AuthorizationHeaders b = bearer.authorization("GET", "https://api.example.org/x");
  CHECK(b.authorization.reveal() == "Bearer plain-token");
  // The scheme of a bearer token is Bearer whatever token_type the server named (RFC 8693: N_A).
  const awaken::Token exchanged{RedactedString{"x-token"}, clock.system_now(), clock.steady_now(), "N_A"};
  CHECK(exchanged.authorization("GET", "https://a.example/").authorization.reveal() == "Bearer x-token");
  CHECK(b.dpop.empty());
  CHECK(bearer.dpop_key() == nullptr);
  CHECK(code_of([&] { (void)bearer.dpop_proof("GET", "https://api.example.org/x"); }) ==
        awaken::credential_errc::invalid_material);
  CHECK(awaken::is_dpop_nonce(""));
  CHECK_FALSE(awaken::is_dpop_nonce("a\\b"));
}

TEST_CASE("DPoP: a token endpoint's nonce challenge, answered without a socket", "[dpop]") {
  using awaken::detail::answer_nonce_challenge;
  using Answer = awaken::detail::NonceChallengeAnswer;
  // One retry for a new nonce, on the first attempt only.
  CHECK(answer_nonce_challenge(0, "", "n-1") == Answer::retry);
  CHECK(answer_nonce_challenge(0, "n-1", "n-2") == Answer::retry);
  CHECK(answer_nonce_challenge(1, "n-2", "n-3") == Answer::not_met);
  // The server offers the nonce it just refused: a retry would meet the same answer.
  CHECK(answer_nonce_challenge(0, "n-1", "n-1") == Answer::not_met);
  // A nonce that cannot be sent back, whatever the attempt.
  for (const std::string& bad : {std::string{}, std::string{"bad nonce"}, std::string{"q\"uote"},
                                 std::string(awaken::max_dpop_nonce_bytes + 1, 'n')}) {
    CHECK(answer_nonce_challenge(0, "n-1", bad) == Answer::invalid_nonce);
    CHECK(answer_nonce_challenge(1, "n-1", bad) == Answer::invalid_nonce);
  }
  CHECK(answer_nonce_challenge(0, "", std::string(awaken::max_dpop_nonce_bytes, 'n')) == Answer::retry);
}

namespace {

// A bundle source whose set the test replaces, as a WitSource's updates do.
class SwappableBundles final : public awaken::spiffe::BundleSource {
 public:
  explicit SwappableBundles(std::shared_ptr<const JwtBundleSet> set) : set_(std::move(set)) {}
  void replace(std::shared_ptr<const JwtBundleSet> set) {
    const std::lock_guard lock{mutex_};
    set_ = std::move(set);
  }
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override {
    const std::lock_guard lock{mutex_};
    return set_->bundle_for_trust_domain(td);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const JwtBundleSet> set_;
};

}  // namespace

TEST_CASE("WPT verifier's WIT-SVID cache: time, bundle changes and its bound still rule", "[wit]") {
  Issuer td;
  const auto key = PrivateKey::generate();
  auto source = std::make_shared<SwappableBundles>(td.bundles);
  WptVerifierOptions vo;
  vo.origins = {"https://svc.test"};
  vo.wit = td.options();
  vo.wit_cache_capacity = 2;
  WptVerifier verifier{source, vo};
  WptOptions po;
  po.clock = &td.clock;

  auto wit_with = [&](long long lifetime, const std::string& sub = "spiffe://example.org/caller") {
    json claims = td.claims(public_jwk(key, "ES256"), sub);
    claims["exp"] = td.now() + lifetime;
    claims["nbf"] = td.now();
    return WitSvid::parse_insecure(td.sign(claims)).with_private_key(key);
  };
  // A fresh proof each time, so that only the WIT-SVID is in question.
  auto present = [&](const WitSvid& svid) -> std::error_code {
    const std::string wit{svid.token().reveal()};
    const std::string wpt{make_workload_proof(svid, {"https://svc.test/p"}, po).workload_proof_token.reveal()};
    const std::string_view wits[] = {wit};
    const std::string_view wpts[] = {wpt};
    return code_of([&] {
      const auto verified = verifier.verify({wits, wpts, "/p"});
      CHECK(verified.caller() == svid.spiffe_id());
      CHECK(verified.wit.token_hash() == svid.token_hash());
    });
  };
  auto stats = [&] { return verifier.stats(); };

  const auto first = wit_with(600);
  CHECK(present(first) == std::error_code{});
  CHECK(present(first) == std::error_code{});
  CHECK(present(first) == std::error_code{});
  CHECK(stats().wit_cache_entries == 1);
  CHECK(stats().wit_cache_misses == 1);
  CHECK(stats().wit_cache_hits == 2);
  CHECK(stats().replay_entries == 3);

  SECTION("a remembered WIT-SVID still expires, and is not valid before its nbf") {
    td.clock.advance(std::chrono::seconds{-61});
    CHECK(present(first) == spiffe_errc::not_yet_valid);
    td.clock.advance(std::chrono::seconds{61 + 600 + 61});
    CHECK(present(first) == spiffe_errc::expired);
    CHECK(stats().wit_cache_hits == 2);
  }
  SECTION("a changed bundle validates it again: refused without its authority, remembered anew with it") {
    json other = public_jwk(PrivateKey::generate(), "ES256");
    other["kid"] = "wit-2";
    other["use"] = "wit-svid";
    const json without = {{"keys", json::array({other})}};
    source->replace(std::make_shared<JwtBundleSet>(
        std::vector<JwtBundle>{parse_wit_bundle(TrustDomain::parse("example.org"), without.dump())}));
    CHECK(present(first) == spiffe_errc::authority_not_found);
    CHECK(stats().wit_cache_misses == 2);
    // The same keys in a new bundle: checked once more, then remembered with it.
    json with_key = public_jwk(td.key, "ES256");
    with_key["kid"] = td.kid;
    with_key["use"] = "wit-svid";
    const json with = {{"keys", json::array({with_key})}};
    source->replace(std::make_shared<JwtBundleSet>(
        std::vector<JwtBundle>{parse_wit_bundle(TrustDomain::parse("example.org"), with.dump())}));
    CHECK(present(first) == std::error_code{});
    CHECK(present(first) == std::error_code{});
    CHECK(stats().wit_cache_misses == 3);
    CHECK(stats().wit_cache_hits == 3);
    CHECK(stats().wit_cache_entries == 1);
  }
  SECTION("bounded: the one that expires first makes room; refused tokens are not remembered") {
    const auto second = wit_with(900, "spiffe://example.org/second");
    const auto third = wit_with(1200, "spiffe://example.org/third");
    CHECK(present(second) == std::error_code{});
    CHECK(present(third) == std::error_code{});
    CHECK(stats().wit_cache_entries == 2);
    CHECK(stats().wit_cache_misses == 3);
    CHECK(present(third) == std::error_code{});
    CHECK(present(second) == std::error_code{});
    CHECK(stats().wit_cache_hits == 4);
    CHECK(present(first) == std::error_code{});  // evicted: validated again
    CHECK(stats().wit_cache_misses == 4);

    json forged_claims = td.claims(public_jwk(key, "ES256"), "spiffe://example.org/forged");
    const auto stranger = PrivateKey::generate();
    const auto forged =
        WitSvid::parse_insecure(td.sign(forged_claims, {{"typ", "wit+jwt"}}, &stranger)).with_private_key(key);
    CHECK(present(forged) == awaken::jose_errc::invalid_signature);
    CHECK(present(forged) == awaken::jose_errc::invalid_signature);
    CHECK(stats().wit_cache_misses == 6);
    CHECK(stats().wit_cache_entries == 2);
  }
  SECTION("capacity 0 remembers nothing") {
    vo.wit_cache_capacity = 0;
    WptVerifier uncached{source, vo};
    const std::string wit{first.token().reveal()};
    const std::string_view wits[] = {wit};
    for (int i = 0; i < 2; ++i) {
      const std::string wpt{make_workload_proof(first, {"https://svc.test/p"}, po).workload_proof_token.reveal()};
      const std::string_view wpts[] = {wpt};
      CHECK(uncached.verify({wits, wpts, "/p"}).caller() == first.spiffe_id());
    }
    CHECK(uncached.stats().wit_cache_entries == 0);
    CHECK(uncached.stats().wit_cache_misses == 2);
    CHECK(uncached.stats().wit_cache_hits == 0);
  }
}

TEST_CASE("WPT: one verifier, many threads: every proof accepted once, the WIT-SVID validated at most a few times",
          "[wit]") {
  Issuer td;
  const auto key = PrivateKey::generate();
  const auto svid = WitSvid::parse_insecure(td.sign(td.claims(public_jwk(key, "ES256")))).with_private_key(key);
  WptVerifierOptions vo;
  vo.origins = {"https://svc.test"};
  vo.wit = td.options();
  const WptVerifier verifier{td.bundles, vo};
  WptOptions po;
  po.clock = &td.clock;
  const std::string wit{svid.token().reveal()};

  constexpr int threads = 4;
  constexpr int each = 25;
  std::atomic<int> accepted{0};
  std::atomic<int> replays_refused{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < each; ++i) {
        const std::string wpt{make_workload_proof(svid, {"https://svc.test/p"}, po).workload_proof_token.reveal()};
        const std::string_view wits[] = {wit};
        const std::string_view wpts[] = {wpt};
        if (code_of([&] { verifier.verify({wits, wpts, "/p"}); }) == std::error_code{}) accepted.fetch_add(1);
        if (code_of([&] { verifier.verify({wits, wpts, "/p"}); }) == spiffe_errc::replayed_proof)
          replays_refused.fetch_add(1);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(accepted.load() == threads * each);
  CHECK(replays_refused.load() == threads * each);
  const auto stats = verifier.stats();
  CHECK(stats.replay_entries == threads * each);
  CHECK(stats.wit_cache_entries == 1);
  CHECK(stats.wit_cache_hits + stats.wit_cache_misses == 2 * threads * each);
  CHECK(stats.wit_cache_misses >= 1);
  CHECK(stats.wit_cache_misses <= threads);
}
