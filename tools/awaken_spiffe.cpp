// awaken-spiffe: the SPIFFE Workload API from the command line.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/experimental/wit_svid.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>
#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/workload_api.hpp>
#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_source.hpp>
#include <awaken/spiffe/x509_svid.hpp>

#include "tool_main.hpp"

namespace {

namespace spiffe = awaken::spiffe;
namespace wit = awaken::spiffe::experimental;

constexpr const char* usage = R"(Usage: awaken-spiffe [--endpoint URI] [--json] COMMAND [ARGS]

Talks to the SPIFFE Workload API at --endpoint, or at SPIFFE_ENDPOINT_SOCKET when it is not
given (unix:///absolute/path or tcp://IP:port).

Commands:
  fetch-jwt --audience A [--audience B ...] [--spiffe-id ID]
        Fetch a JWT-SVID for the audiences and print it (the token on stdout).
  validate --audience A [--agent] TOKEN
        Validate TOKEN ('-' reads it from stdin) for audience A, with the trust domain bundles
        from the Workload API, or with --agent by asking the agent (ValidateJWTSVID).
  fetch-x509 [--write DIR]
        Fetch the X.509 context once (FetchX509SVID) and list its X.509-SVIDs (SPIFFE ID, hint,
        expiry, chain length) and bundles. With --write, write into the existing directory DIR
        the files SPIRE's CLI writes: svid.N.pem (the chain), svid.N.key (the PKCS#8 key, mode
        0600), bundle.N.pem (the authorities of SVID N's trust domain) and
        federated_bundle.N.M.pem (every other trust domain's), and print their paths. Keys are
        never printed.
  validate-x509 CHAIN.pem [--bundle TRUST_DOMAIN=FILE ...]
        Verify the certificate chain in CHAIN.pem (leaf first) as a peer's X.509-SVID, against
        the given bundles (PEM or DER certificate files), or without --bundle against the X.509
        bundles of the Workload API (FetchX509Bundles). Prints the SPIFFE ID when it is valid.
  fetch-wit [--spiffe-id ID]
        (Experimental.) Fetch the WIT-SVIDs once (FetchWITSVID) and list them (SPIFFE ID, hint,
        expiry, kid, the algorithm of their key) and the WIT bundles (FetchWITBundles); with
        --json each SVID's token too. Private keys are never printed. An agent without the WIT
        profile is an error (exit 3: not offered).
  validate-wit TOKEN [--proof WPT --url URL [--access-token T]]
        (Experimental.) Validate the WIT-SVID TOKEN ('-' reads it from stdin) against the WIT
        bundles of the Workload API, as the WIT-SVID standard says. With --proof, also verify
        the workload proof token WPT of a request to URL (its origin is the service's, its path
        the request's), with the access token T the request carried, if any. A WIT-SVID is never
        accepted without its proof: without --proof only the token is checked, and the exit
        status is 4, never 0.
  bundles
        List the trust domains, their JWT key ids, key types and refresh hints, and their X.509
        authorities (subject and expiry; left out when the agent does not serve X.509 bundles).
  watch [--x509] [--count N]
        Print one line per bundle update, with what changed; with --x509, one line per X.509
        update of an X509Source (sequence, SVID, expiry, the leaf's SHA-256 prefix, bundle
        count). Stop after N updates, or on SIGINT / SIGTERM.

Options:
  --json     print JSON (one object per line for watch)
  --timeout SECONDS
             how long validate and watch wait for the Workload API's first update (default 10)
  --verbose  log awaken's work at debug level on stderr (SPDLOG_LEVEL=awaken=trace for more)
  --help     print this help

Exit codes: 0 success; 1 the token, WIT-SVID, proof or X.509-SVID is not valid; 2 bad usage (a file that cannot
be read or a directory that does not exist included); 3 the Workload API failed or could not be
reached, or a file could not be written; 4 validate-wit without --proof: the WIT-SVID is valid,
but no proof of possession was checked, so nothing was verified. Errors are one line on stderr.
)";

using awaken::tools::UsageError;

// A refusal (exit 1): a token or chain that is not valid. Its text is the whole message.
struct Refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};
Refused invalid_token(const std::string& why) { return Refused{"invalid token: " + why}; }

struct Args {
  std::optional<std::string> endpoint;
  bool json = false;
  std::string command;
  std::vector<std::string> audiences;
  std::optional<std::string> spiffe_id;
  bool agent = false;
  std::optional<int> count;
  int timeout_seconds = 10;
  bool x509 = false;
  std::optional<std::string> write_dir;
  std::vector<std::string> bundles;  // TRUST_DOMAIN=FILE
  std::optional<std::string> proof;
  std::optional<std::string> url;
  std::optional<std::string> access_token;
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
    else if (arg == "--timeout")
      a.timeout_seconds = r.number();
    else if (arg == "--x509")
      a.x509 = true;
    else if (arg == "--write")
      a.write_dir = r.value();
    else if (arg == "--bundle")
      a.bundles.push_back(r.value());
    else if (arg == "--proof")
      a.proof = r.value();
    else if (arg == "--url")
      a.url = r.value();
    else if (arg == "--access-token")
      a.access_token = r.value();
    else if (arg.rfind("--", 0) == 0)
      throw UsageError{"unknown option " + arg};
    else if (a.command.empty())
      a.command = arg;
    else
      a.positional.push_back(arg);
  }
  if (a.command.empty()) throw UsageError{"no command (try --help)"};
  if (a.timeout_seconds <= 0) throw UsageError{"--timeout needs a positive number of seconds"};
  if (a.x509 && a.command != "watch") throw UsageError{"--x509 is an option of watch"};
  if (a.write_dir && a.command != "fetch-x509") throw UsageError{"--write is an option of fetch-x509"};
  if (!a.bundles.empty() && a.command != "validate-x509") throw UsageError{"--bundle is an option of validate-x509"};
  if ((a.proof || a.url || a.access_token) && a.command != "validate-wit")
    throw UsageError{"--proof, --url and --access-token are options of validate-wit"};
  if (a.proof.has_value() != a.url.has_value()) throw UsageError{"--proof and --url go together"};
  if (a.access_token && !a.proof) throw UsageError{"--access-token needs --proof"};
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

// X.509 authorities per trust domain: {"example.org": {"authorities": [{subject, expires_at}]}}.
nlohmann::json x509_bundles_json(const spiffe::X509BundleSet& set) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& b : set.bundles()) {
    nlohmann::json authorities = nlohmann::json::array();
    for (const auto& c : b->authorities())
      authorities.push_back({{"subject", c.subject()}, {"expires_at", awaken::utc_text(c.not_after())}});
    out[b->trust_domain().name()] = {{"authorities", authorities}};
  }
  return out;
}

