// The command-line tools run as subprocesses: output, errors on stderr, exit codes.
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/jose/jws.hpp>
#include <awaken/jose/keys.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>
#include <awaken/spiffe/jwt_svid.hpp>

#include "support/names.hpp"
#include "support/workload_peer.hpp"

namespace {

struct Ran {
  int status = -1;
  std::string out;
  std::string err;
};

// Runs `program` (found on PATH unless a path) with `args`; stdout and stderr apart.
Ran run_program(const std::string& program, const std::vector<std::string>& args) {
  awaken::test::TempDir dir;
  const std::string err_file = dir.path() + "/stderr";
  std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>\"" + err_file + "\"", program};
  argv.insert(argv.end(), args.begin(), args.end());
  Ran r;
  r.status = awaken::test::run_command(argv, &r.out, std::chrono::seconds{60});
  std::ifstream in{err_file};
  std::ostringstream text;
  text << in.rdbuf();
  r.err = text.str();
  return r;
}

// Runs tool `name` of this build with `args`; stdout and stderr apart.
Ran tool(const std::string& name, const std::vector<std::string>& args) {
  return run_program(std::string{AWAKEN_TOOLS_DIR} + "/" + name, args);
}

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

std::string write(const awaken::test::TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream{path} << text;
  return path;
}

std::string read(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

int occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// The permission bits of a file, or -1 when it does not exist.
int mode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
}

// Waits until the peer has `n` X.509 streams (FetchX509SVID or FetchX509Bundles) open.
void wait_for_x509_streams(const WorkloadPeer& peer, int n) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  while (peer.control("/stats")["x509_streams"].get<int>() < n) {
    if (std::chrono::steady_clock::now() > until) throw std::runtime_error("no X.509 stream opened");
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

}  // namespace

TEST_CASE("awaken-spiffe: help, usage errors and exit codes", "[tools]") {
  const auto help = tool("awaken-spiffe", {"--help"});
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Contains("Usage: awaken-spiffe") && Contains("Exit codes"));
  const auto none = tool("awaken-spiffe", {});
  CHECK(none.status == 2);
  CHECK(lines(none.err) == 1);
  CHECK_THAT(none.err, Contains("no command"));
  CHECK(tool("awaken-spiffe", {"--frobnicate", "bundles"}).status == 2);
  CHECK(tool("awaken-spiffe", {"--endpoint", "tcp://localhost:1", "bundles"}).status == 3);
  const auto down = tool("awaken-spiffe", {"--endpoint", "unix:///nonexistent/agent.sock", "bundles"});
  CHECK(down.status == 3);
  CHECK(lines(down.err) == 1);
  CHECK_THAT(down.err, Contains("unavailable"));
  // watch waits --timeout seconds (10 by default) for the first update, then says why it gave up.
  const auto started = std::chrono::steady_clock::now();
  const auto waited =
      tool("awaken-spiffe", {"--endpoint", "unix:///nonexistent/agent.sock", "watch", "--timeout", "1"});
  CHECK(waited.status == 3);
  CHECK_THAT(waited.err, Contains("no update within 1000 ms"));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds{8});
  CHECK(tool("awaken-spiffe", {"watch", "--timeout", "0"}).status == 2);
}

