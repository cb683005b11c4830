// SPIFFE identity: the SPIFFE-ID checklist as tables, JWT bundles, and JWT-SVID validation
// cross-checked with tokens and bundles made by npm jose (tests/peers/svid_vectors.mjs).
#include <unordered_set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/spiffe/bundle.hpp>
#include <awaken/spiffe/jwt_svid.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

#include "support/errors.hpp"
#include "support/json_edit.hpp"
#include "support/names.hpp"
#include "support/peer.hpp"

using namespace awaken::spiffe;

namespace {

std::error_code id_code(std::string_view text) {
  return code_of([&] { SpiffeId::parse(text); });
}

}  // namespace

TEST_CASE("SPIFFE IDs are parsed and canonicalised by the SPIFFE-ID rules", "[spiffe][id]") {
  struct Valid {
    std::string in, canonical, td, path;
  };
  const std::vector<Valid> valid = {
      {"spiffe://example.org", "spiffe://example.org", "example.org", ""},
      {"spiffe://example.org/workload", "spiffe://example.org/workload", "example.org", "/workload"},
      {"SPIFFE://Example.ORG/Path/Case", "spiffe://example.org/Path/Case", "example.org", "/Path/Case"},
      {"Spiffe://td/ns/prod/sa/api-v1", "spiffe://td/ns/prod/sa/api-v1", "td", "/ns/prod/sa/api-v1"},
      {"spiffe://1.2.3.4/a", "spiffe://1.2.3.4/a", "1.2.3.4", "/a"},
      {"spiffe://under_score-td.x/a-b.c_d/E", "spiffe://under_score-td.x/a-b.c_d/E", "under_score-td.x", "/a-b.c_d/E"},
      {"spiffe://td/.../.a/a.", "spiffe://td/.../.a/a.", "td", "/.../.a/a."},
  };
  for (const auto& v : valid) {
    INFO(v.in);
    const auto id = SpiffeId::parse(v.in);
    CHECK(id.str() == v.canonical);
    CHECK(id.trust_domain().name() == v.td);
    CHECK(id.path() == v.path);
    std::error_code ec{spiffe_errc::empty};
    CHECK(SpiffeId::parse(v.in, ec) == id);
    CHECK_FALSE(ec);
  }

  const std::vector<std::pair<std::string, spiffe_errc>> invalid = {
      {"", spiffe_errc::empty},
      {"http://example.org/a", spiffe_errc::wrong_scheme},
      {"spiffe:/example.org", spiffe_errc::wrong_scheme},
      {"spiffe:example.org", spiffe_errc::wrong_scheme},
      {"spiffe//example.org", spiffe_errc::wrong_scheme},
      {"spiff://example.org", spiffe_errc::wrong_scheme},
      {"spiffe", spiffe_errc::wrong_scheme},
      {"spiffe://", spiffe_errc::missing_trust_domain},
      {"spiffe:///path", spiffe_errc::missing_trust_domain},
      {"spiffe://example.org:8080/a", spiffe_errc::bad_trust_domain_char},
      {"spiffe://user@example.org/a", spiffe_errc::bad_trust_domain_char},
      {"spiffe://exa%41mple.org", spiffe_errc::bad_trust_domain_char},
      {"spiffe://[::1]/a", spiffe_errc::bad_trust_domain_char},
      {"spiffe://example.org?x=1", spiffe_errc::bad_trust_domain_char},
      {"spiffe://example.org#f", spiffe_errc::bad_trust_domain_char},
      {"spiffe://exa mple.org", spiffe_errc::bad_trust_domain_char},
      {"spiffe://ex\xc3\xa9.org", spiffe_errc::bad_trust_domain_char},
      {"spiffe://example.org/a?x=1", spiffe_errc::bad_path_char},
      {"spiffe://example.org/a#frag", spiffe_errc::bad_path_char},
      {"spiffe://example.org/a%20b", spiffe_errc::bad_path_char},
      {"spiffe://example.org/a/b c", spiffe_errc::bad_path_char},
      {"spiffe://example.org/caf\xc3\xa9", spiffe_errc::bad_path_char},
      {"spiffe://example.org/a:b", spiffe_errc::bad_path_char},
      {"spiffe://example.org/", spiffe_errc::trailing_slash},
      {"spiffe://example.org/a/", spiffe_errc::trailing_slash},
      {"spiffe://example.org//", spiffe_errc::empty_segment},
      {"spiffe://example.org/a//b", spiffe_errc::empty_segment},
      {"spiffe://example.org/.", spiffe_errc::dot_segment},
      {"spiffe://example.org/..", spiffe_errc::dot_segment},
      {"spiffe://example.org/a/../b", spiffe_errc::dot_segment},
      {"spiffe://example.org/a/./b", spiffe_errc::dot_segment},
      {std::string("spiffe://td/a\0b", 15), spiffe_errc::bad_path_char},
  };
  for (const auto& [in, code] : invalid) {
    INFO(in);
    CHECK(id_code(in) == code);
    std::error_code ec;
    CHECK_FALSE(SpiffeId::parse(in, ec).has_value());
    CHECK(ec == code);
  }
}

