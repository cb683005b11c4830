// awaken demo: what the library does today, against local peers.
//   awaken_demo --url https://127.0.0.1:PORT --ca-file ca.pem --signing-key key.pem
//               [--providers providers.json]
// 1. An HTTPS request through awaken's HttpClient, trusting only the given test CA.
// 2. A JWS (ES256) signed with the given key, then verified; a tampered copy is refused.
// 3. With --workload-endpoint: a JwtSource syncs from the Workload API, a JWT-SVID is fetched and
//    validated against its bundles; with --rotate-url (the test peer's control port) a rotation
//    is triggered and seen arriving.
// 4. With --providers: tokens minted through AwakenBroker for each provider of the file, a JSON
//    array of {"name", "scope", "material": <material_from_config object>} (SPIFFE-backed kinds
//    use the source of part 3), printed redacted; then each asked again, now a cache hit.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/spiffe_minters.hpp>
#include <awaken/spiffe/jwt_source.hpp>

#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/redacted_string.hpp>
#include "tool_main.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Requests are built before the co_await: GCC 12 destroys an aggregate temporary built inside a
// co_await expression twice (a compiler bug), so `co_await client.send({.url = ...})` is avoided.
awaken::http::HttpRequest get(std::string url) {
  awaken::http::HttpRequest request;
  request.url = std::move(url);
  return request;
}

asio::awaitable<void> https_part(awaken::http::HttpClient client, std::string base) {
  std::cout << "== HTTPS through awaken::http::HttpClient (peer verified against the test CA)\n";
  auto hello = co_await client.send(get(base + "/hello"));
  std::cout << "GET  /hello -> " << hello.status << " \"" << hello.body << "\"\n";

  awaken::http::HttpRequest post;
  post.method = "POST";
  post.url = base + "/echo";
  post.headers = {{"content-type", "application/x-www-form-urlencoded"}};
  post.body = "grant_type=client_credentials";
  auto echo = nlohmann::json::parse((co_await client.send(post)).body);
  std::cout << "POST /echo  -> peer saw " << echo["method"].get<std::string>() << " over HTTP/"
            << echo["http_version"].get<std::string>() << " with body \"" << echo["body"].get<std::string>() << "\"\n";

  auto slow = get(base + "/delay/5000");
  slow.timeout = std::chrono::milliseconds{200};
  try {
    co_await client.send(slow);
  } catch (const awaken::Error& e) {
    std::cout << "GET  /delay/5000 with a 200 ms timeout -> " << e.what()
              << ((e.code() == awaken::condition::transient) ? " (retryable)" : "") << "\n";
  }

  awaken::http::HttpClient untrusting{client.get_executor()};
  try {
    co_await untrusting.send(get(base + "/hello"));
  } catch (const awaken::Error& e) {
    std::cout << "GET  /hello trusting only the system store -> " << e.what() << "\n";
  }
}

