// X.509-SVIDs and bundles, on certificates made here: every rule of the X509-SVID standard has a
// certificate that breaks it, refused with its own error both when it is our own SVID and when
// it is a peer's; path validation against the leaf's own trust domain only; bundle formats.
#include <catch2/catch.hpp>

#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_svid.hpp>
#include <nlohmann/json.hpp>

#include "spiffe/workload/workload_proto.hpp"
#include "support/certs.hpp"

using awaken::Error;
using awaken::spiffe_errc;
using namespace awaken::spiffe;
using namespace awaken::test;

namespace {

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

template <class F>
std::error_code code_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return {};
}

const TestAuthority& example() {
  static const TestAuthority a{"example.org"};
  return a;
}
const TestAuthority& federated() {
  static const TestAuthority a{"federated.org"};
  return a;
}

X509BundleSet both_bundles() {
  return X509BundleSet{std::vector<X509Bundle>{example().bundle(), federated().bundle()}};
}

// Our own SVID from `leaf` (and the intermediate), and the same chain verified as a peer's.
std::error_code own_error(const Issued& leaf) {
  return code_of([&] { (void)example().svid(leaf); });
}
std::error_code peer_error(const Issued& leaf, const awaken::spiffe::X509VerifyOptions& o = {}) {
  const auto set = both_bundles();
  return code_of([&] { (void)awaken::spiffe::verify_x509_svid(example().chain(leaf), set, o); });
}

}  // namespace

TEST_CASE("a well-formed X.509-SVID parses and verifies, for each key type SPIRE issues", "[x509]") {
  for (KeyKind k : {KeyKind::p256, KeyKind::p384, KeyKind::rsa2048, KeyKind::ed25519}) {
    const Issued leaf = example().leaf(leaf_spec("spiffe://example.org/workload", k));
    const X509Svid svid = example().svid(leaf, "primary");
    CHECK(svid.spiffe_id().str() == "spiffe://example.org/workload");
    CHECK(svid.hint() == "primary");
    REQUIRE(svid.chain().size() == 2);
    CHECK(svid.leaf() == leaf.certificate());
    const auto verified = awaken::spiffe::verify_x509_svid(svid.chain(), both_bundles());
    CHECK(verified.spiffe_id == svid.spiffe_id());
    REQUIRE(verified.chain.size() == 3);  // leaf, intermediate, root
    CHECK(verified.chain.back() == example().root.certificate());
  }
}

TEST_CASE("each X509-SVID rule has its own error, for our own SVID and for a peer's", "[x509]") {
  const std::string id = "spiffe://example.org/workload";
  struct Case {
    const char* name;
    CertSpec spec;
    spiffe_errc expected;
  };
  std::vector<Case> cases;
  {
    CertSpec s = leaf_spec(id);
    s.uris.clear();
    cases.push_back({"no URI SAN", s, spiffe_errc::missing_uri_san});
  }
  {
    CertSpec s = leaf_spec(id);
    s.uris.push_back("spiffe://example.org/other");
    cases.push_back({"two URI SANs", s, spiffe_errc::multiple_uri_sans});
  }
  cases.push_back({"root-path ID", leaf_spec("spiffe://example.org"), spiffe_errc::root_path_id});
  cases.push_back({"URI SAN not a SPIFFE ID", leaf_spec("https://example.org/x"), spiffe_errc::invalid_uri_san});
  {
    CertSpec s = leaf_spec(id);
    s.ca = true;
    cases.push_back({"leaf CA", s, spiffe_errc::leaf_is_ca});
  }
  {
    CertSpec s = leaf_spec(id);
    s.key_usage.reset();
    cases.push_back({"no key usage", s, spiffe_errc::missing_key_usage});
  }
  {
    CertSpec s = leaf_spec(id);
    s.key_usage_critical = false;
    cases.push_back({"key usage not critical", s, spiffe_errc::key_usage_not_critical});
  }
  {
    CertSpec s = leaf_spec(id);
    s.key_usage = "keyAgreement";
    cases.push_back({"no digitalSignature", s, spiffe_errc::missing_digital_signature});
  }
  {
    CertSpec s = leaf_spec(id);
    s.key_usage = "digitalSignature,keyCertSign";
    cases.push_back({"keyCertSign on the leaf", s, spiffe_errc::leaf_has_key_cert_sign});
  }
  {
    CertSpec s = leaf_spec(id);
    s.key_usage = "digitalSignature,cRLSign";
    cases.push_back({"cRLSign on the leaf", s, spiffe_errc::leaf_has_crl_sign});
  }
  cases.push_back({"P-521 key", leaf_spec(id, KeyKind::p521), spiffe_errc::unsupported_key});
  cases.push_back({"RSA 1024 key", leaf_spec(id, KeyKind::rsa1024), spiffe_errc::unsupported_key});
  for (const auto& c : cases) {
    INFO(c.name);
    const Issued leaf = example().leaf(c.spec);
    CHECK(own_error(leaf) == c.expected);
    CHECK(peer_error(leaf) == c.expected);
  }
}

