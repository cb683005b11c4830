// X509Source: this workload's X.509-SVIDs and the X.509 bundles of every trust domain it is
// told about, kept current from the Workload API by the same supervisor as JwtSource, and read
// without blocking.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/execution/executor.hpp>
#include <asio/system_executor.hpp>

#include <awaken/completion.hpp>
#include <awaken/detail/spawn_operation.hpp>
#include <awaken/diagnostics.hpp>
#include <awaken/spiffe/source.hpp>
#include <awaken/spiffe/workload_api.hpp>
#include <awaken/spiffe/x509_bundle.hpp>
#include <awaken/spiffe/x509_svid.hpp>

namespace awaken::spiffe {

namespace detail {
struct X509Snapshot;  // a context and the SVID picked from it
}  // namespace detail

/// Chooses the SVID a source serves from those of an update: its index, or nullopt when none
/// fits (the update is then rejected with `no_svid` and the last good one kept).
using X509SvidPicker = std::function<std::optional<std::size_t>(std::span<const X509Svid>)>;
/// (`pick_by_hint` and `pick_by_id`, in source.hpp, make pickers for every source.)

/// The sequence numbers of an `X509Source`'s updates, and waiting for the next one (`wait_for`
/// sees each update's `X509Context`).
using X509SourceUpdates = SourceUpdates<detail::X509Snapshot, X509Context>;

class X509SourceBuilder;

/// This workload's X.509-SVIDs and bundles, kept current by a supervisor that holds a
/// `FetchX509SVID` stream open, with the contract of `JwtSource`: an initial sync (with a
/// timeout; `invalid_argument` and `unimplemented` fail at once), jittered backoff reset by a
/// good update, the last good context kept through any failure, resource limits checked before
/// anything is published, publication by atomic swap, notifications only for changed content,
/// and a bounded idempotent shutdown. An update is refused when no SVID fits the picker or the
/// picked SVID has expired.
///
/// A cheap handle: copies share one source; destroying the last handle stops the supervisor.
///
/// Thread safety: every member may be called from any thread at once. Readers (`svid`,
/// `x509_context`, `x509_bundle_for_trust_domain`, `is_healthy`) take no lock and allocate
/// nothing once their thread has seen the current update (a thread keeps one view: reading two
/// sources in turn on one thread allocates). A thread's view keeps the snapshot it last read,
/// private keys included, until that thread reads again.
class X509Source final : public X509BundleSource, public X509SvidSource, public SourceShutdown<X509Source> {
 public:
  X509Source() = default;  ///< an empty handle, which behaves as a closed source
  X509Source(const X509Source&) = default;
  X509Source& operator=(const X509Source&) = default;
  X509Source(X509Source&& other) noexcept
      : core_(std::move(other.core_)), state_(std::exchange(other.state_, nullptr)) {}
  X509Source& operator=(X509Source&& other) noexcept {
    core_ = std::move(other.core_);
    state_ = std::exchange(other.state_, nullptr);
    return *this;
  }
  ~X509Source() override = default;

  static X509SourceBuilder builder();

  /// The SVID to present now (the picker's choice). Throws `source_closed` after shutdown.
  std::shared_ptr<const X509Svid> svid() const;
  std::shared_ptr<const X509Svid> x509_svid() const override { return svid(); }
  /// Everything the last good update carried.
  std::shared_ptr<const X509Context> x509_context() const;
  /// The bundles of every trust domain the last good update carried.
  std::shared_ptr<const X509BundleSet> bundle_set() const;
  /// The current bundle of `td`, or null. Throws `source_closed` after shutdown.
  std::shared_ptr<const X509Bundle> x509_bundle_for_trust_domain(const TrustDomain& td) const override;

  /// Open, supervisor running, an SVID that has not expired, and at least one authority.
  bool is_healthy() const noexcept;
  std::uint64_t sequence() const noexcept;
  X509SourceUpdates updates() const;
  // shutdown() and shutdown(timeout): `SourceShutdown`.

 private:
  friend class X509SourceBuilder;
  friend class SourceShutdown<X509Source>;
  struct Core;
  X509Source(std::shared_ptr<Core> core, detail::SourceState<detail::X509Snapshot>* state) noexcept
      : core_(std::move(core)), state_(state) {}
  asio::any_io_executor fallback_executor() const noexcept;
  static asio::awaitable<void> run_shutdown(X509Source self, std::optional<std::chrono::milliseconds> timeout);

  std::shared_ptr<Core> core_;
  detail::SourceState<detail::X509Snapshot>* state_ = nullptr;
};

/// Configures and builds an `X509Source` (the common settings are `SourceBuilder`'s).
class X509SourceBuilder : public SourceBuilder<X509SourceBuilder> {
 public:
  /// Which SVID the source serves; the first of each update by default.
  X509SourceBuilder& svid_picker(X509SvidPicker picker) {
    picker_ = std::move(picker);
    return *this;
  }

  /// Starts the source on `executor` and completes once the first good update is published:
  /// `void(std::error_code, X509Source)`, failing as `JwtSourceBuilder::build`.
  template <class CompletionToken = awaken::use_awaitable_t>
  auto build(asio::any_io_executor executor, CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<X509Source>(
        executor,
        [s = settings_.resolved(), p = picker_, executor]() mutable {
          return run_build(std::move(s), std::move(p), executor);
        },
        std::forward<CompletionToken>(token));
  }
  /// As above, on the handler's associated executor.
  template <class CompletionToken = awaken::use_awaitable_t>
  requires(!asio::execution::is_executor<std::decay_t<CompletionToken>>::value) auto build(
      CompletionToken&& token = {}) const {
    return awaken::detail::async_spawn<X509Source, true>(
        asio::system_executor{},
        [s = settings_.resolved(), p = picker_]() mutable {
          return run_build(std::move(s), std::move(p), std::nullopt);
        },
        std::forward<CompletionToken>(token));
  }

 private:
  X509SvidPicker picker_;
  static asio::awaitable<X509Source> run_build(detail::SourceSettings settings, X509SvidPicker picker,
                                               std::optional<asio::any_io_executor> executor);
};

}  // namespace awaken::spiffe
