// The Workload API client: endpoint parsing, its calls and streams, and the WIT-SVID profile.
// What the messages decode to is workload_messages.cpp's.
#include <awaken/error.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <map>
#include <unordered_set>

#include <asio/post.hpp>

#include <awaken/jose/keys.hpp>

#include "core/url_text.hpp"
#include "core/wipe.hpp"
#include "spiffe/workload/workload_messages.hpp"
#include "spiffe/workload/workload_proto.hpp"

namespace awaken::spiffe {
namespace {

using awaken::detail::WipeOnExit;
using detail::to_bundle_set;
using detail::to_wit_bundle_set;
using detail::to_wit_svids;
using detail::to_x509_bundle_set;
using detail::to_x509_context;

using awaken::detail::starts_with_nocase;

constexpr std::string_view fetch_jwt_svid_path = "/SpiffeWorkloadAPI/FetchJWTSVID";
constexpr std::string_view fetch_jwt_bundles_path = "/SpiffeWorkloadAPI/FetchJWTBundles";
constexpr std::string_view validate_jwt_svid_path = "/SpiffeWorkloadAPI/ValidateJWTSVID";
constexpr std::string_view fetch_x509_svid_path = "/SpiffeWorkloadAPI/FetchX509SVID";
constexpr std::string_view fetch_x509_bundles_path = "/SpiffeWorkloadAPI/FetchX509Bundles";
constexpr std::string_view fetch_wit_svid_path = "/SpiffeWorkloadAPI/FetchWITSVID";
constexpr std::string_view fetch_wit_bundles_path = "/SpiffeWorkloadAPI/FetchWITBundles";

[[noreturn]] void bad_endpoint(std::string_view uri, const std::string& why) {
  throw_error(spiffe_errc::invalid_endpoint, "Workload API endpoint '" + bounded_excerpt(uri, 200) + "': " + why);
}

http::GrpcChannelOptions channel_options(const WorkloadApiOptions& o) {
  http::GrpcChannelOptions c;
  c.max_message_bytes = o.max_message_bytes;
  c.metadata.push_back({"workload.spiffe.io", "true"});
  c.server_name = "Workload API";
  c.keepalive_interval = o.keepalive_interval;
  c.keepalive_timeout = o.keepalive_timeout;
  return c;
}

}  // namespace

WorkloadEndpoint WorkloadEndpoint::parse(std::string_view uri) {
  for (char c : uri)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) bad_endpoint(uri, "contains a space or control byte");
  if (uri.find_first_of("?#") != std::string_view::npos) bad_endpoint(uri, "must not have a query or fragment");
  if (uri.find('%') != std::string_view::npos) bad_endpoint(uri, "must not use percent-encoding");
  WorkloadEndpoint e;
  e.uri_ = std::string{uri};
  if (starts_with_nocase(uri, "unix:")) {
    if (!starts_with_nocase(uri, "unix://")) bad_endpoint(uri, "a unix endpoint is unix:///absolute/path");
    const std::string_view rest = uri.substr(7);
    if (rest.empty() || rest.front() != '/') bad_endpoint(uri, "a unix endpoint must not have an authority");
    if (rest == "/" || rest.back() == '/') bad_endpoint(uri, "a unix endpoint needs the path of a socket");
    if (rest.size() >= sizeof(sockaddr_un{}.sun_path))
      bad_endpoint(uri, "the socket path is too long for a unix socket");
    e.unix_path_ = std::string{rest};
    return e;
  }
  if (starts_with_nocase(uri, "tcp:")) {
    if (!starts_with_nocase(uri, "tcp://")) bad_endpoint(uri, "a tcp endpoint is tcp://IP:port");
    const std::string_view rest = uri.substr(6);
    if (rest.find('/') != std::string_view::npos) bad_endpoint(uri, "a tcp endpoint must not have a path");
    if (rest.find('@') != std::string_view::npos) bad_endpoint(uri, "a tcp endpoint must not have user info");
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == rest.size()) bad_endpoint(uri, "a tcp endpoint needs a port");
    std::string host{rest.substr(0, colon)};
    const std::string_view port_text = rest.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
      bad_endpoint(uri, "the port is not a number from 1 to 65535");
    unsigned char addr[16];
    const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
    const bool ok = v6 ? ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), addr) == 1
                       : ::inet_pton(AF_INET, host.c_str(), addr) == 1;
    if (!ok) bad_endpoint(uri, "the host must be an IP address (IPv6 in brackets), not a name");
    e.host_ = std::move(host);
    e.port_ = static_cast<std::uint16_t>(port);
    return e;
  }
  bad_endpoint(uri, "the scheme must be unix or tcp");
}

