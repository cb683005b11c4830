// WIT-SVIDs from the Workload API peer (tests/peers/workload_server.mjs with wit_issuer.mjs):
// the client's FetchWITSVID and FetchWITBundles, an agent without the profile, and WitSource
// with proofs made from it and verified against it.
#include <chrono>

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/experimental/wit_source.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "support/errors.hpp"
#include "support/names.hpp"
#include "support/source_support.hpp"
#include "support/workload_peer.hpp"

using namespace awaken::spiffe::experimental;
using awaken::spiffe::WorkloadApiClient;

namespace {

constexpr const char* service = "https://orders.example.org";

WptVerifier verifier_for(std::shared_ptr<const awaken::spiffe::BundleSource> bundles) {
  WptVerifierOptions o;
  o.origins = {service};
  return WptVerifier{std::move(bundles), o};
}

// A proof from `svid` for GET /orders/1 at the service, checked by `verifier`: the caller's ID.
std::string call(const WitSvid& svid, const WptVerifier& verifier) {
  const WptHeaders headers = make_workload_proof(svid, {std::string{service} + "/orders/1"});
  const std::string_view wits[] = {headers.workload_identity_token.reveal()};
  const std::string_view wpts[] = {headers.workload_proof_token.reveal()};
  return verifier.verify({wits, wpts, "/orders/1"}).caller().str();
}

WitSourceBuilder quick_builder(const WorkloadPeer& peer) {
  auto b = WitSource::builder();
  b.endpoint(peer.endpoint()).reconnect_backoff(10ms, 100ms).initial_sync_timeout(10s);
  return b;
}

}  // namespace

TEST_CASE("Workload API: FetchWITSVID and FetchWITBundles, and proofs made with what they give", "[wit][workload]") {
  WorkloadPeer peer;
  asio::io_context io;
  const WorkloadApiClient client{io.get_executor(), peer.endpoint()};

  const auto svids = run(io, client.fetch_wit_svids());
  REQUIRE(svids.size() == 2);
  CHECK(svids[0].spiffe_id().str() == "spiffe://example.org/workload");
  CHECK(svids[0].hint() == "primary");
  CHECK(svids[0].key_id() == peer.control("/stats")["wit_kid"]);
  CHECK(svids[0].has_private_key());
  CHECK(svids[1].spiffe_id().str() == "spiffe://example.org/other");
  CHECK(svids[1].hint() == "secondary");
  // Printing shows neither the token nor the key.
  CHECK(to_string(svids[0]).find(svids[0].token().reveal()) == std::string::npos);

  // The bundles hold the WIT keys only (example.org's jwt-svid key is skipped).
  const auto bundles = std::make_shared<const awaken::spiffe::JwtBundleSet>(run(io, client.fetch_wit_bundles()));
  REQUIRE(bundles->find("example.org") != nullptr);
  CHECK(bundles->find("federated.org") != nullptr);
  for (const auto& a : bundles->find("example.org")->authorities()) CHECK(a.key_id().rfind("wit-", 0) == 0);
  // Each SVID validates against them, and proves for itself.
  CHECK(WitSvid::parse_and_validate(svids[1].token().reveal(), *bundles).spiffe_id() == svids[1].spiffe_id());
  const WptVerifier verifier = verifier_for(bundles);
  CHECK(call(svids[0], verifier) == "spiffe://example.org/workload");
  CHECK(call(svids[1], verifier) == "spiffe://example.org/other");

  // One identity when asked for; another one is not this workload's.
  const auto other = run(io, client.fetch_wit_svids(SpiffeId::parse("spiffe://example.org/other")));
  REQUIRE(other.size() == 1);
  CHECK(other[0].hint() == "secondary");
  CHECK(awaken::test::code_of([&] {
          run(io, client.fetch_wit_svids(SpiffeId::parse("spiffe://example.org/stranger")));
        }) == grpc_status::permission_denied);

  // Other key kinds: ES384 and RS256 proofs.
  for (const char* kind : {"ec384", "rsa2048"}) {
    peer.control(std::string{"/wit/key?k="} + kind);
    peer.control("/wit/renew");
    const auto renewed = run(io, client.fetch_wit_svids());
    CHECK(renewed[0].confirmation_algorithm() ==
          (std::string_view{kind} == "ec384" ? awaken::jose::Algorithm::es384 : awaken::jose::Algorithm::rs256));
    CHECK(call(renewed[0], verifier) == "spiffe://example.org/workload");
  }
}

TEST_CASE("Workload API: an agent without the WIT profile is not offered, and not retried", "[wit][workload]") {
  WorkloadPeer peer;
  asio::io_context io;
  const WorkloadApiClient client{io.get_executor(), peer.endpoint()};
  for (const char* mode : {"unimplemented", "failed_precondition"}) {
    INFO(mode);
    peer.control(std::string{"/wit/mode?m="} + mode);
    CHECK(awaken::test::code_of([&] { run(io, client.fetch_wit_svids()); }) == spiffe_errc::not_offered);
    CHECK(awaken::test::code_of([&] { run(io, client.fetch_wit_bundles()); }) == spiffe_errc::not_offered);
    // A source gives up at once: not_offered, not the initial sync's timeout.
    auto b = quick_builder(peer);
    b.initial_sync_timeout(60s);
    CHECK(awaken::test::code_of([&] { run(io, b.build(io.get_executor())); }) == spiffe_errc::not_offered);
  }
}