void print_x509_bundles(const spiffe::X509BundleSet& set) {
  for (const auto& b : set.bundles()) {
    std::cout << "x509 " << b->trust_domain().name() << "  authorities=" << b->authorities().size() << "\n";
    for (const auto& c : b->authorities())
      std::cout << "  " << c.subject() << "  expires=" << awaken::utc_text(c.not_after()) << "\n";
  }
  std::cout << std::flush;
}

// The first 16 hex digits of the SHA-256 of a certificate's DER: tells leaves apart.
std::string der_digest(const spiffe::Certificate& c) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  const auto der = c.der();
  if (EVP_Digest(der.data(), der.size(), md, &n, EVP_sha256(), nullptr) != 1 || n < 8)
    throw std::runtime_error("SHA-256 failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < 8; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 0xf];
  }
  return out;
}

// The name of a spiffe_errc that X.509-SVID verification reports; the number for any other code.
nlohmann::json code_name(std::error_code ec) {
  if (ec.category() == awaken::spiffe_category()) {
    using E = awaken::spiffe_errc;
    switch (static_cast<E>(ec.value())) {
      case E::bundle_not_found: return "bundle_not_found";
      case E::invalid_certificate: return "invalid_certificate";
      case E::invalid_chain: return "invalid_chain";
      case E::unsupported_key: return "unsupported_key";
      case E::missing_uri_san: return "missing_uri_san";
      case E::multiple_uri_sans: return "multiple_uri_sans";
      case E::invalid_uri_san: return "invalid_uri_san";
      case E::root_path_id: return "root_path_id";
      case E::leaf_is_ca: return "leaf_is_ca";
      case E::missing_key_usage: return "missing_key_usage";
      case E::key_usage_not_critical: return "key_usage_not_critical";
      case E::missing_digital_signature: return "missing_digital_signature";
      case E::leaf_has_key_cert_sign: return "leaf_has_key_cert_sign";
      case E::leaf_has_crl_sign: return "leaf_has_crl_sign";
      case E::signer_not_ca: return "signer_not_ca";
      case E::signer_missing_key_cert_sign: return "signer_missing_key_cert_sign";
      case E::certificate_expired: return "certificate_expired";
      case E::certificate_not_yet_valid: return "certificate_not_yet_valid";
      case E::no_authorities: return "no_authorities";
      case E::leaf_is_authority: return "leaf_is_authority";
      case E::untrusted_chain: return "untrusted_chain";
      default: break;
    }
  }
  return ec.value();
}

