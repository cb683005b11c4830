// X509Source: this workload's X.509-SVIDs and the X.509 bundles of every trust domain it is
// told about, kept current from the Workload API by a supervised `FetchX509SVID` stream, and
// read without blocking.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>

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

/// What an `X509Source` adds to every source's members: the SVID it serves, and the context
/// and bundles of the last good update.
class X509SourceReaders : public X509BundleSource, public X509SvidSource {
 public:
  /// The SVID to present now (the picker's choice). Throws `source_closed` after shutdown.
  std::shared_ptr<const X509Svid> svid() const;
  std::shared_ptr<const X509Svid> x509_svid() const override { return svid(); }
  /// Everything the last good update carried.
  std::shared_ptr<const X509Context> x509_context() const;
  /// The bundles of every trust domain the last good update carried.
  std::shared_ptr<const X509BundleSet> bundle_set() const;
  /// The current bundle of `td`, or null. Throws `source_closed` after shutdown.
  std::shared_ptr<const X509Bundle> x509_bundle_for_trust_domain(const TrustDomain& td) const override;

 protected:
  X509SourceReaders() = default;
};

/// The X.509 profile: one `FetchX509SVID` stream; publishes the `X509Context` with the SVID
/// the picker chose.
struct X509Profile {
  using snapshot_type = detail::X509Snapshot;
  using view_type = X509Context;
  using readers = X509SourceReaders;
  struct options {
    X509SvidPicker picker;
  };
};

/// This workload's X.509-SVIDs and bundles (see `basic_source` for what every source does).
/// `is_healthy` asks for an SVID that has not expired and one authority at least.
using X509Source = basic_source<X509Profile>;
using X509SourceBuilder = basic_source_builder<X509Profile>;
/// The sequence numbers of an `X509Source`'s updates, and waiting for the next one (`wait_for`
/// sees each update's `X509Context`).
using X509SourceUpdates = SourceUpdates<X509Profile>;

extern template class basic_source<X509Profile>;
extern template class SourceUpdates<X509Profile>;

}  // namespace awaken::spiffe