TEST_CASE("WitSource: SVIDs and bundles kept current, bad updates refused, proofs verified with the source",
          "[wit][source]") {
  WorkloadPeer peer;
  asio::io_context io;
  const WitSource source = run(io, quick_builder(peer).build(io.get_executor()));
  CHECK(source.is_healthy());
  CHECK(source.svid()->hint() == "primary");
  CHECK(source.svids()->size() == 2);
  CHECK(source.bundle_for_trust_domain(TrustDomain::parse("federated.org")) != nullptr);
  const auto as_bundles = std::make_shared<const WitSource>(source);
  const WptVerifier verifier = verifier_for(as_bundles);
  CHECK(call(*source.svid(), verifier) == "spiffe://example.org/workload");

  // A renewal is published: a new token and key.
  const std::string before{source.svid()->token().reveal()};
  const auto seq = source.sequence();
  peer.control("/wit/renew");
  REQUIRE(run_until(io, [&] { return source.svid()->token().reveal() != before; }));
  CHECK(source.sequence() > seq);
  CHECK(call(*source.svid(), verifier) == "spiffe://example.org/workload");

  // A new issuer key: the bundles follow and the new SVIDs verify.
  const std::string kid = peer.control("/stats")["wit_kid"];
  peer.control("/wit/rotate");
  const std::string new_kid = peer.control("/stats")["wit_kid"];
  REQUIRE(new_kid != kid);
  REQUIRE(run_until(io, [&] {
    return source.svid()->key_id() == new_kid &&
           source.bundle_for_trust_domain(TrustDomain::parse("example.org"))->find_authority(new_kid) != nullptr;
  }));
  CHECK(call(*source.svid(), verifier) == "spiffe://example.org/workload");

  // A malformed or empty update is refused; the last good SVIDs stay.
  const std::string good{source.svid()->token().reveal()};
  for (const char* mode : {"malformed", "empty"}) {
    peer.control(std::string{"/wit/push?mode="} + mode);
    io.restart();
    io.run_for(200ms);
    CHECK(source.svid()->token().reveal() == good);
    CHECK(source.is_healthy());
  }

  // A picker by hint, and for one identity only.
  auto picked = quick_builder(peer);
  picked.svid_picker(awaken::spiffe::pick_by_hint("secondary"));
  CHECK(run(io, picked.build(io.get_executor())).svid()->spiffe_id().str() == "spiffe://example.org/other");
  auto one = quick_builder(peer);
  one.spiffe_id(SpiffeId::parse("spiffe://example.org/other"));
  CHECK(run(io, one.build(io.get_executor())).svids()->size() == 1);
  auto none = quick_builder(peer);
  none.svid_picker(awaken::spiffe::pick_by_hint("absent")).initial_sync_timeout(300ms);
  CHECK(awaken::test::code_of([&] { run(io, none.build(io.get_executor())); }) == spiffe_errc::initial_sync_timeout);
  // Both streams start at once and share the initial-sync bound: each answered after 1.2 s,
  // the build is done within the 2 s bound (one stream after the other would take 2.4 s).
  peer.control("/delay?ms=1200");
  auto slow = quick_builder(peer);
  slow.initial_sync_timeout(2s);
  const auto build_started = std::chrono::steady_clock::now();
  CHECK(run(io, slow.build(io.get_executor())).is_healthy());
  CHECK(std::chrono::steady_clock::now() - build_started < 2s);
  peer.control("/delay?ms=0");

  // The profile withdrawn: the source stops without a retry and closes, since what the agent no
  // longer offers must not be used; a shutdown after it is harmless.
  peer.control("/wit/mode?m=unimplemented");
  REQUIRE(run_until(io, [&] { return !source.is_healthy(); }));
  CHECK(awaken::test::code_of([&] { (void)source.svid(); }) == spiffe_errc::source_closed);
  run(io, source.shutdown());
}

TEST_CASE("WitSource: an update whose picked WIT-SVID has expired is refused, the last good set kept",
          "[wit][source]") {
  WorkloadPeer peer;
  asio::io_context io;
  const auto metrics = std::make_shared<awaken::test::CountingMetrics>();
  awaken::ManualClock clock{std::chrono::system_clock::now()};
  auto b = quick_builder(peer);
  awaken::Timing timing;
  timing.clock = &clock;
  b.metrics(metrics).timing(timing);
  const WitSource source = run(io, b.build(io.get_executor()));
  CHECK(source.is_healthy());
  const std::string accepted{source.svid()->token().reveal()};

  // Past the SVIDs' expiry (300 s) by the source's clock: the same set again is refused
  // (counted), the last good set kept, and the source no longer healthy.
  clock.advance(301s);
  CHECK_FALSE(source.is_healthy());
  const int rejected = metrics->count(awaken::spiffe::MetricsErrorKind::update_rejected);
  peer.control("/wit/push?mode=same");
  REQUIRE(run_until(io, [&] { return metrics->count(awaken::spiffe::MetricsErrorKind::update_rejected) > rejected; }));
  CHECK(source.svid()->token().reveal() == accepted);
  CHECK_FALSE(source.is_healthy());

  // A renewal that outlives the clock: accepted, healthy again.
  peer.control("/wit/ttl?s=900");
  peer.control("/wit/renew");
  REQUIRE(run_until(io, [&] { return source.svid()->token().reveal() != accepted; }));
  CHECK(source.is_healthy());
  CHECK(metrics->count(awaken::spiffe::MetricsErrorKind::update_rejected) == rejected + 1);
  // A bounded shutdown, as every source has; again, it is the same stop.
  run(io, source.shutdown(std::chrono::seconds{5}));
  run(io, source.shutdown(std::chrono::seconds{5}));
  CHECK_FALSE(source.is_healthy());
}