TEST_CASE("signing certificates must be CAs with keyCertSign, key usage critical", "[x509]") {
  const TestAuthority& a = example();
  CertSpec not_ca = awaken::test::ca_spec("not a CA");
  not_ca.ca = false;
  CertSpec no_sign = awaken::test::ca_spec("no keyCertSign");
  no_sign.key_usage = "cRLSign";
  CertSpec lax = awaken::test::ca_spec("key usage not critical");
  lax.key_usage_critical = false;
  for (auto [spec, expected] :
       {std::pair{not_ca, spiffe_errc::signer_not_ca}, std::pair{no_sign, spiffe_errc::signer_missing_key_cert_sign},
        std::pair{lax, spiffe_errc::key_usage_not_critical}}) {
    const Issued middle = issue(spec, &a.root);
    const Issued leaf = issue(leaf_spec("spiffe://example.org/workload"), &middle);
    const std::string chain = leaf.der() + middle.der();
    const std::string key = leaf.key_der();
    CHECK(code_of([&] { (void)X509Svid::from_der(bytes(chain), bytes(key)); }) == expected);
    const std::vector<Certificate> peer{leaf.certificate(), middle.certificate()};
    CHECK(code_of([&] { (void)awaken::spiffe::verify_x509_svid(peer, both_bundles()); }) == expected);
  }
}

TEST_CASE("our own SVID's key must be the leaf's; DER and PEM agree", "[x509]") {
  const Issued leaf = example().leaf(leaf_spec("spiffe://example.org/workload"));
  const Issued other = example().leaf(leaf_spec("spiffe://example.org/workload"));
  const std::string chain = leaf.der() + example().intermediate.der();
  const std::string wrong = other.key_der();
  CHECK(code_of([&] { (void)X509Svid::from_der(bytes(chain), bytes(wrong)); }) == spiffe_errc::key_mismatch);
  CHECK(code_of([&] { (void)X509Svid::from_der(bytes(chain), bytes(std::string{"not a key"})); }) ==
        awaken::jose_errc::invalid_private_key);
  CHECK(code_of([&] { (void)X509Svid::from_der(bytes(std::string{"garbage"}), bytes(wrong)); }) ==
        spiffe_errc::invalid_certificate);
  CHECK(code_of([&] { (void)X509Svid::from_der({}, bytes(wrong)); }) == spiffe_errc::invalid_chain);

  const X509Svid svid = example().svid(leaf, "h");
  const X509Svid again = X509Svid::from_pem(svid.chain_pem(), svid.private_key_pem(), "h");
  CHECK(again == svid);

  // The empty SVID (what a failed operation hands out beside its code) holds nothing and serves
  // nothing.
  const X509Svid none;
  CHECK(none.empty());
  CHECK_FALSE(svid.empty());
  CHECK(none.chain().empty());
  CHECK(none.private_key() == nullptr);
  CHECK(none.chain_pem().empty());
  CHECK(none.expires_at() == std::chrono::system_clock::time_point{});
  CHECK_FALSE(none == svid);
  CHECK(none.with_hint("x").empty());
  CHECK(code_of([&] { (void)none.private_key_pem(); }) == spiffe_errc::no_svid);
  const awaken::spiffe::StaticX509Source empty_source{none, {}};
  CHECK(code_of([&] { (void)empty_source.x509_svid(); }) == spiffe_errc::no_svid);
  CHECK(svid.private_key_pem().reveal().find("-----BEGIN PRIVATE KEY-----") == 0);
  std::ostringstream shown;
  shown << svid;
  CHECK(shown.str().find("spiffe://example.org/workload") != std::string::npos);
  CHECK(shown.str().find("PRIVATE") == std::string::npos);
  CHECK(fmt::format("{}", svid.private_key_pem()) == "[redacted]");
}

