// The federation readers without I/O: token content, JWT expiry, RFC 3339 times, Google's
// impersonation answer, AWS STS's XML; and the configuration's refusals.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/cloud_federation.hpp>
#include <awaken/credentials/federation.hpp>
#include <awaken/error.hpp>
#include <awaken/jose/base64url.hpp>

#include "credentials/federation/federation_parsers.hpp"
#include "support/names.hpp"

using namespace awaken::detail;
using awaken::TokenFormat;

namespace {

std::string jwt_with(const json& claims) {
  return awaken::jose::base64url_encode(R"({"alg":"ES256"})") + "." + awaken::jose::base64url_encode(claims.dump()) +
         ".c2ln";
}

constexpr const char* sts_ok = R"(<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEJr//session</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2025-12-01T10:00:00Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>)";

}  // namespace

TEST_CASE("Token content: text and json layouts, bounded, no control bytes", "[federation]") {
  std::string why;
  CHECK(token_from_content("abc.def.ghi\n", TokenFormat::text, {}, why).reveal() == "abc.def.ghi");
  CHECK(token_from_content("abc\r\n", TokenFormat::text, {}, why).reveal() == "abc");
  CHECK(token_from_content(R"({"id_token":"tok"})", TokenFormat::json, "id_token", why).reveal() == "tok");

  CHECK(token_from_content("\n", TokenFormat::text, {}, why).empty());
  CHECK(why == "is empty");
  CHECK(token_from_content("a b", TokenFormat::text, {}, why).empty());
  CHECK_THAT(why, Contains("control byte"));
  CHECK(token_from_content(R"({"other":"tok"})", TokenFormat::json, "id_token", why).empty());
  CHECK(why == "has no string member 'id_token'");
  CHECK(token_from_content("not json", TokenFormat::json, "id_token", why).empty());
  CHECK(why == "is not a JSON object");
  CHECK(token_from_content(std::string(max_identity_token_bytes + 1, 'a'), TokenFormat::text, {}, why).empty());
  CHECK(why == "is larger than 256 KiB");
}

TEST_CASE("JWT expiry: a numeric exp of a compact JWT, nothing for opaque tokens", "[federation]") {
  CHECK(jwt_expiry(jwt_with({{"exp", 1700000000}})) == 1700000000);
  CHECK(jwt_expiry(jwt_with({{"exp", 1700000000.9}})) == 1700000000);
  CHECK_FALSE(jwt_expiry(jwt_with({{"sub", "x"}})));
  CHECK_FALSE(jwt_expiry(jwt_with({{"exp", "soon"}})));
  CHECK_FALSE(jwt_expiry(jwt_with({{"exp", 1e300}})));
  CHECK(jwt_expiry(jwt_with({{"exp", -1e300}})) == 0);
  CHECK_FALSE(jwt_expiry("opaque-token"));
  CHECK_FALSE(jwt_expiry("a.b"));
  CHECK_FALSE(jwt_expiry("a.!!!.c"));
  CHECK_FALSE(jwt_expiry("a.b.c.d"));
}

TEST_CASE("RFC 3339 times: Z, fractions and offsets; malformed ones refused", "[federation]") {
  using std::chrono::system_clock;
  const auto at = system_clock::from_time_t(1764583200);  // 2025-12-01T10:00:00Z
  CHECK(parse_rfc3339("2025-12-01T10:00:00Z") == at);
  CHECK(parse_rfc3339("2025-12-01T10:00:00.123456789Z") == at);
  CHECK(parse_rfc3339("2025-12-01T12:00:00+02:00") == at);
  CHECK(parse_rfc3339("2025-12-01T09:30:00-00:30") == at);
  for (const char* bad : {"2025-12-01 10:00:00Z", "2025-12-01T10:00:00", "2025-13-01T10:00:00Z",
                          "2025-12-01T10:00:00.Z", "2025-12-01T10:00:00+0200", "yesterday", "", "3025-12-01T10:00:00Z",
                          "1007-01-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z"})
    CHECK_FALSE(parse_rfc3339(bad));
  CHECK(parse_rfc3339("2028-02-29T00:00:00Z"));
}