TEST_CASE("awaken-spiffe: fetch-jwt, validate, bundles and watch against the Workload API", "[tools]") {
  WorkloadPeer peer;
  const std::string endpoint = "unix://" + peer.socket();

  const auto bundles = tool("awaken-spiffe", {"--endpoint", endpoint, "bundles"});
  CHECK(bundles.status == 0);
  CHECK_THAT(bundles.out, Contains("example.org  refresh_hint=60s") && Contains("k1  EC P-256 (ES256)"));
  const auto as_json = nlohmann::json::parse(tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "bundles"}).out);
  CHECK(as_json["example.org"]["keys"][0]["kid"] == "k1");

  const auto fetched = tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-jwt", "--audience", "svc-a"});
  REQUIRE(fetched.status == 0);
  const std::string token = fetched.out.substr(0, fetched.out.find('\n'));
  CHECK(awaken::spiffe::JwtSvid::parse_insecure(token).spiffe_id().str() == "spiffe://example.org/workload");
  const auto other =
      nlohmann::json::parse(tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "fetch-jwt", "--audience", "x",
                                                   "--spiffe-id", "spiffe://example.org/other"})
                                .out);
  CHECK(other["spiffe_id"] == "spiffe://example.org/other");
  CHECK(other["hint"] == "secondary");

  const auto valid = tool("awaken-spiffe", {"--endpoint", endpoint, "validate", "--audience", "svc-a", token});
  CHECK(valid.status == 0);
  CHECK_THAT(valid.out, Contains("valid: spiffe://example.org/workload, kid k1"));
  const auto wrong = tool("awaken-spiffe", {"--endpoint", endpoint, "validate", "--audience", "svc-b", token});
  CHECK(wrong.status == 1);
  CHECK(lines(wrong.err) == 1);
  CHECK_THAT(wrong.err, Contains("invalid token") && Contains("no expected audience"));
  CHECK(wrong.err.find(token.substr(token.rfind('.'))) == std::string::npos);
  CHECK(tool("awaken-spiffe", {"--endpoint", endpoint, "validate", "--agent", "--audience", "svc-a", token}).status ==
        0);
  CHECK(tool("awaken-spiffe", {"--endpoint", endpoint, "validate", "--agent", "--audience", "svc-b", token}).status ==
        1);
  CHECK(tool("awaken-spiffe", {"--endpoint", endpoint, "validate", "--audience", "svc-a"}).status == 2);

  // The endpoint from the environment.
  ::setenv("SPIFFE_ENDPOINT_SOCKET", endpoint.c_str(), 1);
  CHECK(tool("awaken-spiffe", {"bundles"}).status == 0);
  ::unsetenv("SPIFFE_ENDPOINT_SOCKET");

  // watch: one line for the state, one per update.
  Ran watched;
  {
    // A jthread: if the peer fails below, the tool still ends (its own 60 s deadline) and is joined.
    std::jthread watcher{[&] { watched = tool("awaken-spiffe", {"--endpoint", endpoint, "watch", "--count", "1"}); }};
    peer.wait_for_streams(1);
    peer.control("/rotate");
  }
  CHECK(watched.status == 0);
  CHECK_THAT(watched.out, Contains("sequence 1: example.org: added; federated.org: added") &&
                              Contains("sequence 2: example.org: +k2 -k1"));
}

TEST_CASE("awaken-token: mints from a configuration file, redacted unless --reveal", "[tools]") {
  awaken::test::TempDir dir;
  const auto help = tool("awaken-token", {"--help"});
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Contains("Usage: awaken-token"));
  CHECK(tool("awaken-token", {}).status == 2);
  const auto missing = tool("awaken-token", {"--config", dir.path() + "/absent.json"});
  CHECK(missing.status == 2);
  CHECK(lines(missing.err) == 1);

  const auto bearer = write(dir, "bearer.json", R"({"kind":"bearer","token":"sk-live-secret-1"})");
  const auto redacted = tool("awaken-token", {"--config", bearer});
  CHECK(redacted.status == 0);
  CHECK_THAT(redacted.out, Contains("minted: IssuedToken{type=Bearer") && Contains("bearer=[redacted]"));
  CHECK(redacted.out.find("sk-live") == std::string::npos);
  CHECK(tool("awaken-token", {"--config", bearer, "--reveal"}).out == "sk-live-secret-1\n");
  const auto bad = tool("awaken-token", {"--config", write(dir, "bad.json", R"({"kind":"bearer","tokn":"x"})")});
  CHECK(bad.status == 2);
  CHECK_THAT(bad.err, Contains("'tokn' is not a field of kind bearer"));

  // A JWT-SVID from the Workload API, and an OAuth token whose short life shows a refresh.
  WorkloadPeer peer;
  const auto svid_config =
      write(dir, "svid.json",
            nlohmann::json{
                {"scope", "svc-a svc-b"}, {"endpoint", "unix://" + peer.socket()}, {"material", {{"kind", "jwt_svid"}}}}
                .dump());
  const auto svid = tool("awaken-token", {"--config", svid_config, "--reveal"});
  REQUIRE(svid.status == 0);
  CHECK(awaken::spiffe::JwtSvid::parse_insecure(svid.out.substr(0, svid.out.find('\n'))).audience() ==
        std::vector<std::string>{"svc-a", "svc-b"});

  awaken::test::PeerProcess oauth{"token_server.mjs", {}};
  const auto short_lived =
      write(dir, "short.json",
            nlohmann::json{{"kind", "oauth_client_credentials"},
                           {"token_endpoint", "http://127.0.0.1:" + std::to_string(oauth.info()["port"].get<int>()) +
                                                  "/fault/short-expires/token"},
                           {"client_id", "awaken-client"},
                           {"client_secret_env", "AWAKEN_TEST_SECRET"}}
                .dump());
  ::setenv("AWAKEN_TEST_SECRET", "s3cret-value", 1);
  const auto watched = tool("awaken-token", {"--config", short_lived, "--watch", "--count", "1", "--json"});
  ::unsetenv("AWAKEN_TEST_SECRET");
  CHECK(watched.status == 0);
  REQUIRE(lines(watched.out) == 2);
  const auto first = nlohmann::json::parse(watched.out.substr(0, watched.out.find('\n')));
  const auto second = nlohmann::json::parse(watched.out.substr(watched.out.find('\n') + 1));
  CHECK(first["event"] == "minted");
  CHECK(second["event"] == "refreshed");
  CHECK(second["token"] == "[redacted]");
  CHECK(second["expires_at"] != first["expires_at"]);
}

