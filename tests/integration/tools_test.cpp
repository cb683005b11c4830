// The command-line tools run as subprocesses: output, errors on stderr, exit codes.
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/spiffe/jwt_svid.hpp>

#include "support/names.hpp"
#include "support/workload_peer.hpp"

using awaken::test::WorkloadPeer;

namespace {

struct Ran {
  int status = -1;
  std::string out;
  std::string err;
};

// Runs tool `name` of this build with `args`; stdout and stderr apart.
Ran tool(const std::string& name, const std::vector<std::string>& args) {
  awaken::test::TempDir dir;
  const std::string err_file = dir.path() + "/stderr";
  std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>\"" + err_file + "\"",
                                std::string{AWAKEN_TOOLS_DIR} + "/" + name};
  argv.insert(argv.end(), args.begin(), args.end());
  Ran r;
  r.status = awaken::test::run_command(argv, &r.out, std::chrono::seconds{60});
  std::ifstream in{err_file};
  std::ostringstream text;
  text << in.rdbuf();
  r.err = text.str();
  return r;
}

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

std::string write(const awaken::test::TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream{path} << text;
  return path;
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

TEST_CASE("The header-injection example retries once after invalidating a rejected token", "[tools]") {
  awaken::test::PeerProcess server{"token_server.mjs", {}};
  const std::string base = "http://127.0.0.1:" + std::to_string(server.info()["port"].get<int>());
  const auto ran = tool("authorized_call", {"--token-endpoint", base + "/token", "--resource", base + "/api/resource",
                                            "--revoke", base + "/api/revoke-all"});
  CHECK(ran.status == 0);
  CHECK_THAT(ran.out, Contains("first call: HTTP 200, mints so far 1") &&
                          Contains("second call: HTTP 200, mints so far 1") &&
                          Contains("401 from the resource: invalidating the token and retrying once") &&
                          Contains("third call: HTTP 200, mints so far 2"));
  CHECK(ran.err.empty());
}