// A file the user named, read whole (at most `max_bytes`): a UsageError when it cannot be.
std::string read_input_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw UsageError{"cannot read " + path + ": " + std::strerror(errno)};
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_bytes) throw UsageError{path + " is over " + std::to_string(max_bytes) + " bytes"};
  return text;
}

// --bundle TRUST_DOMAIN=FILE ...: a bundle set, or a UsageError naming the argument at fault.
spiffe::X509BundleSet bundles_from_files(const std::vector<std::string>& specs) {
  std::vector<spiffe::X509Bundle> bundles;
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw UsageError{"--bundle needs TRUST_DOMAIN=FILE, not '" + spec + "'"};
    try {
      bundles.push_back(spiffe::X509Bundle::load(spiffe::TrustDomain::parse(spec.substr(0, eq)), spec.substr(eq + 1)));
    } catch (const std::exception& e) {
      throw UsageError{"--bundle " + spec + ": " + e.what()};
    }
  }
  try {
    return spiffe::X509BundleSet{std::move(bundles)};
  } catch (const std::exception& e) {
    throw UsageError{std::string{"--bundle: "} + e.what()};  // two for one trust domain
  }
}

// A certificate file: public, the process's default mode.
std::string write_public(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
  return path.string();
}

// A private key file: mode 0600 from its creation, so the key is never readable by others, not
// even for a moment. A file that already exists keeps its mode through O_TRUNC: it is narrowed
// while still empty, before any byte of the key is written. No symbolic link is followed.
std::string write_private(const std::filesystem::path& path, const awaken::RedactedString& pem) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + name + ": " + std::strerror(errno));
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string{what} + " " + name + ": " + std::strerror(err));
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("cannot stat");
  if ((st.st_mode & 077) != 0 && ::fchmod(fd, 0600) != 0) fail("cannot restrict the mode of");
  const std::string_view bytes = pem.reveal();
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) throw std::runtime_error("cannot write " + name + ": " + std::strerror(errno));
  return name;
}

// The files of SPIRE's `api fetch x509 -write DIR`; returns their paths in the order written.
std::vector<std::string> write_context(const spiffe::X509Context& context, const std::filesystem::path& dir) {
  std::vector<std::string> written;
  for (std::size_t n = 0; n < context.svids.size(); ++n) {
    const auto& svid = context.svids[n];
    const std::string index = std::to_string(n);
    written.push_back(write_public(dir / ("svid." + index + ".pem"), svid.chain_pem()));
    written.push_back(write_private(dir / ("svid." + index + ".key"), svid.private_key_pem()));
    const std::string& own = svid.spiffe_id().trust_domain().name();
    if (const auto* bundle = context.bundles.find(own))
      written.push_back(write_public(dir / ("bundle." + index + ".pem"), bundle->to_pem()));
    std::size_t m = 0;
    for (const auto& b : context.bundles.bundles()) {
      if (b->trust_domain().name() == own) continue;
      written.push_back(
          write_public(dir / ("federated_bundle." + index + "." + std::to_string(m++) + ".pem"), b->to_pem()));
    }
  }
  return written;
}

void print_x509_context(const spiffe::X509Context& context, const std::vector<std::string>& written, bool json,
                        bool wrote) {
  if (json) {
    nlohmann::json svids = nlohmann::json::array();
    for (const auto& s : context.svids)
      svids.push_back({{"spiffe_id", s.spiffe_id().str()},
                       {"hint", s.hint()},
                       {"expires_at", awaken::utc_text(s.expires_at())},
                       {"chain_length", s.chain().size()}});
    nlohmann::json bundles = nlohmann::json::array();
    for (const auto& b : context.bundles.bundles())
      bundles.push_back({{"trust_domain", b->trust_domain().name()}, {"authorities", b->authorities().size()}});
    nlohmann::json out{{"svids", svids}, {"bundles", bundles}};
    if (wrote) out["written"] = written;
    std::cout << out.dump() << std::endl;
    return;
  }
  for (std::size_t i = 0; i < context.svids.size(); ++i) {
    const auto& s = context.svids[i];
    std::cout << "svid " << i << "  " << s.spiffe_id() << "  hint=" << s.hint()
              << "  expires=" << awaken::utc_text(s.expires_at()) << "  chain=" << s.chain().size() << "\n";
  }
  for (const auto& b : context.bundles.bundles())
    std::cout << "bundle " << b->trust_domain().name() << "  authorities=" << b->authorities().size() << "\n";
  for (const auto& path : written) std::cout << "wrote " << path << "\n";
  std::cout << std::flush;
}