TEST_CASE("awaken-token: AWS credentials from a JWT-SVID, redacted, or as credential_process JSON", "[tools]") {
  awaken::test::TempDir dir;
  WorkloadPeer peer;
  awaken::test::PeerProcess sts{"cloud_sts_server.mjs",
                                {"--jwks", "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/jwks"}};
  const nlohmann::json material{
      {"kind", "aws_web_identity"},
      {"role_arn", "arn:aws:iam::123456789012:role/tool"},
      {"sts_endpoint", "http://127.0.0.1:" + std::to_string(sts.info()["port"].get<int>()) + "/"},
      {"jwt_svid", nlohmann::json::object()}};
  const auto config =
      write(dir, "aws.json", nlohmann::json{{"endpoint", "unix://" + peer.socket()}, {"material", material}}.dump());
  const auto redacted = tool("awaken-token", {"--config", config});
  REQUIRE(redacted.status == 0);
  CHECK_THAT(redacted.out, Contains("minted: AWS_ACCESS_KEY_ID=[redacted] AWS_SECRET_ACCESS_KEY=[redacted]"));
  CHECK(redacted.out.find("ASIA") == std::string::npos);
  const auto revealed = tool("awaken-token", {"--config", config, "--reveal"});
  REQUIRE(revealed.status == 0);
  const auto process = nlohmann::json::parse(revealed.out);
  CHECK(process["Version"] == 1);
  CHECK(process["AccessKeyId"].get<std::string>().rfind("ASIA", 0) == 0);
  CHECK(process["SecretAccessKey"].get<std::string>().size() == 40);
  CHECK_FALSE(process["SessionToken"].get<std::string>().empty());
  CHECK(process["Expiration"].get<std::string>().back() == 'Z');
}

TEST_CASE("The header-injection example retries once after invalidating a rejected token", "[tools]") {
  awaken::test::PeerProcess server{"token_server.mjs", {}};
  const std::string base = "http://127.0.0.1:" + std::to_string(server.info()["port"].get<int>());
  const auto ran = run_program(std::string{AWAKEN_EXAMPLES_DIR} + "/authorized_call",
                               {"--token-endpoint", base + "/token", "--resource", base + "/api/resource", "--revoke",
                                base + "/api/revoke-all"});
  CHECK(ran.status == 0);
  CHECK_THAT(ran.out, Contains("first call: HTTP 200, mints so far 1") &&
                          Contains("second call: HTTP 200, mints so far 1") &&
                          Contains("401 from the resource: invalidating the token and retrying once") &&
                          Contains("third call: HTTP 200, mints so far 2"));
  CHECK(ran.err.empty());
}