TEST_CASE("SPIFFE ID and trust domain lengths are bounded at their endpoints", "[spiffe][id]") {
  const std::string td255(255, 'a');
  CHECK(SpiffeId::parse("spiffe://" + td255).trust_domain().name().size() == 255);
  CHECK(id_code("spiffe://" + td255 + "a") == spiffe_errc::trust_domain_too_long);
  CHECK(code_of([&] { TrustDomain::parse(td255 + "a"); }) == spiffe_errc::trust_domain_too_long);
  CHECK(TrustDomain::parse(td255).name() == td255);

  const std::string prefix = "spiffe://example.org/";
  const std::string at_limit = prefix + std::string(2048 - prefix.size(), 'p');
  CHECK(SpiffeId::parse(at_limit).str().size() == 2048);
  CHECK(id_code(at_limit + "p") == spiffe_errc::id_too_long);

  const auto td = TrustDomain::parse("example.org");
  const std::string seg(2048 - prefix.size(), 's');
  CHECK(SpiffeId::from_segments(td, {seg}).str().size() == 2048);
  CHECK(code_of([&] { SpiffeId::from_segments(td, {seg, "x"}); }) == spiffe_errc::id_too_long);
}

TEST_CASE("Errors name the offending part of a SPIFFE ID", "[spiffe][id]") {
  CHECK_THROWS_WITH(SpiffeId::parse("spiffe://example.org/a%20b"),
                    Contains("'spiffe://example.org/a%20b': '%' at byte 22") && Contains("path has a character"));
  CHECK_THROWS_WITH(SpiffeId::parse("spiffe://example.org:443/a"),
                    Contains("':' at byte 20") && Contains("trust domain has a character"));
  CHECK_THROWS_WITH(SpiffeId::parse("spiffe://example.org/a//b"),
                    Contains("at byte 23") && Contains("path has an empty segment"));
  CHECK_THROWS_WITH(SpiffeId::parse("https://example.org"), Contains("scheme is not spiffe://"));
}

TEST_CASE("Trust domains parse from names and from SPIFFE IDs", "[spiffe][id]") {
  CHECK(TrustDomain::parse("example.org").name() == "example.org");
  CHECK(TrustDomain::parse("Example.ORG").name() == "example.org");
  CHECK(TrustDomain::parse("spiffe://Example.org/some/workload").name() == "example.org");
  CHECK(TrustDomain::parse("example.org").id_string() == "spiffe://example.org");
  const std::vector<std::pair<std::string, spiffe_errc>> invalid = {
      {"", spiffe_errc::missing_trust_domain},
      {"http://example.org", spiffe_errc::wrong_scheme},
      {"example.org:/x", spiffe_errc::wrong_scheme},
      {"spiffe://example.org/bad//path", spiffe_errc::empty_segment},
      {"example.org:8080", spiffe_errc::bad_trust_domain_char},
      {"example.org/path", spiffe_errc::bad_trust_domain_char},
      {"user@example.org", spiffe_errc::bad_trust_domain_char},
  };
  for (const auto& [in, code] : invalid) {
    INFO(in);
    CHECK(code_of([&in = in] { TrustDomain::parse(in); }) == code);
    std::error_code ec;
    CHECK_FALSE(TrustDomain::parse(in, ec).has_value());
    CHECK(ec == code);
  }
}