// One line of `watch --x509`: the served SVID, its leaf, the bundles.
void print_x509_update(std::uint64_t sequence, const spiffe::X509Source& source, bool json) {
  const auto svid = source.svid();
  const auto bundles = source.bundle_set();
  if (json)
    std::cout << nlohmann::json{{"sequence", sequence},
                                {"spiffe_id", svid->spiffe_id().str()},
                                {"expires_at", awaken::utc_text(svid->expires_at())},
                                {"leaf_sha256", der_digest(svid->leaf())},
                                {"bundles", bundles->size()}}
                     .dump()
              << std::endl;
  else
    std::cout << "sequence " << sequence << ": " << svid->spiffe_id()
              << "  expires=" << awaken::utc_text(svid->expires_at()) << "  leaf_sha256=" << der_digest(svid->leaf())
              << "  bundles=" << bundles->size() << std::endl;
}

asio::awaitable<spiffe::JwtSource> source_for(const Args& a) {
  auto builder = spiffe::JwtSource::builder();
  builder.endpoint(endpoint_of(a)).initial_sync_timeout(std::chrono::seconds{a.timeout_seconds});
  co_return co_await builder.build();
}

std::string read_token(const Args& a) {
  if (a.positional.size() != 1) throw UsageError{a.command + " needs exactly one TOKEN"};
  std::string token = a.positional[0];
  if (token == "-") std::getline(std::cin, token);
  return token;
}

// Locals are initialised in statements of their own, never inside a co_await expression: GCC 12
// mishandles temporaries there.

// Calls `print` with each update's sequence until `count` updates were printed or SIGINT /
// SIGTERM shuts `source` down; then shuts it down.
template <class Source, class Updates, class Print>
asio::awaitable<void> watch(const Source& source, Updates updates, std::optional<int> count, Print print) {
  const auto executor = co_await asio::this_coro::executor;
  asio::signal_set signals{executor, SIGINT, SIGTERM};
  signals.async_wait([source, executor](std::error_code ec, int) {
    if (!ec) asio::co_spawn(executor, source.shutdown(), [](std::exception_ptr) {});
  });
  for (int seen = 0; !count || seen < *count; ++seen) {
    std::uint64_t seq = 0;
    try {
      seq = co_await updates.changed();
    } catch (const awaken::Error& e) {
      if (e.code() == awaken::spiffe_errc::source_closed) break;  // a signal
      throw;
    }
    print(seq);
  }
  signals.cancel();
  co_await source.shutdown();
}

