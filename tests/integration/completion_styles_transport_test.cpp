// gRPC, HTTP and the broker, in every completion style (support/every_style.hpp).
#include <string>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/http/grpc.hpp>
#include <awaken/http/http_client.hpp>

#include <catch2/catch.hpp>

#include "support/every_style.hpp"

using namespace awaken::test::styles;

TEST_CASE("gRPC, HTTP and the broker complete alike with every completion style", "[styles][workload]") {
  WorkloadPeer peer;
  Loop loop;
  const awaken::http::GrpcChannel channel{loop.executor(), awaken::http::GrpcTarget::unix_socket(peer.socket())};
  // An empty FetchJWTSVID request names no audience: the peer refuses it.
  check_all(
      every_style(loop, [&](auto&& t) { return channel.unary("/SpiffeWorkloadAPI/FetchJWTSVID", "", std::move(t)); }),
      {awaken::grpc_status::invalid_argument, false});
  const awaken::http::HttpClient http{loop.executor()};
  awaken::http::HttpRequest stats;
  stats.url = "http://127.0.0.1:" + std::to_string(peer.control_port()) + "/stats";
  check_all(every_style(loop, [&](auto&& t) { return http.send(stats, std::move(t)); }), success);
  awaken::AwakenBroker broker{loop.executor()};
  broker.register_material("static", awaken::CredentialMaterial::static_bearer(awaken::RedactedString{"t-1"}));
  check_all(every_style(loop, [&](auto&& t) { return broker.token_for("static", "s", std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return broker.token_for("nobody", "s", std::move(t)); }),
            {awaken::credential_errc::not_configured, false});
}