TEST_CASE("awaken-spiffe: fetch-x509 lists the X.509 context and writes SPIRE's files", "[tools]") {
  WorkloadPeer peer;
  const std::string endpoint = "unix://" + peer.socket();

  const auto listed = tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "fetch-x509"});
  REQUIRE(listed.status == 0);
  const auto context = nlohmann::json::parse(listed.out);
  REQUIRE(context["svids"].size() == 2);
  CHECK(context["svids"][0]["spiffe_id"] == "spiffe://example.org/workload");
  CHECK(context["svids"][0]["hint"] == "primary");
  CHECK(context["svids"][0]["chain_length"] == 2);
  CHECK_THAT(context["svids"][0]["expires_at"].get<std::string>(), Contains("T") && Contains("Z"));
  CHECK(context["svids"][1]["spiffe_id"] == "spiffe://example.org/other");
  CHECK(context["svids"][1]["hint"] == "secondary");
  REQUIRE(context["bundles"].size() == 2);
  CHECK(context["bundles"][0] == nlohmann::json{{"trust_domain", "example.org"}, {"authorities", 1}});
  CHECK(context["bundles"][1] == nlohmann::json{{"trust_domain", "federated.org"}, {"authorities", 1}});
  CHECK(!context.contains("written"));

  const auto text = tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-x509"});
  CHECK(text.status == 0);
  CHECK_THAT(text.out, Contains("svid 0  spiffe://example.org/workload  hint=primary  expires=") &&
                           Contains("chain=2") && Contains("svid 1  spiffe://example.org/other  hint=secondary") &&
                           Contains("bundle example.org  authorities=1") &&
                           Contains("bundle federated.org  authorities=1"));

  // --write: SPIRE's file names; the keys 0600 from the start, and never on stdout or stderr.
  awaken::test::TempDir dir;
  const std::string d = dir.path();
  const std::string stale_key = write(dir, "svid.1.key", "an older key\n");  // 0644 under the usual umask
  ::chmod(stale_key.c_str(), 0644);
  const auto wrote = tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-x509", "--write", d});
  REQUIRE(wrote.status == 0);
  for (const auto* name : {"svid.0.pem", "svid.0.key", "bundle.0.pem", "federated_bundle.0.0.pem", "svid.1.pem",
                           "svid.1.key", "bundle.1.pem", "federated_bundle.1.0.pem"}) {
    INFO(name);
    CHECK(std::filesystem::is_regular_file(d + "/" + name));
    CHECK_THAT(wrote.out, Contains("wrote " + d + "/" + name));
  }
  CHECK(!std::filesystem::exists(d + "/federated_bundle.0.1.pem"));
  CHECK(mode_of(d + "/svid.0.key") == 0600);
  CHECK(mode_of(d + "/svid.1.key") == 0600);  // narrowed before the key went in
  CHECK(occurrences(read(d + "/svid.0.pem"), "-----BEGIN CERTIFICATE-----") == 2);
  CHECK(occurrences(read(d + "/bundle.0.pem"), "-----BEGIN CERTIFICATE-----") == 1);
  CHECK(occurrences(read(d + "/svid.0.key"), "-----BEGIN PRIVATE KEY-----") == 1);
  CHECK(read(d + "/bundle.0.pem") == peer.control("/x509/ca")["example_root_pem"].get<std::string>());
  CHECK(read(d + "/federated_bundle.0.0.pem") == peer.control("/x509/ca")["federated_root_pem"].get<std::string>());
  CHECK(wrote.out.find("PRIVATE KEY") == std::string::npos);
  CHECK(wrote.err.empty());
  const auto as_json =
      nlohmann::json::parse(tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "fetch-x509", "--write", d}).out);
  CHECK(as_json["written"].size() == 8);
  CHECK(as_json.dump().find("PRIVATE KEY") == std::string::npos);

  const auto no_dir = tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-x509", "--write", d + "/absent"});
  CHECK(no_dir.status == 2);
  CHECK(lines(no_dir.err) == 1);
  CHECK(tool("awaken-spiffe", {"--endpoint", endpoint, "bundles", "--write", d}).status == 2);

  // The files verify as an X.509-SVID against their own trust domain's bundle only.
  const auto valid =
      tool("awaken-spiffe", {"validate-x509", d + "/svid.0.pem", "--bundle", "example.org=" + d + "/bundle.0.pem"});
  CHECK(valid.status == 0);
  CHECK_THAT(valid.out, Contains("valid: spiffe://example.org/workload, chain of 2"));
  CHECK(valid.err.empty());
  const auto valid_json =
      nlohmann::json::parse(tool("awaken-spiffe", {"--json", "validate-x509", d + "/svid.1.pem", "--bundle",
                                                   "example.org=" + d + "/bundle.1.pem"})
                                .out);
  CHECK(valid_json["valid"] == true);
  CHECK(valid_json["spiffe_id"] == "spiffe://example.org/other");
  CHECK(valid_json["chain_length"] == 2);

  const auto foreign = tool("awaken-spiffe", {"validate-x509", d + "/svid.0.pem", "--bundle",
                                              "federated.org=" + d + "/federated_bundle.0.0.pem"});
  CHECK(foreign.status == 1);
  CHECK(lines(foreign.err) == 1);
  CHECK_THAT(foreign.err, Contains("invalid X.509-SVID") && Contains("no bundle for trust domain example.org"));
  CHECK(foreign.out.empty());
  const auto foreign_json = tool("awaken-spiffe", {"--json", "validate-x509", d + "/svid.0.pem", "--bundle",
                                                   "federated.org=" + d + "/federated_bundle.0.0.pem"});
  CHECK(foreign_json.status == 1);
  const auto refusal = nlohmann::json::parse(foreign_json.out);
  CHECK(refusal["valid"] == false);
  CHECK(refusal["code"] == "bundle_not_found");
  CHECK(refusal["error"] == "no bundle for the trust domain");
  CHECK_THAT(refusal["detail"].get<std::string>(), Contains("spiffe://example.org/workload"));

  // Usage: a bundle argument that is not TRUST_DOMAIN=FILE, a file that is not there, no chain.
  CHECK(tool("awaken-spiffe", {"validate-x509", d + "/svid.0.pem", "--bundle", d + "/bundle.0.pem"}).status == 2);
  CHECK(tool("awaken-spiffe", {"validate-x509", d + "/svid.0.pem", "--bundle", "example.org=" + d + "/absent.pem"})
            .status == 2);
  CHECK(tool("awaken-spiffe", {"validate-x509", d + "/absent.pem", "--bundle", "example.org=" + d + "/bundle.0.pem"})
            .status == 2);
  CHECK(tool("awaken-spiffe", {"validate-x509", "--bundle", "example.org=" + d + "/bundle.0.pem"}).status == 2);

  // The files are standard: OpenSSL's own tools read them and agree.
  const auto verified = run_program("openssl", {"verify", "-partial_chain", "-CAfile", d + "/bundle.0.pem",
                                                "-untrusted", d + "/svid.0.pem", d + "/svid.0.pem"});
  CHECK(verified.status == 0);
  CHECK_THAT(verified.out, Contains(": OK"));
  const auto from_key = run_program("openssl", {"pkey", "-in", d + "/svid.0.key", "-pubout"});
  const auto from_cert = run_program("openssl", {"x509", "-in", d + "/svid.0.pem", "-pubkey", "-noout"});
  REQUIRE(from_key.status == 0);
  REQUIRE(from_cert.status == 0);
  CHECK_THAT(from_key.out, Contains("-----BEGIN PUBLIC KEY-----"));
  CHECK(from_key.out == from_cert.out);
  // The other SVID's key is its own.
  CHECK(run_program("openssl", {"pkey", "-in", d + "/svid.1.key", "-pubout"}).out != from_key.out);
}