asio::awaitable<int> fetch_jwt(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
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

asio::awaitable<int> validate_jwt(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
  if (a.audiences.size() != 1) throw UsageError{"validate needs one --audience"};
  const std::string token = read_token(a);
  if (a.agent) {
    const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
    spiffe::AgentValidation verdict;
    try {
      verdict = co_await client.validate_jwt_svid(a.audiences[0], token);
    } catch (const awaken::Error& e) {
      if (e.code() != awaken::grpc_status::invalid_argument) throw;
      throw invalid_token(e.details().server_message.empty() ? e.what() : e.details().server_message);
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
  if (!svid) throw invalid_token(refusal);
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

asio::awaitable<int> fetch_x509(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
  if (!a.positional.empty()) throw UsageError{"fetch-x509 takes no arguments"};
  std::error_code ec;
  if (a.write_dir && !std::filesystem::is_directory(*a.write_dir, ec))
    throw UsageError{"--write: " + *a.write_dir + " is not a directory"};
  const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
  const spiffe::X509Context context = co_await client.fetch_x509_context();
  std::vector<std::string> written;
  if (a.write_dir) written = write_context(context, *a.write_dir);
  print_x509_context(context, written, a.json, a.write_dir.has_value());
  co_return 0;
}

asio::awaitable<int> validate_x509(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
  if (a.positional.size() != 1) throw UsageError{"validate-x509 needs exactly one CHAIN.pem"};
  // PEM of the longest chain accepted, with room for text around the blocks.
  const std::string chain_pem =
      read_input_file(a.positional[0], 2 * spiffe::max_x509_chain_length * spiffe::Certificate::max_der_bytes);
  spiffe::X509BundleSet bundles;
  if (!a.bundles.empty()) {
    bundles = bundles_from_files(a.bundles);
  } else {
    const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
    bundles = co_await client.fetch_x509_bundles();
  }
  std::optional<spiffe::VerifiedX509Svid> verified;
  std::optional<awaken::Error> refusal;
  std::size_t chain_length = 0;
  try {
    const auto chain = spiffe::Certificate::parse_pem(chain_pem, spiffe::max_x509_chain_length);
    chain_length = chain.size();
    verified = spiffe::verify_x509_svid(chain, bundles);
  } catch (const awaken::Error& e) {
    refusal = e;
  }
  if (refusal) {
    if (a.json)
      std::cout << nlohmann::json{{"valid", false},
                                  {"error", refusal->code().message()},
                                  {"code", code_name(refusal->code())},
                                  {"detail", refusal->what()}}
                       .dump()
                << std::endl;
    throw Refused{std::string{"invalid X.509-SVID: "} + refusal->what()};
  }
  if (a.json)
    std::cout << nlohmann::json{{"valid", true},
                                {"spiffe_id", verified->spiffe_id.str()},
                                {"chain_length", chain_length},
                                {"anchor", verified->chain.empty() ? "" : verified->chain.back().subject()}}
                     .dump()
              << std::endl;
  else
    std::cout << "valid: " << verified->spiffe_id << ", chain of " << chain_length << ", anchored at "
              << (verified->chain.empty() ? "?" : verified->chain.back().subject()) << std::endl;
  co_return 0;
}

asio::awaitable<int> fetch_wit(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
  if (!a.positional.empty()) throw UsageError{"fetch-wit takes no arguments"};
  std::optional<spiffe::SpiffeId> id;
  if (a.spiffe_id) id = spiffe::SpiffeId::parse(*a.spiffe_id);
  const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
  const std::vector<wit::WitSvid> svids = co_await client.fetch_wit_svids(id);
  const spiffe::JwtBundleSet bundles = co_await client.fetch_wit_bundles();
  if (a.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : svids)
      list.push_back({{"spiffe_id", s.spiffe_id().str()},
                      {"hint", s.hint()},
                      {"expiry", awaken::utc_text(s.expiry())},
                      {"kid", s.key_id()},
                      {"key_alg", awaken::jose::to_string(s.confirmation_algorithm())},
                      {"token", s.token().reveal()}});
    std::cout << nlohmann::json{{"svids", list}, {"bundles", bundles_json(bundles)}}.dump() << std::endl;
  } else {
    for (std::size_t i = 0; i < svids.size(); ++i)
      std::cout << "wit " << i << "  " << svids[i].spiffe_id() << "  hint=" << svids[i].hint()
                << "  expires=" << awaken::utc_text(svids[i].expiry()) << "  kid=" << svids[i].key_id()
                << "  key_alg=" << awaken::jose::to_string(svids[i].confirmation_algorithm()) << "\n";
    print_bundles(bundles, false);
  }
  co_return 0;
}

asio::awaitable<int> validate_wit(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
  const std::string token = read_token(a);
  const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
  spiffe::JwtBundleSet fetched = co_await client.fetch_wit_bundles();
  const auto bundles = std::make_shared<const spiffe::JwtBundleSet>(std::move(fetched));
  std::optional<wit::WitSvid> svid;
  std::string refusal;
  try {
    auto validated = wit::WitSvid::parse_and_validate(token, *bundles);
    if (!a.proof) svid = std::move(validated);
    if (a.proof) {
      const std::string_view url = *a.url;
      const auto scheme = url.find("://");
      const auto path_at =
          scheme == std::string_view::npos ? std::string_view::npos : url.find_first_of("/?#", scheme + 3);
      wit::WptVerifierOptions options;
      options.origins = {std::string{url.substr(0, path_at)}};
      const wit::WptVerifier verifier{bundles, options};
      const std::string_view wits[] = {token};
      const std::string_view wpts[] = {*a.proof};
      const std::string_view path =
          path_at == std::string_view::npos || url[path_at] != '/' ? "/" : url.substr(path_at);
      svid = verifier.verify({wits, wpts, path, a.access_token.value_or("")}).wit;
    }
  } catch (const awaken::Error& e) {
    refusal = e.what();
  }
  if (!svid) throw Refused{std::string{a.proof ? "invalid WIT-SVID or proof: " : "invalid WIT-SVID: "} + refusal};
  // The standard never accepts a WIT-SVID without its proof: a token checked alone is not a
  // verified request, and its exit status must not read as one.
  const bool verified = a.proof.has_value();
  if (a.json)
    std::cout << nlohmann::json{{"spiffe_id", svid->spiffe_id().str()},
                                {"expiry", awaken::utc_text(svid->expiry())},
                                {"kid", svid->key_id()},
                                {"key_alg", awaken::jose::to_string(svid->confirmation_algorithm())},
                                {"wit_svid_valid", true},
                                {"proof_checked", verified},
                                {"verified", verified}}
                     .dump()
              << std::endl;
  else if (verified)
    std::cout << "verified: WIT-SVID and its proof valid: " << svid->spiffe_id() << ", kid " << svid->key_id()
              << ", expires " << awaken::utc_text(svid->expiry()) << std::endl;
  else
    std::cout << "not verified: the WIT-SVID is valid (" << svid->spiffe_id() << ", kid " << svid->key_id()
              << ", expires " << awaken::utc_text(svid->expiry())
              << ") but no proof of possession was checked (give --proof and --url)" << std::endl;
  co_return verified ? 0 : 4;
}

asio::awaitable<int> list_bundles(const Args& a) {
  const auto executor = co_await asio::this_coro::executor;
  const spiffe::WorkloadApiClient client{executor, endpoint_of(a)};
  const spiffe::JwtBundleSet set = co_await client.fetch_jwt_bundles();
  std::optional<spiffe::X509BundleSet> x509;
  try {
    x509 = co_await client.fetch_x509_bundles();
  } catch (const awaken::Error& e) {
    if (e.code() != awaken::grpc_status::unimplemented) throw;  // an agent without X.509: JWT only
  }
  if (a.json) {
    nlohmann::json out = bundles_json(set);
    if (x509) out["x509"] = x509_bundles_json(*x509);
    std::cout << out.dump() << std::endl;
  } else {
    print_bundles(set, false);
    if (x509) print_x509_bundles(*x509);
  }
  co_return 0;
}

asio::awaitable<int> watch_x509(const Args& a) {
  auto builder = spiffe::X509Source::builder();
  builder.endpoint(endpoint_of(a)).initial_sync_timeout(std::chrono::seconds{a.timeout_seconds});
  const spiffe::X509Source source = co_await builder.build();
  auto updates = source.updates();
  print_x509_update(updates.last(), source, a.json);
  co_await watch(source, std::move(updates), a.count,
                 [&](std::uint64_t seq) { print_x509_update(seq, source, a.json); });
  co_return 0;
}

asio::awaitable<int> watch_jwt(const Args& a) {
  const spiffe::JwtSource source = co_await source_for(a);
  auto updates = source.updates();
  auto current = source.bundle_set();
  if (a.json)
    std::cout << nlohmann::json{{"sequence", updates.last()}, {"bundles", bundles_json(*current)}}.dump() << std::endl;
  else
    std::cout << "sequence " << updates.last() << ": " << changes(spiffe::JwtBundleSet{}, *current) << std::endl;
  co_await watch(source, std::move(updates), a.count, [&](std::uint64_t seq) {
    auto next = source.bundle_set();
    if (a.json)
      std::cout << nlohmann::json{{"sequence", seq}, {"changes", changes(*current, *next)}}.dump() << std::endl;
    else
      std::cout << "sequence " << seq << ": " << changes(*current, *next) << std::endl;
    current = std::move(next);
  });
  co_return 0;
}

// The commands, by name; `watch --x509` follows the X.509 context instead of the JWT bundles.
// Each takes the arguments by reference: `run` owns them and awaits the command.
using Command = asio::awaitable<int> (*)(const Args&);
constexpr std::pair<std::string_view, Command> commands[] = {
    {"fetch-jwt", fetch_jwt},         {"validate", validate_jwt}, {"fetch-x509", fetch_x509},
    {"validate-x509", validate_x509}, {"fetch-wit", fetch_wit},   {"validate-wit", validate_wit},
    {"bundles", list_bundles},        {"watch", watch_jwt},
};

asio::awaitable<int> run(Args a) {
  if (a.command == "watch" && a.x509) co_return co_await watch_x509(a);
  for (const auto& [name, command] : commands)
    if (a.command == name) co_return co_await command(a);
  throw UsageError{"unknown command '" + a.command + "' (try --help)"};
}

}  // namespace

int main(int argc, char** argv) {
  return awaken::tools::tool_main<Refused>(argc, argv, "awaken-spiffe", usage, [&] { return run(parse(argc, argv)); });
}
