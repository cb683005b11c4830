// The members of `basic_source<Profile>` and `SourceUpdates<Profile>`, written once. Each
// profile's file specializes `ProfileRules` and instantiates both for its profile:
//
//   template <> struct ProfileRules<JwtProfile> {
//     static constexpr const char* name = "JwtSource";
//     static constexpr std::size_t lanes = 1;                 // streams the source keeps open
//     static const View& view(const Snapshot&) noexcept;      // what `wait_for` sees
//     static bool healthy(const Snapshot&, const Clock&) noexcept;
//     static void spawn(state, settings, options);            // one `spawn_supervisor` per lane
//   };
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <asio/awaitable.hpp>
#include <asio/system_executor.hpp>

#include <awaken/spiffe/source.hpp>

#include "spiffe/source/source_state.hpp"
#include "spiffe/source/stream_driver.hpp"

namespace awaken::spiffe::detail {

template <class Profile>
struct ProfileRules;

// The SVID a snapshot's picker chose, sharing the snapshot; `no_svid` when it holds none.
template <class Snapshot>
auto picked_svid(const std::shared_ptr<const Snapshot>& snapshot, const char* source) {
  const auto* svid = snapshot->svid();
  if (svid == nullptr) [[unlikely]]
    throw_error(spiffe_errc::no_svid, source);
  return std::shared_ptr<std::remove_pointer_t<decltype(svid)>>(snapshot, svid);
}

// The health of a snapshot that serves an SVID: one was picked, it has not expired by `clock`,
// and the bundles hold an authority.
template <class Snapshot>
bool serves_live_svid(const Snapshot& snapshot, const Clock& clock) noexcept {
  const auto* svid = snapshot.svid();
  return svid != nullptr && svid->expiry() > clock.system_now() && snapshot.context.bundles.authority_count() > 0;
}

// The bundle of `td` in `set`, a part of `snapshot`, sharing it; null when there is none.
template <class Snapshot, class Set>
std::shared_ptr<const typename Set::bundle_type> bundle_in(const std::shared_ptr<const Snapshot>& snapshot,
                                                           const Set& set, const TrustDomain& td) {
  const auto* bundle = set.find(td.name());
  return bundle == nullptr ? nullptr : std::shared_ptr<const typename Set::bundle_type>(snapshot, bundle);
}

}  // namespace awaken::spiffe::detail

namespace awaken::spiffe {

template <class Profile>
const std::shared_ptr<const typename Profile::snapshot_type>& basic_source<Profile>::snapshot() const {
  if (state_ == nullptr) [[unlikely]]
    detail::closed_error(detail::ProfileRules<Profile>::name);
  return detail::thread_view(*state_);
}

template <class Profile>
bool basic_source<Profile>::is_healthy() const noexcept {
  if (state_ == nullptr) return false;
  auto& s = *state_;
  if (s.closed.load() || !s.running.load()) return false;
  try {
    return detail::ProfileRules<Profile>::healthy(*detail::thread_view(s), s.timing.clock_or_real());
  } catch (...) {  // the thread's view could not be allocated
    return false;
  }
}

template <class Profile>
std::uint64_t basic_source<Profile>::sequence() const noexcept {
  return state_ != nullptr ? state_->sequence.load(std::memory_order_acquire) : 0;
}

template <class Profile>
SourceUpdates<Profile> basic_source<Profile>::updates() const {
  if (!core_) detail::closed_error(detail::ProfileRules<Profile>::name);
  return updates_type{core_->state, sequence()};
}

template <class Profile>
std::shared_ptr<detail::SourceState<typename Profile::snapshot_type>> basic_source<Profile>::state_handle()
    const noexcept {
  return core_ ? core_->state : nullptr;
}

template <class Profile>
asio::any_io_executor basic_source<Profile>::fallback_executor() const noexcept {
  if (!core_) return asio::system_executor{};
  return core_->state->strand.get_inner_executor();
}

template <class Profile>
asio::awaitable<void> basic_source<Profile>::run_shutdown(basic_source self,
                                                          std::optional<std::chrono::milliseconds> timeout) {
  if (self.core_) co_await detail::stop_source(self.core_->state, timeout);
}

template <class Profile>
asio::awaitable<basic_source<Profile>> basic_source<Profile>::run_build(detail::SourceSettings settings,
                                                                        typename Profile::options options,
                                                                        std::optional<asio::any_io_executor> on) {
  using Rules = detail::ProfileRules<Profile>;
  const auto executor = co_await detail::source_executor(on, Rules::name);
  auto s = detail::make_source_state<snapshot_type>(settings, executor, Rules::name, Rules::lanes);
  basic_source source{std::make_shared<detail::SourceCore<snapshot_type>>(s),
                      s.get()};  // its end stops the supervisors
  // Every stream starts at once; the initial sync waits for all of them within one bound.
  const auto started = std::chrono::steady_clock::now();
  Rules::spawn(s, settings, std::move(options));
  co_await detail::await_first_set(s, settings, started);
  co_return source;
}

template <class Profile>
std::uint64_t SourceUpdates<Profile>::last() const noexcept {
  return state_->sequence.load(std::memory_order_acquire);
}

template <class Profile>
asio::any_io_executor SourceUpdates<Profile>::fallback_executor() const noexcept {
  return state_->strand.get_inner_executor();
}

template <class Profile>
void SourceUpdates<Profile>::start_changed(std::unique_ptr<Completion<std::error_code, std::uint64_t>> c) {
  detail::start_changed_seen(state_, seen_, std::move(c));
}

template <class Profile>
asio::awaitable<std::shared_ptr<const typename Profile::view_type>> SourceUpdates<Profile>::run_wait_for(
    std::function<bool(const view_type&)> predicate) {
  for (;;) {
    if (state_->closed.load()) detail::closed_error(state_->name);
    seen_ = state_->sequence.load(std::memory_order_acquire);
    auto snapshot = state_->load_current();
    const view_type& view = detail::ProfileRules<Profile>::view(*snapshot);
    if (predicate(view)) co_return std::shared_ptr<const view_type>(snapshot, &view);
    co_await changed();
  }
}

}  // namespace awaken::spiffe