TEST_CASE("awaken-spiffe: validate-x509 against the agent's X.509 bundles", "[tools]") {
  WorkloadPeer peer;
  const std::string endpoint = "unix://" + peer.socket();
  awaken::test::TempDir dir;
  REQUIRE(tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-x509", "--write", dir.path()}).status == 0);

  const auto valid = tool("awaken-spiffe", {"--endpoint", endpoint, "validate-x509", dir.path() + "/svid.1.pem"});
  CHECK(valid.status == 0);
  CHECK_THAT(valid.out, Contains("valid: spiffe://example.org/other"));
  ::setenv("SPIFFE_ENDPOINT_SOCKET", endpoint.c_str(), 1);
  CHECK(tool("awaken-spiffe", {"validate-x509", dir.path() + "/svid.0.pem"}).status == 0);
  ::unsetenv("SPIFFE_ENDPOINT_SOCKET");

  // A federated.org ID signed by example.org's CA: no path to federated.org's root.
  const auto issued = peer.control("/x509/issue?id=spiffe%3A%2F%2Ffederated.org%2Fx&td=example.org");
  REQUIRE(issued.contains("chain_pem"));
  const std::string chain = write(dir, "impostor.pem", issued["chain_pem"].get<std::string>());
  const auto impostor = tool("awaken-spiffe", {"--endpoint", endpoint, "validate-x509", chain});
  CHECK(impostor.status == 1);
  CHECK(lines(impostor.err) == 1);
  CHECK_THAT(impostor.err, Contains("spiffe://federated.org/x") && Contains("authorities of federated.org"));
  CHECK(impostor.err.find("PRIVATE KEY") == std::string::npos);
  const auto impostor_json =
      nlohmann::json::parse(tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "validate-x509", chain}).out);
  CHECK(impostor_json["valid"] == false);
  CHECK(impostor_json["code"] == "untrusted_chain");

  // A chain file without a certificate is refused as such; a failed agent call is exit 3.
  const auto garbage = tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "validate-x509",
                                              write(dir, "garbage.pem", "not a certificate\n")});
  CHECK(garbage.status == 1);
  CHECK(nlohmann::json::parse(garbage.out)["code"] == "invalid_certificate");
  const auto down = tool("awaken-spiffe", {"--endpoint", "unix:///nonexistent/agent.sock", "validate-x509", chain});
  CHECK(down.status == 3);
  CHECK(lines(down.err) == 1);
}