TEST_CASE("a peer chain is verified against its own trust domain's authorities only", "[x509]") {
  const Issued leaf = example().leaf(leaf_spec("spiffe://example.org/workload"));
  const auto chain = example().chain(leaf);

  // A federated.org leaf issued by example.org's CA: both bundles loaded, still refused.
  const Issued stray = example().leaf(leaf_spec("spiffe://federated.org/workload"));
  CHECK(code_of([&] { (void)awaken::spiffe::verify_x509_svid(example().chain(stray), both_bundles()); }) ==
        spiffe_errc::untrusted_chain);

  const X509BundleSet only_federated{std::vector<X509Bundle>{federated().bundle()}};
  CHECK(code_of([&] { (void)awaken::spiffe::verify_x509_svid(chain, only_federated); }) ==
        spiffe_errc::bundle_not_found);
  const X509BundleSet empty{std::vector<X509Bundle>{X509Bundle{TrustDomain::parse("example.org")}}};
  CHECK(code_of([&] { (void)awaken::spiffe::verify_x509_svid(chain, empty); }) == spiffe_errc::no_authorities);

  // An intermediate given as the authority anchors the chain.
  const X509BundleSet by_intermediate{
      std::vector<X509Bundle>{X509Bundle{TrustDomain::parse("example.org"), {example().intermediate.certificate()}}}};
  const auto v = awaken::spiffe::verify_x509_svid(chain, by_intermediate);
  CHECK(v.chain.size() == 2);

  // A leaf that is itself an authority is refused.
  const X509BundleSet leaf_trusted{
      std::vector<X509Bundle>{X509Bundle{TrustDomain::parse("example.org"), {leaf.certificate()}}}};
  CHECK(code_of([&] { (void)awaken::spiffe::verify_x509_svid(chain, leaf_trusted); }) ==
        spiffe_errc::leaf_is_authority);
}

TEST_CASE("validity uses the injected clock, with a leeway for notBefore only", "[x509]") {
  CertSpec expired = leaf_spec("spiffe://example.org/workload");
  expired.not_before = std::chrono::seconds{-7200};
  expired.not_after = std::chrono::seconds{-3600};
  CHECK(peer_error(example().leaf(expired)) == spiffe_errc::certificate_expired);

  CertSpec early = leaf_spec("spiffe://example.org/workload");
  early.not_before = std::chrono::seconds{120};
  const Issued future = example().leaf(early);
  CHECK(peer_error(future) == spiffe_errc::certificate_not_yet_valid);
  awaken::spiffe::X509VerifyOptions lenient;
  lenient.not_before_leeway = std::chrono::seconds{60};
  CHECK(peer_error(future, lenient) == spiffe_errc::certificate_not_yet_valid);  // beyond the leeway
  lenient.not_before_leeway = std::chrono::seconds{300};
  CHECK(peer_error(future, lenient) == std::error_code{});

  // A clock two hours on: the leaf (one hour) has expired.
  awaken::ManualClock later{std::chrono::system_clock::now() + std::chrono::hours{2}};
  awaken::spiffe::X509VerifyOptions at_later;
  at_later.clock = &later;
  CHECK(peer_error(example().leaf(leaf_spec("spiffe://example.org/w")), at_later) == spiffe_errc::certificate_expired);
}

TEST_CASE("X.509 bundles from DER, PEM and SPIFFE JWKS", "[x509]") {
  const TrustDomain td = TrustDomain::parse("example.org");
  const std::string der = example().root.der() + example().intermediate.der();
  const X509Bundle from_der = X509Bundle::parse_der(td, bytes(der));
  CHECK(from_der.authorities().size() == 2);
  const X509Bundle from_pem = X509Bundle::parse_pem(td, from_der.to_pem());
  CHECK(from_pem == from_der);
  CHECK(code_of([&] { (void)X509Bundle::parse_der(td, bytes(der + "x")); }) == spiffe_errc::invalid_certificate);
  CHECK(code_of([&] { (void)X509Bundle::parse_der(td, bytes(der), 100); }) == spiffe_errc::bundle_too_large);
  CHECK(code_of([&] { (void)X509Bundle::parse_pem(td, "no pem here"); }) == spiffe_errc::invalid_certificate);

  auto b64 = [](const std::string& d) {
    std::string t = awaken::jose::base64url_encode(d);
    std::replace(t.begin(), t.end(), '-', '+');
    std::replace(t.begin(), t.end(), '_', '/');
    while (t.size() % 4 != 0) t += '=';
    return t;
  };
  const nlohmann::json jwks = {
      {"keys",
       {{{"use", "x509-svid"}, {"kty", "EC"}, {"x5c", {b64(example().root.der())}}},
        {{"use", "x509-svid"}, {"kty", "EC"}, {"x5c", nlohmann::json::array()}},  // skipped
        {{"use", "x509-svid"}, {"kty", "XYZ"}, {"x5c", {"not base64!"}}},         // unknown kty: skipped
        {{"use", "jwt-svid"}, {"kty", "EC"}, {"kid", "k"}, {"crv", "P-256"}},     // another use
        {{"use", "x509-svid"}, {"kty", "EC"}, {"x5c", {b64(example().intermediate.der()), "ignored"}}}}}};
  const X509Bundle from_jwks = X509Bundle::parse_jwks(td, jwks.dump());
  CHECK(from_jwks == from_der);
  CHECK(code_of([&] { (void)X509Bundle::parse_jwks(td, R"({"keys": 1})"); }) == spiffe_errc::invalid_bundle);
  CHECK(X509Bundle::parse_jwks(td, R"({"keys": [{"use": "x509-svid", "kty": "EC"}, {"use": "x509-svid"}]})").empty());
  CHECK(code_of([&] {
          (void)X509Bundle::parse_jwks(td, R"({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": "a"}]})");
        }) == spiffe_errc::invalid_bundle);
}

