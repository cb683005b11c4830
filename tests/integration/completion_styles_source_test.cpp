// The sources: build, the reads that wait, fetch and shutdown, in every completion style
// (support/every_style.hpp).
#include <chrono>
#include <optional>

#include <awaken/spiffe/experimental/wit_source.hpp>
#include <awaken/spiffe/jwt_source.hpp>
#include <awaken/spiffe/x509_source.hpp>

#include <catch2/catch.hpp>

#include "support/every_style.hpp"

using namespace awaken::test::styles;

TEST_CASE("Source operations complete alike with every completion style", "[styles][workload]") {
  WorkloadPeer peer;
  Loop loop;
  auto jwt_builder = spiffe::JwtSource::builder();
  jwt_builder.endpoint(peer.endpoint()).initial_sync_timeout(std::chrono::seconds{10});
  check_all(every_style(loop, [&](auto&& t) { return jwt_builder.build(loop.executor(), std::move(t)); }), success);
  const spiffe::JwtSource jwt = jwt_builder.build(loop.executor(), asio::use_future).get();
  check_all(every_style(loop, [&](auto&& t) { return jwt.fetch_jwt_svid({"svc"}, std::nullopt, std::move(t)); }),
            success);
  auto updates = jwt.updates();
  check_all(every_style(loop,
                        [&](auto&& t) {
                          peer.control("/rotate");
                          return updates.changed(std::move(t));
                        }),
            success);
  check_all(
      every_style(loop, [&](auto&& t) { return updates.wait_for([](const auto&) { return true; }, std::move(t)); }),
      success);

  auto x509_builder = spiffe::X509Source::builder();
  x509_builder.endpoint(peer.endpoint()).initial_sync_timeout(std::chrono::seconds{10});
  check_all(every_style(loop, [&](auto&& t) { return x509_builder.build(loop.executor(), std::move(t)); }), success);
  const spiffe::X509Source x509 = x509_builder.build(loop.executor(), asio::use_future).get();
  auto x509_updates = x509.updates();
  check_all(every_style(loop,
                        [&](auto&& t) {
                          peer.control("/x509/rotate");
                          return x509_updates.changed(std::move(t));
                        }),
            success);

  check_all(every_style(loop,
                        [&](auto&& t) {
                          return x509_updates.wait_for(
                              [](const awaken::spiffe::X509Context& c) { return !c.svids.empty(); }, std::move(t));
                        }),
            success);

  auto wit_builder = spiffe::experimental::WitSource::builder();
  wit_builder.endpoint(peer.endpoint()).initial_sync_timeout(std::chrono::seconds{10});
  check_all(every_style(loop, [&](auto&& t) { return wit_builder.build(loop.executor(), std::move(t)); }), success);
  const auto wit = wit_builder.build(loop.executor(), asio::use_future).get();

  // Shutdown completes alike every time: it is idempotent.
  check_all(every_style(loop, [&](auto&& t) { return jwt.shutdown(std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return x509.shutdown(std::chrono::seconds{5}, std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return wit.shutdown(std::move(t)); }), success);
  check_all(every_style(loop, [&](auto&& t) { return wit.shutdown(std::chrono::seconds{5}, std::move(t)); }), success);
  // After it, the reads that wait fail alike.
  check_all(every_style(loop, [&](auto&& t) { return updates.changed(std::move(t)); }),
            {awaken::spiffe_errc::source_closed, false});
}