TEST_CASE("SPIFFE IDs compare, order, hash, print and build from segments", "[spiffe][id]") {
  const auto a = SpiffeId::parse("SPIFFE://A.org/x");
  CHECK(a == SpiffeId::parse("spiffe://a.org/x"));
  CHECK(a != SpiffeId::parse("spiffe://a.org/X"));
  CHECK(std::hash<SpiffeId>{}(a) == std::hash<SpiffeId>{}(SpiffeId::parse("spiffe://a.org/x")));
  // By trust domain first, then path: "a" sorts before "a.b" although '/' > '.'.
  CHECK(SpiffeId::parse("spiffe://a/z") < SpiffeId::parse("spiffe://a.b/a"));
  CHECK(SpiffeId::parse("spiffe://a.b") < SpiffeId::parse("spiffe://a.b/a"));
  std::unordered_set<SpiffeId> set{a, SpiffeId::parse("spiffe://a.org/x"), SpiffeId::parse("spiffe://a.org/y")};
  CHECK(set.size() == 2);
  std::ostringstream os;
  os << a << ' ' << a.trust_domain();
  CHECK(os.str() == "spiffe://a.org/x a.org");
  CHECK(a.member_of(TrustDomain::parse("a.org")));
  CHECK_FALSE(a.member_of(TrustDomain::parse("b.org")));

  const auto td = TrustDomain::parse("example.org");
  CHECK(SpiffeId::from_segments(td, {"ns", "prod", "sa", "api"}).str() == "spiffe://example.org/ns/prod/sa/api");
  CHECK(SpiffeId::from_segments(td, {}).str() == "spiffe://example.org");
  CHECK(code_of([&] { SpiffeId::from_segments(td, {"a/b"}); }) == spiffe_errc::bad_path_char);
  CHECK(code_of([&] { SpiffeId::from_segments(td, {""}); }) == spiffe_errc::empty_segment);
  CHECK(code_of([&] { SpiffeId::from_segments(td, {".."}); }) == spiffe_errc::dot_segment);
  CHECK(code_of([&] { SpiffeId::from_segments(td, {"a%2F"}); }) == spiffe_errc::bad_path_char);
  CHECK(code_of([&] { SpiffeId::from_segments(TrustDomain{}, {"a"}); }) == spiffe_errc::missing_trust_domain);
  CHECK(SpiffeId{}.empty());
  CHECK(SpiffeId{}.path().empty());
}

namespace {

struct Vectors {
  awaken::test::PeerProcess process{"svid_vectors.mjs", {}};
  const nlohmann::json& info() const { return process.info(); }
  std::string token(const char* group, const std::string& name) const { return info()[group][name]; }
  JwtBundle bundle(const char* field = "jwks", const char* td = "example.org") const {
    return JwtBundle::parse(TrustDomain::parse(td), info()[field].get<std::string>());
  }
  JwtBundleSet set() const { return JwtBundleSet{std::vector<JwtBundle>{bundle(), bundle("other_jwks", "other.org")}}; }
};

const Vectors& vectors() {
  static const Vectors v;  // one peer run for every case of this file
  return v;
}

std::error_code bundle_code(std::string_view jwks, std::size_t max = JwtBundle::default_max_bytes) {
  return code_of([&] { JwtBundle::parse(TrustDomain::parse("example.org"), jwks, max); });
}

}  // namespace