TEST_CASE("awaken-spiffe: bundles lists X.509 authorities; watch --x509 reports rotations", "[tools]") {
  WorkloadPeer peer;
  const std::string endpoint = "unix://" + peer.socket();

  const auto text = tool("awaken-spiffe", {"--endpoint", endpoint, "bundles"});
  CHECK(text.status == 0);
  CHECK_THAT(text.out, Contains("example.org  refresh_hint=60s") && Contains("k1  EC P-256 (ES256)") &&
                           Contains("x509 example.org  authorities=1") && Contains("CN=example.org root") &&
                           Contains("x509 federated.org  authorities=1") && Contains("CN=federated.org root"));
  const auto as_json = nlohmann::json::parse(tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "bundles"}).out);
  CHECK(as_json["example.org"]["keys"][0]["kid"] == "k1");
  REQUIRE(as_json["x509"]["example.org"]["authorities"].size() == 1);
  CHECK_THAT(as_json["x509"]["example.org"]["authorities"][0]["subject"].get<std::string>(),
             Contains("example.org root"));
  CHECK_THAT(as_json["x509"]["federated.org"]["authorities"][0]["expires_at"].get<std::string>(), Contains("Z"));

  // An agent without FetchX509Bundles: the JWT bundles alone. Any other failure is one.
  peer.control("/fail?code=12&count=2&method=FetchX509Bundles&message=not+here");
  const auto jwt_only = tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "bundles"});
  CHECK(jwt_only.status == 0);
  const auto jwt_only_json = nlohmann::json::parse(jwt_only.out);
  CHECK(jwt_only_json["example.org"]["keys"][0]["kid"] == "k1");
  CHECK(!jwt_only_json.contains("x509"));
  const auto jwt_only_text = tool("awaken-spiffe", {"--endpoint", endpoint, "bundles"});
  CHECK(jwt_only_text.status == 0);
  CHECK_THAT(jwt_only_text.out, Contains("k1  EC P-256 (ES256)"));
  CHECK(jwt_only_text.out.find("x509") == std::string::npos);
  peer.control("/fail?code=13&count=1&method=FetchX509Bundles&message=broken");
  const auto failed = tool("awaken-spiffe", {"--endpoint", endpoint, "bundles"});
  CHECK(failed.status == 3);
  CHECK(lines(failed.err) == 1);
  CHECK(tool("awaken-spiffe", {"--endpoint", endpoint, "bundles", "--x509"}).status == 2);

  // watch --x509: one line for the state, one per update; rotated until the tool has seen one.
  Ran watched;
  {
    std::atomic<bool> done{false};
    std::jthread watcher{[&] {
      watched = tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "watch", "--x509", "--count", "1"});
      done = true;
    }};
    wait_for_x509_streams(peer, 1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds{30};
    while (!done && std::chrono::steady_clock::now() < until) {
      peer.control("/x509/rotate");
      for (int i = 0; i < 50 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }
  CHECK(watched.status == 0);
  REQUIRE(lines(watched.out) == 2);
  const auto first = nlohmann::json::parse(watched.out.substr(0, watched.out.find('\n')));
  const auto second = nlohmann::json::parse(watched.out.substr(watched.out.find('\n') + 1));
  CHECK(first["spiffe_id"] == "spiffe://example.org/workload");
  CHECK(second["spiffe_id"] == "spiffe://example.org/workload");
  CHECK(first["bundles"] == 2);
  CHECK(first["leaf_sha256"].get<std::string>().size() == 16);
  CHECK(second["leaf_sha256"] != first["leaf_sha256"]);
  CHECK(second["sequence"].get<std::uint64_t>() > first["sequence"].get<std::uint64_t>());
  CHECK(watched.out.find("PRIVATE KEY") == std::string::npos);

  // The text form.
  Ran plain;
  {
    std::atomic<bool> done{false};
    std::jthread watcher{[&] {
      plain = tool("awaken-spiffe", {"--endpoint", endpoint, "watch", "--x509", "--count", "1"});
      done = true;
    }};
    wait_for_x509_streams(peer, 1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds{30};
    while (!done && std::chrono::steady_clock::now() < until) {
      peer.control("/x509/rotate");
      for (int i = 0; i < 50 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }
  CHECK(plain.status == 0);
  CHECK(lines(plain.out) == 2);
  CHECK_THAT(plain.out, Contains(": spiffe://example.org/workload  expires=") && Contains("  leaf_sha256=") &&
                            Contains("  bundles=2"));
}

TEST_CASE("awaken-spiffe: fetch-wit and validate-wit, with a workload proof; an agent without WIT", "[tools][wit]") {
  WorkloadPeer peer;
  const std::string endpoint = "unix://" + peer.socket();
  const auto listed = tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-wit"});
  REQUIRE(listed.status == 0);
  CHECK_THAT(listed.out, Contains("wit 0  spiffe://example.org/workload  hint=primary") &&
                             Contains("wit 1  spiffe://example.org/other  hint=secondary") &&
                             Contains("key_alg=ES256") && Contains("federated.org"));
  const auto json = tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "fetch-wit"});
  REQUIRE(json.status == 0);
  const auto fetched = nlohmann::json::parse(json.out);
  const std::string token = fetched["svids"][0]["token"];
  CHECK(fetched["svids"][0]["kid"] == peer.control("/stats")["wit_kid"]);
  // The private keys never appear.
  CHECK(json.out.find("\"d\"") == std::string::npos);

  // A WIT-SVID alone is valid but not a verified request: exit 4, never 0, and the output says
  // what was not checked.
  const auto alone = tool("awaken-spiffe", {"--endpoint", endpoint, "validate-wit", token});
  CHECK(alone.status == 4);
  CHECK_THAT(alone.out, Contains("not verified") && Contains("spiffe://example.org/workload") &&
                            Contains("no proof of possession was checked"));
  const auto alone_json = tool("awaken-spiffe", {"--endpoint", endpoint, "--json", "validate-wit", token});
  CHECK(alone_json.status == 4);
  const auto verdict = nlohmann::json::parse(alone_json.out);
  CHECK(verdict["wit_svid_valid"] == true);
  CHECK(verdict["proof_checked"] == false);
  CHECK(verdict["verified"] == false);

  // A WIT-SVID with an audience breaks the standard: refused, exit 1.
  const auto issued = peer.control("/wit/issue?id=spiffe://example.org/x&fault=aud");
  const auto bad = tool("awaken-spiffe", {"--endpoint", endpoint, "validate-wit", issued["wit"].get<std::string>()});
  CHECK(bad.status == 1);
  CHECK_THAT(bad.err, Contains("invalid WIT-SVID"));

  // With a proof made from the issued key: valid for its URL and access token, not for another.
  awaken::test::TempDir dir;
  const auto good = peer.control("/wit/issue?id=spiffe://example.org/caller");
  const auto svid =
      awaken::spiffe::experimental::WitSvid::parse_insecure(good["wit"].get<std::string>())
          .with_private_key(awaken::jose::PrivateKey::from_jwk(RedactedString{good["key"].get<std::string>()}));
  awaken::spiffe::experimental::WptRequest request;
  request.target_uri = "https://orders.example.org/orders/9?x=1";
  request.access_token = "at-123";
  const auto headers = make_workload_proof(svid, request);
  const std::string wit{headers.workload_identity_token.reveal()};
  const std::string wpt{headers.workload_proof_token.reveal()};
  const auto with_proof = tool("awaken-spiffe", {"--endpoint", endpoint, "validate-wit", wit, "--proof", wpt, "--url",
                                                 "https://orders.example.org/orders/9", "--access-token", "at-123"});
  CHECK(with_proof.status == 0);
  CHECK_THAT(with_proof.out, Contains("verified: WIT-SVID and its proof valid: spiffe://example.org/caller"));
  const auto elsewhere = tool("awaken-spiffe", {"--endpoint", endpoint, "validate-wit", wit, "--proof", wpt, "--url",
                                                "https://billing.example.org/orders/9", "--access-token", "at-123"});
  CHECK(elsewhere.status == 1);
  CHECK(tool("awaken-spiffe", {"--endpoint", endpoint, "validate-wit", wit, "--proof", wpt}).status == 2);

  peer.control("/wit/mode?m=unimplemented");
  const auto absent = tool("awaken-spiffe", {"--endpoint", endpoint, "fetch-wit"});
  CHECK(absent.status == 3);
  CHECK_THAT(absent.err, Contains("does not offer WIT-SVIDs"));
}

TEST_CASE("awaken-token: a DPoP-bound token and the proof of one request", "[tools][dpop]") {
  awaken::test::TempDir dir;
  awaken::test::PeerProcess oidc{"oidc_server.mjs", {"--dpop"}};
  const auto config = write(dir, "dpop.json",
                            nlohmann::json{{"kind", "oauth_client_credentials"},
                                           {"token_endpoint", oidc.info()["token_endpoint"]},
                                           {"client_id", "awaken-dpop"},
                                           {"client_secret", "s3cret-value"},
                                           {"dpop", true}}
                                .dump());
  const auto shown = tool("awaken-token", {"--config", config, "--scope", "api:read", "--json", "--dpop", "GET",
                                           "https://api.example.org/orders?page=2"});
  REQUIRE(shown.status == 0);
  const auto j = nlohmann::json::parse(shown.out);
  CHECK(j["type"] == "DPoP");
  CHECK(j["token"] == "[redacted]");
  const auto proof = awaken::jose::CompactJws::parse(j["dpop_proof"].get<std::string>());
  CHECK(proof.header()["typ"] == "dpop+jwt");
  CHECK(awaken::jose::PublicKey::from_jwk(proof.header()["jwk"]).thumbprint() == j["dpop_jkt"]);
  const auto claims = nlohmann::json::parse(proof.payload());
  CHECK(claims["htm"] == "GET");
  CHECK(claims["htu"] == "https://api.example.org/orders");
  CHECK(claims.contains("ath"));

  const auto text = tool("awaken-token", {"--config", config, "--dpop", "POST", "https://api.example.org/x"});
  CHECK(text.status == 0);
  CHECK_THAT(text.out, Contains("type=DPoP") && Contains("dpop_jkt=") && Contains("DPoP: ey"));
  const auto bad_url = tool("awaken-token", {"--config", config, "--dpop", "GET", "not-a-url"});
  CHECK(bad_url.status == 2);
  const auto bearer = write(dir, "bearer.json", R"({"kind":"bearer","token":"sk-live-secret-1"})");
  const auto not_bound = tool("awaken-token", {"--config", bearer, "--dpop", "GET", "https://a.example/"});
  CHECK(not_bound.status == 2);
  CHECK_THAT(not_bound.err, Contains("bearer token"));
}
