// Every Workload API call and stream, in every completion style (support/every_style.hpp).
#include <optional>

#include <awaken/spiffe/workload_api.hpp>

#include <catch2/catch.hpp>

#include "support/every_style.hpp"

using namespace awaken::test::styles;

TEST_CASE("Workload API calls complete alike with every completion style", "[styles][workload]") {
  WorkloadPeer peer;
  Loop loop;
  const spiffe::WorkloadApiClient client{loop.executor(), peer.endpoint()};
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_jwt_svid({"svc"}, std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_jwt_svids({"svc"}, std::nullopt, std::move(t)); }),
            success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_jwt_bundles(std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_x509_context(std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_x509_svid(std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_x509_bundles(std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_wit_svids(std::nullopt, std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return client.fetch_wit_bundles(std::move(t)); }), success);
  // A failure reaches every style with its code: the agent refuses a token that is not one.
  check_all(every_style(loop, [&](auto&& t) { return client.validate_jwt_svid("svc", "not-a-token", std::move(t)); }),
            {awaken::grpc_status::invalid_argument, false});
}

TEST_CASE("Workload API streams complete alike with every completion style", "[styles][workload]") {
  WorkloadPeer peer;
  Loop loop;
  const spiffe::WorkloadApiClient client{loop.executor(), peer.endpoint()};
  auto jwt = client.watch_jwt_bundles();
  auto x509 = client.watch_x509_context();
  auto x509_bundles = client.watch_x509_bundles();
  auto wit = client.watch_wit_svids();
  auto wit_bundles = client.watch_wit_bundles();
  // A stream's first message is read by the first style; the others wait for updates the peer
  // sends when told to rotate.
  const auto rotating = [&](auto& stream) {
    return [&](auto&& t) {
      peer.control("/rotate");
      peer.control("/x509/rotate?authority=1&keep_old=1");
      peer.control("/wit/rotate?keep_old=1");
      return stream.next(std::move(t));
    };
  };
  check_all(every_style(loop, rotating(jwt)), success);
  check_all(every_style(loop, rotating(x509)), success);
  check_all(every_style(loop, rotating(x509_bundles)), success);
  check_all(every_style(loop, rotating(wit)), success);
  check_all(every_style(loop, rotating(wit_bundles)), success);
}