TEST_CASE("JWT bundles from jose's JWKS keep the jwt-svid keys and the SPIFFE parameters", "[spiffe][bundle]") {
  const auto bundle = vectors().bundle();
  CHECK(bundle.trust_domain().name() == "example.org");
  CHECK(bundle.authorities().size() == 9);  // the x509-svid key and the OKP key are ignored
  for (const char* alg : {"rs256", "rs384", "rs512", "ps256", "ps384", "ps512", "es256", "es384", "es512"}) {
    INFO(alg);
    const auto* a = bundle.find_authority(std::string{alg} + "-kid");
    REQUIRE(a != nullptr);
    CHECK(a->key_id() == std::string{alg} + "-kid");
  }
  CHECK(bundle.find_authority("x509-authority") == nullptr);
  CHECK(bundle.find_authority("okp-authority") == nullptr);
  CHECK(bundle.find_authority("") == nullptr);
  CHECK(bundle.sequence() == 7u);
  CHECK(bundle.refresh_hint() == std::chrono::seconds{300});

  const auto again = JwtBundle::parse(bundle.trust_domain(), bundle.to_jwks());
  CHECK(again == bundle);
  CHECK_FALSE(again == JwtBundle{bundle.trust_domain()});
  CHECK(JwtBundle::parse(bundle.trust_domain(), R"({"keys":[]})").empty());
}

TEST_CASE("Malformed JWT bundles are rejected with the matching error", "[spiffe][bundle]") {
  const auto jwks = nlohmann::json::parse(vectors().info()["jwks"].get<std::string>());
  const auto es_key = jwks["keys"][6];
  REQUIRE(es_key["kid"] == "es256-kid");
  auto with_key = [&](nlohmann::json key) { return nlohmann::json{{"keys", {std::move(key)}}}.dump(); };
  auto changed = [&](const char* member, nlohmann::json value) {
    return with_key(awaken::test::with_member(es_key, member, std::move(value)));
  };
  CHECK(bundle_code("not json") == spiffe_errc::invalid_bundle);
  CHECK(bundle_code("[]") == spiffe_errc::invalid_bundle);
  CHECK(bundle_code("{}") == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(R"({"keys":{}})") == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(R"({"keys":[1]})") == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(changed("kty", nullptr)) == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(changed("use", 5)) == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(changed("kid", nullptr)) == spiffe_errc::missing_key_id);
  CHECK(bundle_code(changed("kid", "")) == spiffe_errc::missing_key_id);
  CHECK(bundle_code(nlohmann::json{{"keys", {es_key, es_key}}}.dump()) == spiffe_errc::duplicate_key_id);
  CHECK(bundle_code(vectors().info()["weak_jwks"].get<std::string>()) == spiffe_errc::invalid_authority);
  CHECK(bundle_code(changed("d", "AAAA")) == spiffe_errc::invalid_authority);       // a private key
  CHECK(bundle_code(changed("y", es_key["x"])) == spiffe_errc::invalid_authority);  // off the curve
  CHECK(bundle_code(changed("crv", "P-384")) == spiffe_errc::invalid_authority);    // wrong size for the curve
  CHECK(bundle_code(R"({"keys":[],"spiffe_sequence":-1})") == spiffe_errc::invalid_bundle);
  // Nesting is bounded: a million levels would overflow the stack of whoever prints the JWK.
  auto deep = es_key;
  deep["x5c"] = nlohmann::json::parse(std::string(40, '[') + std::string(40, ']'));
  CHECK(bundle_code(with_key(deep)) == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(R"({"keys":[],"pad":)" + std::string(1 << 20, '[') + std::string(1 << 20, ']') + "}") ==
        spiffe_errc::invalid_bundle);
  CHECK(bundle_code(R"({"keys":[],"spiffe_sequence":"7"})") == spiffe_errc::invalid_bundle);
  CHECK(bundle_code(R"({"keys":[],"spiffe_refresh_hint":1.5})") == spiffe_errc::invalid_bundle);
  const std::string big = vectors().info()["jwks"];
  CHECK(bundle_code(big, big.size() - 1) == spiffe_errc::bundle_too_large);
  // Ignored, not rejected: another use, an unknown kty.
  CHECK(JwtBundle::parse(TrustDomain::parse("x.org"), changed("use", "x509-svid")).empty());
  CHECK(JwtBundle::parse(TrustDomain::parse("x.org"), changed("kty", "OKP")).empty());
  CHECK(JwtBundle::parse(TrustDomain::parse("x.org"), changed("use", nullptr)).authorities().size() == 1);
  CHECK_THROWS_WITH(JwtBundle::parse(TrustDomain::parse("x.org"), vectors().info()["weak_jwks"].get<std::string>()),
                    Contains("JWT bundle of x.org: keys[0] 'weak-kid'") && Contains("2048"));
}

