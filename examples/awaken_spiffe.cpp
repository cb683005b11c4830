// awaken-spiffe: the SPIFFE Workload API from the command line.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "tool_main.hpp"

namespace {

namespace spiffe = awaken::spiffe;

constexpr const char* usage = R"(Usage: awaken-spiffe [--endpoint URI] [--json] COMMAND [ARGS]

Talks to the SPIFFE Workload API at --endpoint, or at SPIFFE_ENDPOINT_SOCKET when it is not
given (unix:///absolute/path or tcp://IP:port).

Commands:
  fetch-jwt --audience A [--audience B ...] [--spiffe-id ID]
        Fetch a JWT-SVID for the audiences and print it (the token on stdout).
  validate --audience A [--agent] TOKEN
        Validate TOKEN ('-' reads it from stdin) for audience A, with the trust domain bundles
        from the Workload API, or with --agent by asking the agent (ValidateJWTSVID).
  bundles
        List the trust domains, their JWT key ids, key types and refresh hints.
  watch [--count N]
        Print one line per bundle update, with what changed; stop after N updates, or on
        SIGINT / SIGTERM.

Options:
  --json     print JSON (one object per line for watch)
  --verbose  log awaken's work at debug level on stderr (SPDLOG_LEVEL=awaken=trace for more)
  --help     print this help

Exit codes: 0 success; 1 the token is not valid; 2 bad usage; 3 the Workload API failed or
could not be reached. Errors are one line on stderr.
)";

using awaken::tools::UsageError;

struct InvalidToken : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::optional<std::string> endpoint;
  bool json = false;
  std::string command;
  std::vector<std::string> audiences;
  std::optional<std::string> spiffe_id;
  bool agent = false;
  std::optional<int> count;
  std::vector<std::string> positional;
};

Args parse(int argc, char** argv) {
  Args a;
  awaken::tools::ArgReader r{argc, argv};
  while (r.next()) {
    const std::string arg = r.arg();
    if (arg == "--endpoint")
      a.endpoint = r.value();
    else if (arg == "--json")
      a.json = true;
    else if (arg == "--audience")
      a.audiences.push_back(r.value());
    else if (arg == "--spiffe-id")
      a.spiffe_id = r.value();
    else if (arg == "--agent")
      a.agent = true;
    else if (arg == "--count")
      a.count = r.number();
    else if (arg.rfind("--", 0) == 0)
      throw UsageError{"unknown option " + arg};
    else if (a.command.empty())
      a.command = arg;
    else
      a.positional.push_back(arg);
  }
  if (a.command.empty()) throw UsageError{"no command (try --help)"};
  return a;
}

spiffe::WorkloadEndpoint endpoint_of(const Args& a) {
  return a.endpoint ? spiffe::WorkloadEndpoint::parse(*a.endpoint) : spiffe::WorkloadEndpoint::from_environment();
}

std::string key_kind(const spiffe::JwtAuthority& a) {
  using awaken::jose::Curve;
  switch (a.key().curve()) {
    case Curve::p256: return "EC P-256 (ES256)";
    case Curve::p384: return "EC P-384 (ES384)";
    case Curve::p521: return "EC P-521 (ES512)";
    case Curve::none: break;
  }
  return "RSA " + std::to_string(a.key().bits()) + " (RS/PS 256/384/512)";
}

nlohmann::json bundles_json(const spiffe::JwtBundleSet& set) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& b : set.bundles()) {
    nlohmann::json keys = nlohmann::json::array();
    for (const auto& a : b->authorities()) keys.push_back({{"kid", a.key_id()}, {"key", key_kind(a)}});
    nlohmann::json entry{{"keys", keys}};
    if (b->refresh_hint()) entry["refresh_hint_seconds"] = b->refresh_hint()->count();
    if (b->sequence()) entry["sequence"] = *b->sequence();
    out[b->trust_domain().name()] = entry;
  }
  return out;
}

void print_bundles(const spiffe::JwtBundleSet& set, bool json) {
  if (json) {
    std::cout << bundles_json(set).dump() << std::endl;
    return;
  }
  for (const auto& b : set.bundles()) {
    std::cout << b->trust_domain().name();
    if (b->refresh_hint()) std::cout << "  refresh_hint=" << b->refresh_hint()->count() << "s";
    if (b->sequence()) std::cout << "  sequence=" << *b->sequence();
    std::cout << "\n";
    for (const auto& a : b->authorities()) std::cout << "  " << a.key_id() << "  " << key_kind(a) << "\n";
  }
  std::cout << std::flush;
}

// "example.org: +k2 -k1; other.org: removed" between two sets.
std::string changes(const spiffe::JwtBundleSet& before, const spiffe::JwtBundleSet& after) {
  std::string out;
  auto add = [&](const std::string& text) { out += (out.empty() ? "" : "; ") + text; };
  for (const auto& b : after.bundles()) {
    const auto* old = before.find(b->trust_domain().name());
    if (old == nullptr) {
      add(b->trust_domain().name() + ": added");
      continue;
    }
    std::string diff;
    for (const auto& a : b->authorities())
      if (old->find_authority(a.key_id()) == nullptr) diff += " +" + a.key_id();
    for (const auto& a : old->authorities())
      if (b->find_authority(a.key_id()) == nullptr) diff += " -" + a.key_id();
    if (!diff.empty())
      add(b->trust_domain().name() + ":" + diff);
    else if (!(*old == *b))
      add(b->trust_domain().name() + ": parameters changed");
  }
  for (const auto& b : before.bundles())
    if (after.find(b->trust_domain().name()) == nullptr) add(b->trust_domain().name() + ": removed");
  return out.empty() ? "no change" : out;
}

