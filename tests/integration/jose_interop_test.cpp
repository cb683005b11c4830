// JWS against the npm `jose` package: each side verifies the other's tokens for all nine
// algorithms, and both refuse the same tampered variants.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>

#include "support/errors.hpp"
#include "support/jws_surgery.hpp"
#include "support/peer.hpp"

using awaken::RedactedString;
using namespace awaken::test;
using namespace awaken::jose;
using nlohmann::json;

namespace {

json last_json_line(const std::string& output) {
  std::istringstream in{output};
  std::string line;
  std::string last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return json::parse(last);
}

std::string read_text(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  REQUIRE(in);
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

}  // namespace

TEST_CASE("JWS cross-check with npm jose: both verify each other, both refuse tampering", "[jose]") {
  awaken::test::TempDir dir;
  const std::string generated = dir.path() + "/generated.json";
  std::string out;
  REQUIRE(awaken::test::run_command({"node", awaken::test::peers_dir() + "/jose_vectors.mjs", "generate", generated},
                                    &out, std::chrono::seconds{90}) == 0);
  REQUIRE(last_json_line(out).at("ok") == true);
  const json vectors = json::parse(read_text(generated));
  REQUIRE(vectors.size() == 9);

  json to_check = json::array();
  std::vector<std::string> seen;
  int ours_refused = 0;
  for (const json& v : vectors) {
    const std::string alg_name = v.at("alg").get<std::string>();
    INFO(alg_name);
    seen.push_back(alg_name);
    const auto alg = parse_algorithm(alg_name);
    REQUIRE(alg.has_value());
    const PublicKey pub = PublicKey::from_jwk(v.at("jwk"));
    CHECK(pub.supports(*alg));

    // Theirs, verified by us.
    const std::string theirs = v.at("token").get<std::string>();
    const CompactJws parsed = CompactJws::parse(theirs);
    CHECK(parsed.algorithm() == *alg);
    CHECK(parsed.header().at("kid") == "peer-" + alg_name);
    CHECK(json::parse(parsed.payload()).at("sub") == alg_name);
    CHECK_NOTHROW(parsed.verify(pub));

    // Ours, signed with their private key, for them to verify.
    const PrivateKey priv = PrivateKey::from_pem(RedactedString{v.at("pkcs8").get<std::string>()});
    CHECK(priv.supports(*alg));
    std::vector<std::string> ours;
    const int count = priv.type() == KeyType::ec ? 24 : 3;
    for (int i = 0; i < count; ++i) {
      const std::string payload =
          i == 1 ? std::string{"\x00\xff binary \x80", 11} : "{\"i\":" + std::to_string(i) + "}";
      ours.push_back(sign_compact(*alg, {{"kid", "awaken"}, {"typ", "JWT"}}, payload, priv));
      CHECK_NOTHROW(CompactJws::parse(ours.back()).verify(pub));
    }

    to_check.push_back(
        {{"alg", alg_name}, {"jwk", v.at("jwk")}, {"token", theirs}, {"expect", true}, {"what", "theirs"}});
    for (const auto& token : ours) {
      to_check.push_back(
          {{"alg", alg_name}, {"jwk", v.at("jwk")}, {"token", token}, {"expect", true}, {"what", "ours"}});
    }
    const std::string* const bases[] = {&theirs, &ours.front()};
    for (const std::string* base : bases) {
      for (const auto& t : tampered_variants(*base)) {
        INFO((base == &theirs ? "theirs " : "ours ") << t.what);
        const std::error_code ec = code_of([&] { CompactJws::parse(t.token).verify(pub); });
        CHECK(ec.category() == awaken::jose_category());
        if (ec) ++ours_refused;
        to_check.push_back({{"alg", alg_name},
                            {"jwk", v.at("jwk")},
                            {"token", t.token},
                            {"expect", false},
                            {"what", (base == &theirs ? "theirs " : "ours ") + t.what}});
      }
    }
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen ==
        std::vector<std::string>{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"});
  CHECK(ours_refused == 9 * 2 * 9);

  const std::string check_path = dir.path() + "/check.json";
  std::ofstream{check_path} << to_check.dump();
  REQUIRE(awaken::test::run_command({"node", awaken::test::peers_dir() + "/jose_vectors.mjs", "verify", check_path},
                                    &out, std::chrono::seconds{90}) == 0);
  const json report = last_json_line(out);
  REQUIRE(report.at("ok") == true);
  const json& results = report.at("results");
  REQUIRE(results.size() == to_check.size());
  int accepted = 0;
  int refused = 0;
  for (const json& r : results) {
    const json& item = to_check.at(r.at("index").get<std::size_t>());
    INFO(item.at("alg").get<std::string>() << " " << item.at("what").get<std::string>() << " " << r.dump());
    CHECK(r.at("ok") == item.at("expect"));
    (r.at("ok") == true ? accepted : refused) += 1;
  }
  CHECK(refused == 9 * 2 * 9);
  CHECK(accepted == static_cast<int>(to_check.size()) - refused);
}