WorkloadEndpoint WorkloadEndpoint::from_environment() {
  const char* value = std::getenv("SPIFFE_ENDPOINT_SOCKET");
  if (value == nullptr || *value == '\0') throw_error(spiffe_errc::endpoint_not_configured, "Workload API endpoint");
  return parse(value);
}

http::GrpcTarget WorkloadEndpoint::grpc_target() const {
  return is_unix() ? http::GrpcTarget::unix_socket(unix_path_) : http::GrpcTarget::tcp(host_, port_);
}

namespace {
bool says_no_identity_issued(std::error_code ec, const ErrorDetails& details) noexcept {
  return ec == grpc_status::permission_denied && details.server_message.find("no identity issued") != std::string::npos;
}
}  // namespace

bool is_no_identity_issued(std::error_code ec, const Diagnostics& diagnostics) noexcept {
  return says_no_identity_issued(ec, diagnostics.details);
}

bool is_no_identity_issued(const Error& e) noexcept { return says_no_identity_issued(e.code(), e.details()); }

namespace {
// Runs a message decoder at the boundary of the stream: its failure becomes a code and
// diagnostics (the decoders are the parsers of identity documents, which report by `Error`).
template <class Value, class Decode>
std::error_code decode_into(Decode decode, std::optional<Value>& out, Diagnostics& diagnostics) noexcept {
  try {
    out.emplace(decode());
    return {};
  } catch (...) {
    auto [ec, d] = classify_exception(std::current_exception());
    diagnostics = std::move(d);
    return ec;
  }
}

// How each stream's messages decode: the decoder, whether the message holds private keys (and is
// wiped once decoded), and for the optional WIT profile the method its refusal names.
constexpr char fetch_wit_svid[] = "FetchWITSVID";
constexpr char fetch_wit_bundles[] = "FetchWITBundles";
template <auto Decoder, bool Secret, const char* WitMethod = nullptr>
struct Decoding {
  static constexpr bool secret = Secret;
  static constexpr const char* wit_method = WitMethod;
  template <class Value>
  static std::error_code decode(const std::string& m, const ResourceLimits& l, std::optional<Value>& out,
                                Diagnostics& d) noexcept {
    return decode_into([&] { return Decoder(m, l); }, out, d);
  }
};
template <StreamKind Kind>
struct StreamDecoding;
template <>
struct StreamDecoding<StreamKind::jwt_bundles> : Decoding<&to_bundle_set, false> {};
template <>
struct StreamDecoding<StreamKind::x509_context> : Decoding<&to_x509_context, true> {};
template <>
struct StreamDecoding<StreamKind::x509_bundles> : Decoding<&to_x509_bundle_set, false> {};
template <>
struct StreamDecoding<StreamKind::wit_svids> : Decoding<&to_wit_svids, true, fetch_wit_svid> {};
template <>
struct StreamDecoding<StreamKind::wit_bundles> : Decoding<&to_wit_bundle_set, false, fetch_wit_bundles> {};
}  // namespace