TEST_CASE("Google's impersonation answer and error bodies", "[federation][google]") {
  std::string why;
  auto ok = parse_impersonation_response(R"({"accessToken":"ya29.x","expireTime":"2025-12-01T10:00:00Z"})", why);
  REQUIRE(ok);
  CHECK(ok->access_token.reveal() == "ya29.x");
  CHECK(ok->expire_time == std::chrono::system_clock::from_time_t(1764583200));
  CHECK_FALSE(parse_impersonation_response(R"({"accessToken":"ya29.x"})", why));
  CHECK(why == "the answer has no valid expireTime");
  CHECK_FALSE(parse_impersonation_response(R"({"expireTime":"2025-12-01T10:00:00Z"})", why));
  CHECK(why == "the answer has no accessToken");
  CHECK(google_error_message(R"({"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}})") ==
        "PERMISSION_DENIED: denied");
  CHECK(google_error_message("<html>") == "<html>");
}

TEST_CASE("AWS STS's XML: credentials, error responses, malformed answers", "[federation][aws]") {
  const AwsStsAnswer ok = parse_aws_sts_response(sts_ok);
  REQUIRE(ok.ok());
  CHECK(ok.access_key_id.reveal() == "ASIAIOSFODNN7EXAMPLE");
  CHECK(ok.secret_access_key.reveal() == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
  CHECK(ok.session_token.reveal() == "FwoGZXIvYXdzEJr//session");
  CHECK(ok.expiration == std::chrono::system_clock::from_time_t(1764583200));

  const AwsStsAnswer error = parse_aws_sts_response(
      R"(<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>)"
      R"(<Code>InvalidIdentityToken</Code><Message>Incorrect token audience</Message></Error>)"
      R"(<RequestId>1</RequestId></ErrorResponse>)");
  CHECK_FALSE(error.ok());
  CHECK(error.error_type == "Sender");
  CHECK(error.error_code == "InvalidIdentityToken");
  CHECK(error.error_message == "Incorrect token audience");
  CHECK_FALSE(is_transient_aws_error(error.error_code));
  CHECK(is_transient_aws_error("Throttling"));
  CHECK(is_transient_aws_error("IDPCommunicationError"));

  std::string cut{sts_ok};
  cut.resize(cut.find("<Expiration>"));
  CHECK_THAT(parse_aws_sts_response(cut).malformed, Contains("not XML"));
  std::string no_expiry{sts_ok};
  no_expiry.replace(no_expiry.find("2025-12-01T10:00:00Z"), 20, "tomorrow");
  CHECK_THAT(parse_aws_sts_response(no_expiry).malformed, Contains("lack"));
  CHECK_THAT(parse_aws_sts_response("<Other/>").malformed, Contains("neither"));
  CHECK_THAT(parse_aws_sts_response(std::string(70'000, ' ')).malformed, Contains("larger than 64 KiB"));
  // A document type with an entity is not expanded: the key id stays literal text or fails.
  const AwsStsAnswer entity = parse_aws_sts_response(
      R"(<!DOCTYPE r [<!ENTITY x "ASIAEXPANDED">]><AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>)"
      R"(<Credentials><AccessKeyId>&x;</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>)"
      R"(<Expiration>2026-12-01T10:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>)"
      R"(</AssumeRoleWithWebIdentityResponse>)");
  CHECK(entity.access_key_id.reveal().find("EXPANDED") == std::string_view::npos);
}

TEST_CASE("Federated configurations refuse what they cannot use, naming the field", "[federation]") {
  const json account{
      {"type", "external_account"},
      {"audience", "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q"},
      {"subject_token_type", "urn:ietf:params:oauth:token-type:jwt"},
      {"credential_source", {{"file", "/var/run/token"}}}};
  CHECK(CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", account}}).kind_label() ==
        "google_external_account");
  auto refused = [](json config) {
    try {
      (void)CredentialMaterial::from_config(config);
    } catch (const awaken::Error& e) {
      CHECK(e.code() == credential_errc::invalid_material);
      return std::string{e.what()};
    }
    FAIL("accepted");
    return std::string{};
  };
  json two = account;
  two["credential_source"]["url"] = "http://127.0.0.1/token";
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", two}}),
             Contains("needs exactly one of file, url and jwt_svid"));
  json aws = account;
  aws["credential_source"] = {{"environment_id", "aws1"}};
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", aws}}),
             Contains("credential_source.environment_id' is not supported"));
  json type = account;
  type["type"] = "service_account";
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", type}}),
             Contains("'type' is not external_account"));
  json lifetime = account;
  lifetime["service_account_impersonation_url"] =
      "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
      "a@b.iam.gserviceaccount.com:generateAccessToken";
  lifetime["service_account_impersonation"] = {{"token_lifetime_seconds", 60}};
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", lifetime}}),
             Contains("token_lifetime_seconds is not between 600 and 43200"));
  // Regional and private Google hosts are Google's; look-alikes are not.
  json regional = account;
  regional["token_url"] = "https://sts.us-east1.googleapis.com/v1/token";
  CHECK_NOTHROW(CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", regional}}));
  regional["token_url"] = "https://sts-xyz.p.googleapis.com/v1/token";
  CHECK_NOTHROW(CredentialMaterial::from_config({{"kind", "google_external_account"}, {"credentials", regional}}));
  regional["token_url"] = "https://evil-sts.googleapis.com.example/v1/token";
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", regional}}), Contains("is not a sts host"));
  regional["token_url"] = "http://sts.googleapis.com/v1/token";
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", regional}}), Contains("must use https"));

  CHECK_THAT(refused({{"kind", "jwt_bearer_grant"}, {"token_endpoint", "https://idp.example/token"}}),
             Contains("'token_file' is missing"));
  CHECK_THAT(refused({{"kind", "jwt_bearer_grant"},
                      {"token_endpoint", "https://idp.example/token"},
                      {"token_file", "/t"},
                      {"jwt_svid", json::object()}}),
             Contains("both given"));
  for (const char* arn : {"arn::iam::123456789012:role/r", "arn:aws:iam::123456789012:role/a/",
                          "arn:aws:iam::123456789012:role//r", "arn:aws:iam::12345678901:role/r"})
    CHECK_THAT(refused({{"kind", "aws_web_identity"}, {"role_arn", arn}, {"token_file", "/t"}}),
               Contains("is not arn:PARTITION:iam::ACCOUNT:role/NAME"));
  CHECK_NOTHROW(CredentialMaterial::from_config(
      {{"kind", "aws_web_identity"}, {"role_arn", "arn:aws-cn:iam::123456789012:role/path/r"}, {"token_file", "/t"}}));
  json universe = account;
  universe["universe_domain"] = "evil.example";
  universe["token_url"] = "https://sts.evil.example/v1/token";
  CHECK_THAT(refused({{"kind", "google_external_account"}, {"credentials", universe}}),
             Contains("universe_domain 'evil.example' is not googleapis.com"));
  CHECK_THAT(refused({{"kind", "aws_web_identity"},
                      {"role_arn", "arn:aws:iam::123456789012:role/r"},
                      {"token_file", "/t"},
                      {"duration_seconds", 60}}),
             Contains("duration is not between 900 s and 12 h"));
  CHECK_THAT(refused({{"kind", "aws_web_identity"},
                      {"role_arn", "arn:aws:iam::123456789012:role/r"},
                      {"token_file", "/t"},
                      {"region", "eu-west-1.evil.example/"}}),
             Contains("is not a region name"));
  CHECK_THAT(refused({{"kind", "oauth_client_credentials"},
                      {"token_endpoint", "https://idp.example/token"},
                      {"client_id", "c"},
                      {"client_secret", "s"},
                      {"resource", "not a uri"}}),
             Contains("is not an absolute URI"));
  CHECK_THAT(refused({{"kind", "spiffe_client_credentials"}, {"token_endpoint", "https://idp.example/token"}}),
             Contains("needs a JwtSource"));
  CHECK_THAT(
      refused(
          {{"kind", "azure_workload_identity"}, {"client_id", "c"}, {"tenant_id", "../other"}, {"token_file", "/t"}}),
      Contains("tenant_id is not a tenant id"));
}
