// The stream supervisor's rules (see stream_supervisor.hpp).
#include "spiffe/source/stream_supervisor.hpp"

#include <algorithm>

#include <awaken/error.hpp>

namespace awaken::spiffe::detail {
namespace {

using namespace std::chrono_literals;
using Kind = StreamEvent::Kind;
using Action = StreamAction::Kind;

// An agent with no identity for us yet needs time: at least this, growing to the cap at most.
constexpr std::chrono::milliseconds no_identity_floor{1s};
constexpr std::chrono::milliseconds no_identity_cap{10s};

bool hopeless_before_sync(std::error_code ec) noexcept {
  return ec == grpc_status::invalid_argument || ec == grpc_status::unimplemented ||
         ec == spiffe_errc::invalid_endpoint || ec == spiffe_errc::endpoint_not_configured;
}

}  // namespace

BackoffPolicy SupervisorCore::reconnect_policy(std::chrono::milliseconds min, std::chrono::milliseconds max) noexcept {
  BackoffPolicy p;
  p.max_attempts = 0;  // unused: a source never stops reconnecting
  p.initial_delay = min;
  p.multiplier = 2.0;
  p.max_delay = max;
  p.jitter = 0.1;
  return p;
}

StreamAction SupervisorCore::retry(StreamAction a, bool no_identity) noexcept {
  ++failures_;
  BackoffPolicy p = policy_;
  if (no_identity) p.max_delay = std::max(std::min(p.max_delay, no_identity_cap), no_identity_floor);
  a.delay = std::max(p.delay(failures_, *jitter_), std::chrono::milliseconds{1});
  if (no_identity) a.delay = std::max(a.delay, no_identity_floor);
  a.kind = Action::wait;
  a.reconnect = true;
  return a;
}

StreamAction SupervisorCore::on(const StreamEvent& e) noexcept {
  StreamAction a{Action::read_next};
  switch (e.kind) {
    case Kind::update_applied: {
      const bool publish = !synced_ || e.changed;
      synced_ = true;
      first_message_ = false;
      failures_ = 0;
      a.kind = publish ? Action::publish : Action::read_next;
      return a;
    }
    case Kind::message_rejected:
      if (e.error == spiffe_errc::resource_limit_exceeded) a.add(MetricsErrorKind::limit_max_bundles);
      if (e.error == spiffe_errc::bundle_too_large)
        a.add(x509_ ? MetricsErrorKind::limit_max_bundle_der_bytes : MetricsErrorKind::limit_max_bundle_jwks_bytes);
      if (e.error == spiffe_errc::too_many_svids) a.add(MetricsErrorKind::limit_max_svids);
      if (e.error == spiffe_errc::no_svid) a.add(MetricsErrorKind::no_suitable_svid);
      a.add(MetricsErrorKind::update_rejected);
      if (!synced_) a.add(MetricsErrorKind::initial_sync_failed);
      first_message_ = false;
      return a;
    case Kind::connect_failed: a.add(MetricsErrorKind::client_creation); break;
    case Kind::stream_failed:
      a.add(e.no_identity    ? MetricsErrorKind::no_identity_issued
            : first_message_ ? MetricsErrorKind::stream_connect
                             : MetricsErrorKind::stream_error);
      break;
    case Kind::stream_ended: a.add(MetricsErrorKind::stream_ended); break;
  }
  // An optional profile the agent does not offer (WIT-SVIDs): asking again cannot help.
  if (e.kind == Kind::stream_failed && e.error == spiffe_errc::not_offered) {
    if (!synced_) a.add(MetricsErrorKind::initial_sync_failed);
    a.kind = Action::give_up;
    a.error = e.error;
    return a;
  }
  if (!synced_) {
    a.add(MetricsErrorKind::initial_sync_failed);
    if (e.kind != Kind::stream_ended && hopeless_before_sync(e.error)) {
      a.kind = Action::give_up;
      a.error = e.error;
      return a;
    }
  }
  return retry(a, e.kind == Kind::stream_failed && e.no_identity);
}

SourceSettings SourceSettings::resolved() const {
  SourceSettings s = *this;
  if (s.factory || s.endpoint) return s;
  try {
    s.endpoint = WorkloadEndpoint::from_environment();
  } catch (const Error& e) {
    s.endpoint_error = e;  // reported by the supervisor, as a bad endpoint given here would be
  }
  return s;
}

}  // namespace awaken::spiffe::detail

namespace awaken::spiffe {

std::string_view to_string(MetricsErrorKind kind) noexcept {
  switch (kind) {
    case MetricsErrorKind::client_creation: return "client_creation";
    case MetricsErrorKind::stream_connect: return "stream_connect";
    case MetricsErrorKind::stream_error: return "stream_error";
    case MetricsErrorKind::stream_ended: return "stream_ended";
    case MetricsErrorKind::no_identity_issued: return "no_identity_issued";
    case MetricsErrorKind::initial_sync_failed: return "initial_sync_failed";
    case MetricsErrorKind::limit_max_bundles: return "limit_max_bundles";
    case MetricsErrorKind::limit_max_bundle_jwks_bytes: return "limit_max_bundle_jwks_bytes";
    case MetricsErrorKind::update_rejected: return "update_rejected";
    case MetricsErrorKind::limit_max_svids: return "limit_max_svids";
    case MetricsErrorKind::limit_max_bundle_der_bytes: return "limit_max_bundle_der_bytes";
    case MetricsErrorKind::no_suitable_svid: return "no_suitable_svid";
  }
  return "unknown";
}

}  // namespace awaken::spiffe