namespace {

// A message on its way to its decoder, wiped if it is dropped undecoded (it may hold private
// keys).
struct PendingMessage {
  std::optional<std::string> text;
  explicit PendingMessage(std::optional<std::string> t) noexcept : text(std::move(t)) {}
  PendingMessage(PendingMessage&&) noexcept = default;
  PendingMessage(const PendingMessage&) = delete;
  PendingMessage& operator=(const PendingMessage&) = delete;
  PendingMessage& operator=(PendingMessage&&) = delete;
  ~PendingMessage() {
    if (text) awaken::detail::wipe(text->data(), text->capacity());
  }
};

// A stream read that decodes its message before it completes the caller: a failed call comes
// through with its code (for the WIT profile, `Unimplemented` and `FailedPrecondition`, which
// some agents answer, as `not_offered`: the agent does not offer it), a message
// that cannot be used as its decoder's code, and then the stream goes on.
template <StreamKind Kind>
class DecodingCompletion final
    : public ForwardingCompletion<Completion<std::error_code, std::optional<typename WorkloadStream<Kind>::value_type>>,
                                  std::error_code, std::optional<std::string>> {
 public:
  using Value = typename WorkloadStream<Kind>::value_type;
  using Inner = Completion<std::error_code, std::optional<Value>>;
  DecodingCompletion(std::unique_ptr<Inner> inner, asio::any_io_executor executor, ResourceLimits limits) noexcept
      : DecodingCompletion::ForwardingCompletion(std::move(inner)), executor_(std::move(executor)), limits_(limits) {}

  // Decodes on the stream's executor, off the connection's strand: a large update does not
  // hold up the other calls on the connection. The caller is then completed on its own.
  void complete(std::error_code ec, std::optional<std::string> message) override {
    asio::post(executor_, [inner = std::shared_ptr<Inner>(std::move(this->inner_)), ec,
                           m = PendingMessage{std::move(message)}, limits = limits_]() mutable {
      auto value = decode(*inner, ec, std::move(m.text), limits);
      inner->complete(ec, std::move(value));
    });
  }
  void invoke(std::error_code ec, std::optional<std::string> message) override {
    auto value = decode(*this->inner_, ec, std::move(message), limits_);
    this->inner_->invoke(ec, std::move(value));
  }

 private:
  using Decoding = StreamDecoding<Kind>;

  static std::optional<Value> decode(const Inner& inner, std::error_code& ec, std::optional<std::string> message,
                                     const ResourceLimits& limits) noexcept {
    try {
      if (ec) {
        if constexpr (Decoding::wit_method != nullptr) {
          if (ec == grpc_status::unimplemented || ec == grpc_status::failed_precondition) {
            Diagnostics d;
            if (const Diagnostics* read = inner.diagnostics()) d.details = read->details;
            d.context = "Workload API " + std::string{Decoding::wit_method} + ": the agent does not offer WIT-SVIDs (" +
                        ec.message() + ")";
            inner.set_diagnostics(d);
            ec = make_error_code(spiffe_errc::not_offered);
          }
        }
        return std::nullopt;
      }
      if (!message) return std::nullopt;
      std::optional<Value> value;
      Diagnostics d;
      if constexpr (Decoding::secret) {
        const WipeOnExit wipe{*message};
        ec = Decoding::decode(*message, limits, value, d);
      } else {
        ec = Decoding::decode(*message, limits, value, d);
      }
      if (ec) inner.set_diagnostics(d);
      return value;
    } catch (...) {  // only without memory for a text: the code alone
      ec = std::make_error_code(std::errc::not_enough_memory);
      return std::nullopt;
    }
  }

  asio::any_io_executor executor_;
  ResourceLimits limits_;
};

}  // namespace

template <StreamKind Kind>
void WorkloadStream<Kind>::start_next(std::unique_ptr<Completion<std::error_code, std::optional<value_type>>> c) {
  stream_.start_read(std::make_unique<DecodingCompletion<Kind>>(std::move(c), stream_.get_executor(), limits_));
}