TEST_CASE("Bundle sets look bundles up by trust domain and refuse duplicates", "[spiffe][bundle]") {
  const auto set = vectors().set();
  CHECK(set.size() == 2);
  CHECK(set.authority_count() == 10);
  REQUIRE(set.find("other.org") != nullptr);
  CHECK(set.find("other.org")->find_authority("other-kid") != nullptr);
  CHECK(set.find("unknown.org") == nullptr);
  CHECK(set.find("") == nullptr);
  CHECK(set.bundle_for_trust_domain(TrustDomain::parse("example.org"))->authorities().size() == 9);
  CHECK(set.bundle_for_trust_domain(TrustDomain::parse("zzz.org")) == nullptr);
  CHECK(set == vectors().set());
  CHECK_FALSE(set == JwtBundleSet{});
  CHECK(code_of([] {
          JwtBundleSet{std::vector<JwtBundle>{vectors().bundle(), vectors().bundle()}};
        }) == spiffe_errc::invalid_bundle);
}

TEST_CASE("JWT-SVIDs signed by jose with every algorithm validate", "[spiffe][svid]") {
  const auto set = vectors().set();
  for (const auto& [alg, token] : vectors().info()["valid"].items()) {
    INFO(alg);
    const std::string t = token;
    const auto svid = JwtSvid::parse_and_validate(t, set, {"svc-a"});
    CHECK(svid.spiffe_id().str() == "spiffe://example.org/workload");
    CHECK(svid.audience() == std::vector<std::string>{"svc-a"});
    CHECK(svid.key_id() == [&alg = alg] {
      std::string kid = alg + "-kid";
      for (char& c : kid) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return kid;
    }());
    CHECK(awaken::jose::to_string(svid.algorithm()) == alg);
    const auto now = vectors().info()["now"].get<long long>();
    CHECK(svid.expiry() == std::chrono::system_clock::time_point{std::chrono::seconds{now + 300}});
    CHECK(svid.claims()["iat"] == now);
    CHECK(svid.token().reveal() == t);
    const std::string printed = awaken::spiffe::to_string(svid);
    CHECK(printed.find(t.substr(t.rfind('.') + 1)) == std::string::npos);
    CHECK_THAT(printed, Contains("spiffe_id=spiffe://example.org/workload") && Contains("token=[redacted]"));
    // The span form, and several expected audiences.
    const std::vector<std::string> expected{"other", "svc-a"};
    CHECK(JwtSvid::parse_and_validate(t, set, expected).spiffe_id() == svid.spiffe_id());
  }
}