asio::awaitable<spiffe::JwtSource> source_for(const Args& a) {
  auto builder = spiffe::JwtSource::builder();
  builder.endpoint(endpoint_of(a)).initial_sync_timeout(std::chrono::seconds{30});
  co_return co_await builder.build();
}

std::string read_token(const Args& a) {
  if (a.positional.size() != 1) throw UsageError{"validate needs exactly one TOKEN"};
  std::string token = a.positional[0];
  if (token == "-") std::getline(std::cin, token);
  return token;
}

// Locals are initialised in statements of their own, never inside a co_await expression: GCC 12
// mishandles temporaries there.
// `a` by value: the coroutine outlives the caller's Args.
asio::awaitable<int> run(Args a) {
  const auto executor = co_await asio::this_coro::executor;
  if (a.command == "fetch-jwt") {
    if (a.audiences.empty()) throw UsageError{"fetch-jwt needs --audience"};
    std::optional<spiffe::SpiffeId> id;
    if (a.spiffe_id) id = spiffe::SpiffeId::parse(*a.spiffe_id);
    const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
    const spiffe::JwtSvid svid = co_await client.fetch_jwt_svid(a.audiences, id);
    if (a.json) {
      std::cout << nlohmann::json{{"spiffe_id", svid.spiffe_id().str()},
                                  {"audience", svid.audience()},
                                  {"expiry", awaken::utc_text(svid.expiry())},
                                  {"hint", svid.hint()},
                                  {"token", svid.token().reveal()}}
                       .dump()
                << std::endl;
    } else {
      std::cout << svid.token().reveal() << std::endl;
    }
    co_return 0;
  }
  if (a.command == "validate") {
    if (a.audiences.size() != 1) throw UsageError{"validate needs one --audience"};
    const std::string token = read_token(a);
    if (a.agent) {
      const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
      spiffe::AgentValidation verdict;
      try {
        verdict = co_await client.validate_jwt_svid(a.audiences[0], token);
      } catch (const awaken::Error& e) {
        if (e.code() != awaken::grpc_status::invalid_argument) throw;
        throw InvalidToken{e.details().server_message.empty() ? e.what() : e.details().server_message};
      }
      if (a.json)
        std::cout << nlohmann::json{{"spiffe_id", verdict.spiffe_id.str()}, {"claims", verdict.claims}}.dump()
                  << std::endl;
      else
        std::cout << "valid (agent): " << verdict.spiffe_id << "\n" << verdict.claims.dump(2) << std::endl;
      co_return 0;
    }
    const spiffe::JwtSource source = co_await source_for(a);
    std::optional<spiffe::JwtSvid> svid;
    std::string refusal;
    try {
      svid = spiffe::JwtSvid::parse_and_validate(token, source, std::vector<std::string>{a.audiences[0]});
    } catch (const awaken::Error& e) {
      refusal = e.what();
    }
    co_await source.shutdown();
    if (!svid) throw InvalidToken{refusal};
    if (a.json)
      std::cout << nlohmann::json{{"spiffe_id", svid->spiffe_id().str()},
                                  {"audience", svid->audience()},
                                  {"expiry", awaken::utc_text(svid->expiry())},
                                  {"kid", svid->key_id()}}
                       .dump()
                << std::endl;
    else
      std::cout << "valid: " << svid->spiffe_id() << ", kid " << svid->key_id() << ", expires "
                << awaken::utc_text(svid->expiry()) << std::endl;
    co_return 0;
  }
  if (a.command == "bundles") {
    const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
    const spiffe::JwtBundleSet set = co_await client.fetch_jwt_bundles();
    print_bundles(set, a.json);
    co_return 0;
  }
  if (a.command == "watch") {
    const spiffe::JwtSource source = co_await source_for(a);
    auto updates = source.updates();
    auto current = source.bundle_set();
    if (a.json)
      std::cout << nlohmann::json{{"sequence", updates.last()}, {"bundles", bundles_json(*current)}}.dump()
                << std::endl;
    else
      std::cout << "sequence " << updates.last() << ": " << changes(spiffe::JwtBundleSet{}, *current) << std::endl;
    asio::signal_set signals{executor, SIGINT, SIGTERM};
    signals.async_wait([source, executor](std::error_code ec, int) {
      if (!ec) asio::co_spawn(executor, source.shutdown(), [](std::exception_ptr) {});
    });
    for (int seen = 0; !a.count || seen < *a.count; ++seen) {
      std::uint64_t seq = 0;
      try {
        seq = co_await updates.changed();
      } catch (const awaken::Error& e) {
        if (e.code() == awaken::spiffe_errc::source_closed) break;  // a signal
        throw;
      }
      auto next = source.bundle_set();
      if (a.json)
        std::cout << nlohmann::json{{"sequence", seq}, {"changes", changes(*current, *next)}}.dump() << std::endl;
      else
        std::cout << "sequence " << seq << ": " << changes(*current, *next) << std::endl;
      current = std::move(next);
    }
    signals.cancel();
    co_await source.shutdown();
    co_return 0;
  }
  throw UsageError{"unknown command '" + a.command + "' (try --help)"};
}

}  // namespace

int main(int argc, char** argv) {
  if (awaken::tools::wants_help(argc, argv)) {
    std::cout << usage;
    return 0;
  }
  awaken::tools::configure_logging(awaken::tools::take_flag(argc, argv, "--verbose"));
  return awaken::tools::run_tool<InvalidToken>("awaken-spiffe",
                                               "invalid token: ", [&] { return run(parse(argc, argv)); });
}