template class WorkloadStream<StreamKind::jwt_bundles>;
template class WorkloadStream<StreamKind::x509_context>;
template class WorkloadStream<StreamKind::x509_bundles>;
template class WorkloadStream<StreamKind::wit_svids>;
template class WorkloadStream<StreamKind::wit_bundles>;

WorkloadApiClient::WorkloadApiClient(asio::any_io_executor executor, WorkloadEndpoint endpoint,
                                     WorkloadApiOptions options)
    : endpoint_(std::move(endpoint)),
      options_(options),
      channel_(std::move(executor), endpoint_.grpc_target(), channel_options(options_)) {}

WorkloadApiClient::WorkloadApiClient(const http::HttpClient& client, WorkloadEndpoint endpoint,
                                     WorkloadApiOptions options)
    : WorkloadApiClient(client.get_executor(), std::move(endpoint), options) {}

asio::any_io_executor WorkloadApiClient::executor() const noexcept { return channel_.get_executor(); }

asio::awaitable<std::vector<JwtSvid>> WorkloadApiClient::run_fetch(WorkloadApiClient self,
                                                                   std::vector<std::string> audiences,
                                                                   std::optional<SpiffeId> id, bool all) {
  if (audiences.empty()) throw_error(spiffe_errc::missing_audience, "fetch_jwt_svid: no audience");
  http::GrpcCallOptions call;
  call.deadline = self.options_.call_timeout;
  auto request = detail::encode_jwt_svid_request(audiences, id ? std::string_view{id->str()} : std::string_view{});
  std::string path{fetch_jwt_svid_path};  // named: GCC 12 and temporaries inside co_await
  const std::string response = co_await self.channel_.unary(std::move(path), std::move(request), call);
  auto entries = detail::decode_jwt_svid_response(response, all ? SIZE_MAX : 1);
  if (entries.empty()) throw_error(spiffe_errc::empty_response, "Workload API JWTSVIDResponse: no SVID");
  std::vector<JwtSvid> out;
  std::unordered_set<std::string> hints;
  for (auto& entry : entries) {
    if (!entry.hint.empty() && !hints.insert(entry.hint).second) continue;  // the first wins
    JwtSvid svid = [&] {
      try {
        return JwtSvid::parse_insecure(entry.svid);
      } catch (const Error& e) {
        throw_error(spiffe_errc::malformed_message, std::string{"Workload API JWTSVIDResponse: "} + e.what());
      }
    }();
    if (svid.spiffe_id().str() != entry.spiffe_id || (id && svid.spiffe_id() != *id))
      throw_error(spiffe_errc::malformed_message, "Workload API JWTSVIDResponse: spiffe_id '" +
                                                      bounded_excerpt(entry.spiffe_id, 128) +
                                                      "' does not match the token");
    out.push_back(svid.with_hint(std::move(entry.hint)));
    if (!all) break;
  }
  co_return out;
}

asio::awaitable<JwtSvid> WorkloadApiClient::run_fetch_one(WorkloadApiClient self, std::vector<std::string> audiences,
                                                          std::optional<SpiffeId> id) {
  auto svids = co_await run_fetch(std::move(self), std::move(audiences), std::move(id), false);
  co_return std::move(svids.front());
}

asio::awaitable<JwtBundleSet> WorkloadApiClient::run_fetch_jwt_bundles(WorkloadApiClient self) {
  auto stream = self.watch_jwt_bundles();
  auto set = co_await stream.next();
  if (!set)
    throw_error(spiffe_errc::empty_response, "Workload API FetchJWTBundles: the stream ended without a message");
  co_return std::move(*set);
}

JwtBundleStream WorkloadApiClient::watch_jwt_bundles(const ResourceLimits& limits) const {
  return JwtBundleStream{channel_.server_stream(std::string{fetch_jwt_bundles_path}, {}), limits};
}