TEST_CASE("A jose token that breaks exactly one rule fails with that rule's error", "[spiffe][svid]") {
  const auto set = vectors().set();
  const std::map<std::string, std::error_code> expected = {
      {"alg_none", awaken::jose_errc::unsupported_algorithm},
      {"alg_hs256_with_public_key", awaken::jose_errc::unsupported_algorithm},
      {"typ_wrong", spiffe_errc::invalid_typ},
      {"kid_missing", spiffe_errc::missing_key_id},
      {"kid_unknown", spiffe_errc::authority_not_found},
      {"sub_missing", spiffe_errc::invalid_subject},
      {"sub_not_spiffe", spiffe_errc::invalid_subject},
      {"sub_unknown_trust_domain", spiffe_errc::bundle_not_found},
      {"key_of_another_trust_domain", spiffe_errc::authority_not_found},
      {"signed_by_stranger", awaken::jose_errc::invalid_signature},
      {"alg_does_not_fit_key", spiffe_errc::algorithm_mismatch},
      {"exp_missing", spiffe_errc::missing_expiration},
      {"exp_past", spiffe_errc::expired},
      {"nbf_future", spiffe_errc::not_yet_valid},
      {"iat_future", spiffe_errc::issued_in_future},
      {"aud_missing", spiffe_errc::missing_audience},
      {"aud_empty_array", spiffe_errc::missing_audience},
      {"aud_empty_string", spiffe_errc::missing_audience},
      {"aud_wrong", spiffe_errc::audience_mismatch},
      {"aud_too_many", spiffe_errc::too_many_audiences},
      {"signed_by_weak_key", spiffe_errc::authority_not_found},  // no bundle can hold its key
  };
  const auto& broken = vectors().info()["broken"];
  REQUIRE(broken.size() == expected.size() + 1);  // and sub_other_trust_domain, valid below
  for (const auto& [rule, code] : expected) {
    INFO(rule);
    const std::string token = broken[rule];
    std::error_code got;
    std::string what;
    try {
      JwtSvid::parse_and_validate(token, set, {"svc-a"});
    } catch (const awaken::Error& e) {
      got = e.code();
      what = e.what();
    }
    CHECK(got == code);
    INFO(what);
    const std::string signature = token.substr(token.rfind('.') + 1, 16);
    if (!signature.empty()) CHECK(what.find(signature) == std::string::npos);  // never the token
    CHECK(what.find(token.substr(0, 24)) == std::string::npos);
  }
  // The other trust domain's token is fine against its own bundle.
  CHECK(JwtSvid::parse_and_validate(broken["sub_other_trust_domain"].get<std::string>(), set, {"svc-a"})
            .spiffe_id()
            .member_of(TrustDomain::parse("other.org")));
  // A weak key in a bundle rejects the bundle, so no set can hold it.
  CHECK(bundle_code(vectors().info()["weak_jwks"].get<std::string>()) == spiffe_errc::invalid_authority);
}

TEST_CASE("JWT-SVID edge cases: leeway, typ, audience forms, the clock and an empty expected list", "[spiffe][svid]") {
  const auto set = vectors().set();
  // Checked at the moment the vectors were made, not on the wall clock: the margins are 30 s.
  const awaken::ManualClock minted{
      std::chrono::system_clock::time_point{std::chrono::seconds{vectors().info()["now"].get<long long>()}}};
  JwtSvidOptions base;
  base.clock = &minted;
  auto code = [&](const std::string& token, std::initializer_list<std::string_view> aud, JwtSvidOptions o) {
    return code_of([&] { JwtSvid::parse_and_validate(token, set, aud, o); });
  };
  const auto& edge = vectors().info()["edge"];
  for (const auto& [name, token] : edge.items()) {
    INFO(name);
    CHECK_FALSE(code(token, {"svc-a"}, base));
  }
  CHECK(JwtSvid::parse_and_validate(edge["aud_several"].get<std::string>(), set, {"svc-a"}).audience() ==
        std::vector<std::string>{"svc-b", "svc-a"});

  JwtSvidOptions strict = base;
  strict.leeway = std::chrono::seconds{0};
  CHECK(code(edge["exp_within_leeway"], {"svc-a"}, strict) == spiffe_errc::expired);
  CHECK(code(edge["nbf_within_leeway"], {"svc-a"}, strict) == spiffe_errc::not_yet_valid);
  JwtSvidOptions lenient = base;
  lenient.leeway = std::chrono::seconds{180};
  CHECK_FALSE(code(vectors().info()["broken"]["exp_past"], {"svc-a"}, lenient));

  const std::string valid = vectors().info()["valid"]["ES256"];
  awaken::ManualClock later{minted.system_now() + std::chrono::seconds{1000}};
  JwtSvidOptions with_clock;
  with_clock.clock = &later;
  CHECK(code(valid, {"svc-a"}, with_clock) == spiffe_errc::expired);
  CHECK(code(valid, {}, base) == spiffe_errc::no_expected_audience);
  CHECK(code_of([&] { JwtSvid::parse_and_validate(valid, set, std::vector<std::string>{}); }) ==
        spiffe_errc::no_expected_audience);
  CHECK(code(valid, {"svc-A"}, base) == spiffe_errc::audience_mismatch);  // case-sensitive
  JwtSvidOptions few = base;
  few.max_audiences = 1;
  CHECK(code(edge["aud_several"], {"svc-a"}, few) == spiffe_errc::too_many_audiences);
}