TEST_CASE("200 authorities sharing one subject still verify the right chain", "[x509]") {
  const TrustDomain td = TrustDomain::parse("example.org");
  std::vector<Certificate> authorities;
  for (int i = 0; i < 199; ++i) authorities.push_back(issue(awaken::test::ca_spec("example.org root")).certificate());
  authorities.push_back(example().root.certificate());
  std::vector<X509Bundle> bundles{X509Bundle{td, authorities}};
  for (int i = 0; i < 10; ++i)
    bundles.push_back(X509Bundle{TrustDomain::parse("fed" + std::to_string(i) + ".example"),
                                 {issue(awaken::test::ca_spec("fed")).certificate()}});
  const X509BundleSet set{std::move(bundles)};
  CHECK(set.authority_count() == 210);
  const Issued leaf = example().leaf(leaf_spec("spiffe://example.org/workload"));
  CHECK(awaken::spiffe::verify_x509_svid(example().chain(leaf), set).spiffe_id.str() ==
        "spiffe://example.org/workload");
}

TEST_CASE("X.509 Workload API messages decode with their bounds", "[x509]") {
  using namespace awaken::spiffe::detail;
  // X509SVIDResponse { svids { spiffe_id, x509_svid, x509_svid_key, bundle, hint }, federated_bundles }
  auto field = [](int number, const std::string& value) {
    std::string out;
    out += static_cast<char>((number << 3) | 2);
    std::size_t n = value.size();
    while (n >= 0x80) {
      out += static_cast<char>((n & 0x7F) | 0x80);
      n >>= 7;
    }
    out += static_cast<char>(n);
    return out + value;
  };
  const std::string svid =
      field(1, "spiffe://example.org/w") + field(2, "CHAIN") + field(3, "KEY") + field(4, "BUNDLE") + field(5, "hint");
  const std::string federated = field(1, "spiffe://federated.org") + field(2, "FED");
  const std::string message = field(1, svid) + field(2, "crl ignored") + field(3, federated);
  const auto decoded = decode_x509_svid_response(message, 10, 10);
  REQUIRE(decoded.svids.size() == 1);
  CHECK(decoded.svids[0].spiffe_id == "spiffe://example.org/w");
  CHECK(decoded.svids[0].chain == "CHAIN");
  CHECK(decoded.svids[0].key == "KEY");
  CHECK(decoded.svids[0].bundle == "BUNDLE");
  CHECK(decoded.svids[0].hint == "hint");
  REQUIRE(decoded.federated.size() == 1);
  CHECK(decoded.federated[0].second == "FED");
  CHECK(code_of([&] { (void)decode_x509_svid_response(field(1, svid) + field(1, svid), 1, 10); }) ==
        spiffe_errc::too_many_svids);
  CHECK(code_of([&] { (void)decode_x509_svid_response(message + field(3, federated), 10, 10); }) ==
        spiffe_errc::malformed_message);  // a trust domain twice
  CHECK(code_of([&] { (void)decode_x509_svid_response(message.substr(0, message.size() - 1), 10, 10); }) ==
        spiffe_errc::malformed_message);
  const auto bundles = decode_x509_bundles_response(field(1, "crl") + field(2, federated), 10);
  REQUIRE(bundles.size() == 1);
  CHECK(bundles[0].first == "spiffe://federated.org");
}