asio::awaitable<X509Context> WorkloadApiClient::run_fetch_x509_context(WorkloadApiClient self) {
  auto stream = self.watch_x509_context();
  auto context = co_await stream.next();
  if (!context)
    throw_error(spiffe_errc::empty_response, "Workload API FetchX509SVID: the stream ended without a message");
  co_return std::move(*context);
}

asio::awaitable<X509Svid> WorkloadApiClient::run_fetch_x509_svid(WorkloadApiClient self) {
  auto context = co_await run_fetch_x509_context(std::move(self));
  co_return std::move(context.svids.front());
}

asio::awaitable<X509BundleSet> WorkloadApiClient::run_fetch_x509_bundles(WorkloadApiClient self) {
  auto stream = self.watch_x509_bundles();
  auto set = co_await stream.next();
  if (!set)
    throw_error(spiffe_errc::empty_response, "Workload API FetchX509Bundles: the stream ended without a message");
  co_return std::move(*set);
}

X509ContextStream WorkloadApiClient::watch_x509_context(const ResourceLimits& limits) const {
  return X509ContextStream{channel_.server_stream(std::string{fetch_x509_svid_path}, {}), limits};
}

X509BundleStream WorkloadApiClient::watch_x509_bundles(const ResourceLimits& limits) const {
  return X509BundleStream{channel_.server_stream(std::string{fetch_x509_bundles_path}, {}), limits};
}

WitSvidStream WorkloadApiClient::watch_wit_svids(std::optional<SpiffeId> spiffe_id,
                                                 const ResourceLimits& limits) const {
  auto request = detail::encode_wit_svid_request(spiffe_id ? std::string_view{spiffe_id->str()} : std::string_view{});
  return WitSvidStream{channel_.server_stream(std::string{fetch_wit_svid_path}, std::move(request)), limits};
}

WitBundleStream WorkloadApiClient::watch_wit_bundles(const ResourceLimits& limits) const {
  return WitBundleStream{channel_.server_stream(std::string{fetch_wit_bundles_path}, {}), limits};
}

asio::awaitable<std::vector<experimental::WitSvid>> WorkloadApiClient::run_fetch_wit(WorkloadApiClient self,
                                                                                     std::optional<SpiffeId> id) {
  auto stream = self.watch_wit_svids(std::move(id));
  auto svids = co_await stream.next();
  if (!svids) throw_error(spiffe_errc::empty_response, "Workload API FetchWITSVID: the stream ended without a message");
  co_return std::move(*svids);
}

asio::awaitable<JwtBundleSet> WorkloadApiClient::run_fetch_wit_bundles(WorkloadApiClient self) {
  auto stream = self.watch_wit_bundles();
  auto set = co_await stream.next();
  if (!set)
    throw_error(spiffe_errc::empty_response, "Workload API FetchWITBundles: the stream ended without a message");
  co_return std::move(*set);
}

asio::awaitable<AgentValidation> WorkloadApiClient::run_validate(WorkloadApiClient self, std::string audience,
                                                                 std::string token) {
  if (audience.empty()) throw_error(spiffe_errc::no_expected_audience, "validate_jwt_svid");
  http::GrpcCallOptions call;
  call.deadline = self.options_.call_timeout;
  auto request = detail::encode_validate_jwt_svid_request(audience, token);
  std::string path{validate_jwt_svid_path};
  const std::string response = co_await self.channel_.unary(std::move(path), std::move(request), call);
  auto decoded = detail::decode_validate_jwt_svid_response(response);
  std::error_code ec;
  auto id = SpiffeId::parse(decoded.spiffe_id, ec);
  if (!id)
    throw_error(spiffe_errc::malformed_message, "Workload API ValidateJWTSVIDResponse: spiffe_id '" +
                                                    bounded_excerpt(decoded.spiffe_id, 128) + "': " + ec.message());
  co_return AgentValidation{std::move(*id), std::move(decoded.claims)};
}

}  // namespace awaken::spiffe