TEST_CASE("Adversarial token shapes are refused before any key is touched", "[spiffe][svid]") {
  const auto set = vectors().set();
  const std::string valid = vectors().info()["valid"]["ES256"];
  const auto dot1 = valid.find('.');
  const auto dot2 = valid.rfind('.');
  const std::string header = valid.substr(0, dot1);
  const std::string payload = valid.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string signature = valid.substr(dot2 + 1);
  auto code = [&](const std::string& token) {
    return code_of([&] { JwtSvid::parse_and_validate(token, set, {"svc-a"}); });
  };
  CHECK_FALSE(code(valid));
  CHECK(code(header + "." + payload) == spiffe_errc::malformed_token);
  CHECK(code(valid + ".x") == spiffe_errc::malformed_token);
  CHECK(code(header + ".." + payload + "." + signature) == spiffe_errc::malformed_token);
  CHECK(code(header + "." + payload + ".") == spiffe_errc::malformed_token);
  CHECK(code("." + payload + "." + signature) == spiffe_errc::malformed_token);
  CHECK(code("") == spiffe_errc::malformed_token);
  CHECK(code(header + "=." + payload + "." + signature) == spiffe_errc::invalid_base64);
  CHECK(code(header + "." + payload + "." + signature + "==") == spiffe_errc::invalid_base64);
  CHECK(code(header + "." + payload.substr(0, 5) + "*" + payload.substr(6) + "." + signature) ==
        spiffe_errc::invalid_base64);
  CHECK(code(header + "." + payload + "." + signature.substr(0, 10) + "+/" + signature.substr(12)) ==
        spiffe_errc::invalid_base64);
  CHECK(code(awaken::jose::base64url_encode("[1]") + "." + payload + "." + signature) == spiffe_errc::invalid_header);
  CHECK(code(awaken::jose::base64url_encode(R"({"alg":"ES256","kid":7})") + "." + payload + "." + signature) ==
        spiffe_errc::invalid_header);
  CHECK(code(header + "." + awaken::jose::base64url_encode("not json") + "." + signature) ==
        spiffe_errc::invalid_claims);
  CHECK(code(header + ".." + signature) == spiffe_errc::malformed_token);  // an empty payload
  // A byte-order mark before the claims or the header: refused, though nlohmann would skip it.
  CHECK(code(header + "." + awaken::jose::base64url_encode("\xEF\xBB\xBF" + awaken::jose::base64url_decode(payload)) +
             "." + signature) == spiffe_errc::invalid_claims);
  CHECK(code(awaken::jose::base64url_encode("\xEF\xBB\xBF" + awaken::jose::base64url_decode(header)) + "." + payload +
             "." + signature) == spiffe_errc::invalid_header);
  CHECK(code(awaken::jose::base64url_encode(R"({"alg":"ES256","kid":"es256-kid","crit":["exp"]})") + "." + payload +
             "." + signature) == spiffe_errc::invalid_header);
  const std::string nested = std::string(20000, '[') + std::string(20000, ']');
  CHECK(code(header + "." + awaken::jose::base64url_encode(R"({"sub":"spiffe://example.org/w","x":)" + nested + "}") +
             "." + signature) == spiffe_errc::invalid_claims);
  CHECK(code(awaken::jose::base64url_encode(R"({"alg":"ES256","kid":"es256-kid","typ":)" + nested + "}") + "." +
             payload + "." + signature) == spiffe_errc::invalid_header);
  // Found by the fuzzer: an exp past what system_clock holds (2262) must be refused, not overflow.
  CHECK(code_of([] {
          JwtSvid::parse_insecure(
              "eyJhbGciOiJFUzI1NiIsImtpZCI6ImZ1enotMSJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93b3JrbG9hZCIsImF1ZCI6"
              "InN2Yy1hIiwiZXhwIjoxMTc5NTAwMDAwMH0.EZCI6InNE_C8JwYSJ7hUmtg");
        }) == spiffe_errc::invalid_claims);
  CHECK(code(header + "." +
             awaken::jose::base64url_encode(R"({"sub":"spiffe://example.org/w","aud":"svc-a","exp":"soon"})") + "." +
             signature) == awaken::jose_errc::invalid_signature);  // the signature is checked before exp

  // ECDSA signatures of the wrong length: one byte more, one byte less, DER-sized.
  std::string raw = awaken::jose::base64url_decode(signature);
  REQUIRE(raw.size() == 64);
  CHECK(code(header + "." + payload + "." + awaken::jose::base64url_encode(raw + '\0')) ==
        awaken::jose_errc::invalid_signature);
  CHECK(code(header + "." + payload + "." + awaken::jose::base64url_encode(raw.substr(1))) ==
        awaken::jose_errc::invalid_signature);
  CHECK(code(header + "." + payload + "." + awaken::jose::base64url_encode(std::string(72, '\x30'))) ==
        awaken::jose_errc::invalid_signature);

  // Huge tokens: over the bound, whatever they hold.
  JwtSvidOptions o;
  CHECK(code(valid + std::string(o.max_token_bytes, 'A')) == spiffe_errc::token_too_large);
  o.max_token_bytes = valid.size() - 1;
  CHECK(code_of([&] { JwtSvid::parse_and_validate(valid, set, {"svc-a"}, o); }) == spiffe_errc::token_too_large);
}

TEST_CASE("parse_insecure reads Workload API tokens without checking signature or time", "[spiffe][svid]") {
  const auto& broken = vectors().info()["broken"];
  for (const char* name : {"kid_missing", "kid_unknown", "signed_by_stranger", "exp_past", "nbf_future", "iat_future",
                           "aud_wrong", "sub_unknown_trust_domain", "alg_does_not_fit_key"}) {
    INFO(name);
    const auto svid = JwtSvid::parse_insecure(broken[name].get<std::string>());
    CHECK_FALSE(svid.audience().empty());
  }
  CHECK(JwtSvid::parse_insecure(broken["kid_missing"].get<std::string>()).key_id().empty());
  CHECK(JwtSvid::parse_insecure(broken["exp_past"].get<std::string>()).expiry() < std::chrono::system_clock::now());
  const std::map<std::string, std::error_code> still_refused = {
      {"alg_none", awaken::jose_errc::unsupported_algorithm},
      {"alg_hs256_with_public_key", awaken::jose_errc::unsupported_algorithm},
      {"typ_wrong", spiffe_errc::invalid_typ},
      {"sub_not_spiffe", spiffe_errc::invalid_subject},
      {"exp_missing", spiffe_errc::missing_expiration},
      {"aud_missing", spiffe_errc::missing_audience},
      {"aud_empty_array", spiffe_errc::missing_audience},
      {"aud_too_many", spiffe_errc::too_many_audiences},
  };
  for (const auto& [name, c] : still_refused) {
    INFO(name);
    CHECK(code_of([&, &name = name] { JwtSvid::parse_insecure(broken[name].get<std::string>()); }) == c);
  }
  const auto hinted =
      JwtSvid::parse_insecure(vectors().info()["valid"]["RS256"].get<std::string>()).with_hint("internal");
  CHECK(hinted.hint() == "internal");
}