void jose_part(const std::string& key_file) {
  using namespace awaken::jose;
  std::cout << "\n== JWS (ES256) with awaken::jose\n";
  const awaken::RedactedString pem{read_file(key_file)};
  std::cout << "signing key loaded: " << pem << " (" << pem.size() << " bytes of PEM)\n";
  const auto key = PrivateKey::from_pem(pem);
  const nlohmann::json claims = {{"iss", "awaken-demo"}, {"sub", "spiffe://example.org/demo"}, {"aud", "demo"}};
  const std::string token = sign_compact(Algorithm::es256, {{"typ", "JWT"}, {"kid", "demo-1"}}, claims.dump(), key);
  // A signed token is a bearer credential: show its size, never its text.
  std::cout << "token signed: " << token.size() << " bytes\n";

  const auto jws = CompactJws::parse(token);
  jws.verify(key.public_key());
  std::cout << "verified: alg " << to_string(jws.algorithm()) << ", kid " << jws.header()["kid"].get<std::string>()
            << ", claims " << jws.payload() << "\n";

  // Change one claim and keep the old signature.
  const std::string forged_payload =
      base64url_encode(R"({"iss":"awaken-demo","sub":"spiffe://example.org/admin","aud":"demo"})");
  const auto first_dot = token.find('.');
  const auto second_dot = token.find('.', first_dot + 1);
  const std::string forged = token.substr(0, first_dot + 1) + forged_payload + token.substr(second_dot);
  std::error_code ec;
  const bool accepted = CompactJws::parse(forged).verify(key.public_key(), ec);
  std::cout << "tampered token (sub changed): " << (accepted ? "ACCEPTED (bug!)" : "refused: " + ec.message()) << "\n";
  if (accepted) throw std::runtime_error("tampered token accepted");
}

struct Provider {
  std::string name;
  std::string scope;
  std::string kind;
};

asio::awaitable<void> broker_part(awaken::AwakenBroker& broker, std::vector<Provider> providers) {
  using clock = std::chrono::steady_clock;
  auto micros = [](clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
  std::cout << "\n== Tokens through awaken::AwakenBroker, one provider per kind of material\n";
  std::vector<awaken::IssuedToken> first;
  for (const auto& p : providers) {
    const auto start = clock::now();
    const awaken::IssuedToken token = co_await broker.token_for(p.name, p.scope);
    first.push_back(token);
    std::printf("%-22s %-26s mint  %9.1f us  %s\n", p.name.c_str(), p.kind.c_str(), micros(clock::now() - start),
                awaken::to_string(token).c_str());
  }
  for (std::size_t i = 0; i < providers.size(); ++i) {
    const auto start = clock::now();
    const awaken::IssuedToken again = co_await broker.token_for(providers[i].name, providers[i].scope);
    const auto took = clock::now() - start;
    std::printf("%-22s %-26s again %9.3f us  %s\n", providers[i].name.c_str(), "", micros(took),
                again.same_token(first[i]) ? "cache hit, the same token" : "a new token");
  }
  const auto stats = broker.stats();
  std::cout << "broker: " << stats.mint_attempts << " mints for " << 2 * providers.size() << " requests\n";
}

std::string kids(const awaken::spiffe::JwtBundleSet& set) {
  std::string out;
  for (const auto& bundle : set.bundles()) {
    out += (out.empty() ? "" : "; ") + bundle->trust_domain().name() + ":";
    for (const auto& a : bundle->authorities()) out += " " + a.key_id();
  }
  return out;
}

asio::awaitable<awaken::spiffe::JwtSource> spiffe_part(std::string endpoint, std::string rotate_url) {
  namespace spiffe = awaken::spiffe;
  using clock = std::chrono::steady_clock;
  std::cout << "\n== SPIFFE: a JwtSource on the Workload API at " << endpoint << "\n";
  const auto start = clock::now();
  auto builder = spiffe::JwtSource::builder();
  builder.endpoint(endpoint).initial_sync_timeout(std::chrono::seconds{15});
  const spiffe::JwtSource source = co_await builder.build();
  std::printf("synced in %.1f ms: %zu trust domains, keys %s (sequence %llu)\n",
              std::chrono::duration<double, std::milli>(clock::now() - start).count(), source.bundle_set()->size(),
              kids(*source.bundle_set()).c_str(), static_cast<unsigned long long>(source.sequence()));

  // Built before the co_await: GCC 12 cannot hold a braced list inside a co_await expression.
  const std::vector<std::string> audience{"demo-service"};
  const spiffe::JwtSvid svid = co_await source.fetch_jwt_svid(audience);
  std::cout << "fetched " << svid << " (kid " << svid.key_id() << ")\n";
  const auto checked = spiffe::JwtSvid::parse_and_validate(svid.token().reveal(), source, {"demo-service"});
  std::cout << "validated against the source's bundles: " << checked.spiffe_id() << "\n";
  try {
    spiffe::JwtSvid::parse_and_validate(svid.token().reveal(), source, {"another-service"});
  } catch (const awaken::Error& e) {
    std::cout << "for another audience: refused (" << e.code().message() << ")\n";
  }

  if (rotate_url.empty()) {
    std::cout << "(no --rotate-url: the rotation part needs the test peer)\n";
    co_return source;
  }
  auto updates = source.updates();
  const auto executor = co_await asio::this_coro::executor;
  awaken::http::HttpClient control{executor};
  awaken::http::HttpRequest rotate;
  rotate.method = "POST";
  rotate.url = rotate_url;
  const auto asked = clock::now();
  co_await control.send(rotate);
  const auto seq = co_await updates.changed();
  std::printf("rotation arrived %.2f ms after it was asked for: sequence %llu, keys %s\n",
              std::chrono::duration<double, std::milli>(clock::now() - asked).count(),
              static_cast<unsigned long long>(seq), kids(*source.bundle_set()).c_str());
  const spiffe::JwtSvid fresh = co_await source.fetch_jwt_svid(audience);
  spiffe::JwtSvid::parse_and_validate(fresh.token().reveal(), source, {"demo-service"});
  std::cout << "a new SVID (kid " << fresh.key_id() << ") validates; ";
  try {
    spiffe::JwtSvid::parse_and_validate(svid.token().reveal(), source, {"demo-service"});
    std::cout << "the old one still validates (bug!)\n";
  } catch (const awaken::Error& e) {
    std::cout << "the old one is refused: " << e.code().message() << "\n";
  }
  co_return source;
}

asio::awaitable<void> brokers(std::string providers_file, std::optional<awaken::spiffe::JwtSource> source);

// Parts 3 and 4: the SPIFFE story, then the tokens (the SPIFFE-backed ones from its source).
asio::awaitable<void> identity_and_tokens(std::string endpoint, std::string rotate_url, std::string providers_file) {
  std::optional<awaken::spiffe::JwtSource> source;
  if (!endpoint.empty()) source = co_await spiffe_part(std::move(endpoint), std::move(rotate_url));
  if (!providers_file.empty()) co_await brokers(std::move(providers_file), source);
  if (source) co_await source->shutdown();
}

// The broker part: one provider per entry of the file; SPIFFE-backed kinds draw on `source`.
asio::awaitable<void> brokers(std::string providers_file, std::optional<awaken::spiffe::JwtSource> source) {
  const auto executor = co_await asio::this_coro::executor;
  awaken::AwakenBroker broker{executor};
  std::vector<Provider> providers;
  {
    // The file holds secrets: its text stays in a RedactedString, wiped when dropped.
    const awaken::RedactedString text{read_file(providers_file)};
    // Not the throwing parse: its message quotes the text it choked on, which may be a secret.
    const auto doc = nlohmann::json::parse(text.reveal(), nullptr, false);
    if (!doc.is_array()) throw std::runtime_error(providers_file + " is not a JSON array");
    for (const auto& entry : doc) {
      const auto& config = entry.at("material");
      if (awaken::is_spiffe_config(config) && !source) continue;  // no Workload API in this run
      const auto material =
          source ? awaken::material_from_config(config, *source) : awaken::CredentialMaterial::from_config(config);
      providers.push_back({entry.at("name"), entry.value("scope", ""), std::string{material.kind_label()}});
      broker.register_material(providers.back().name, material);
    }
  }
  co_await broker_part(broker, std::move(providers));
}

}  // namespace

int main(int argc, char** argv) {
  constexpr const char* usage =
      "usage: awaken_demo --url https://127.0.0.1:PORT --ca-file CA.pem --signing-key KEY.pem"
      " [--providers FILE] [--workload-endpoint URI [--rotate-url URL]] [--verbose]\n";
  std::string url, ca_file, key_file, providers_file, workload_endpoint, rotate_url;
  awaken::tools::configure_logging(awaken::tools::take_flag(argc, argv, "--verbose"));
  try {
    awaken::tools::ArgReader r{argc, argv};
    while (r.next()) {
      const std::string flag = r.arg();
      if (flag == "--url")
        url = r.value();
      else if (flag == "--ca-file")
        ca_file = r.value();
      else if (flag == "--signing-key")
        key_file = r.value();
      else if (flag == "--providers")
        providers_file = r.value();
      else if (flag == "--workload-endpoint")
        workload_endpoint = r.value();
      else if (flag == "--rotate-url")
        rotate_url = r.value();
      else
        throw awaken::tools::UsageError{"unknown argument " + flag};
    }
    if (url.empty() || ca_file.empty() || key_file.empty()) throw awaken::tools::UsageError{"missing arguments"};
  } catch (const awaken::tools::UsageError& e) {
    std::cerr << "awaken_demo: " << e.what() << "\n" << usage;
    return 2;
  }
  try {
    asio::io_context io;
    awaken::http::HttpClientOptions options;
    options.ca_file = ca_file;
    awaken::tools::run_to_end(io, https_part(awaken::http::HttpClient{io.get_executor(), options}, url));
    jose_part(key_file);
    // One run for both: the source's supervisor keeps the io_context busy until it is shut down.
    awaken::tools::run_to_end(io, identity_and_tokens(workload_endpoint, rotate_url, providers_file));
  } catch (const std::exception& e) {
    std::cerr << "demo failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
