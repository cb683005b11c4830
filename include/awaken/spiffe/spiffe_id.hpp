// SPIFFE IDs and trust domains (SPIFFE-ID standard, section 2).
#pragma once

#include <compare>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace awaken::spiffe {

/// The longest trust domain name accepted, in bytes.
inline constexpr std::size_t max_trust_domain_bytes = 255;
/// The longest SPIFFE ID accepted, in bytes.
inline constexpr std::size_t max_spiffe_id_bytes = 2048;

/// A trust domain name: 1 to 255 bytes of [a-z0-9.-_], canonicalised to lowercase.
///
/// Thread safety: an immutable value.
class TrustDomain {
 public:
  /// An empty trust domain (`name()` is ""), which no parse returns; for containers and for
  /// results that Asio default-constructs.
  TrustDomain() = default;

  /// Parses a trust domain name (`example.org`, case-insensitive) or, when the text holds
  /// `://`, a SPIFFE ID whose trust domain is taken (the whole ID must be valid). Throws
  /// `awaken::Error` with a `spiffe_errc` code and a message naming the offending part:
  /// `missing_trust_domain` (empty), `wrong_scheme` (another scheme, or `:/` without `//`),
  /// `trust_domain_too_long`, `bad_trust_domain_char` (so a port, user info or percent-encoding),
  /// or any code of `SpiffeId::parse`.
  static TrustDomain parse(std::string_view text);
  /// As `parse`, without throwing: nullopt and `ec` set on failure.
  static std::optional<TrustDomain> parse(std::string_view text, std::error_code& ec);

  /// The canonical (lowercase) name, `example.org`.
  const std::string& name() const noexcept { return name_; }
  /// `spiffe://example.org`.
  std::string id_string() const { return "spiffe://" + name_; }

  friend bool operator==(const TrustDomain&, const TrustDomain&) = default;
  friend std::strong_ordering operator<=>(const TrustDomain& a, const TrustDomain& b) noexcept {
    return a.name_.compare(b.name_) <=> 0;
  }

 private:
  explicit TrustDomain(std::string name) noexcept : name_(std::move(name)) {}
  friend class SpiffeId;
  std::string name_;
};

/// A SPIFFE ID, `spiffe://<trust domain><path>`: scheme and trust domain canonicalised to
/// lowercase, path case kept; at most 2048 bytes; the path empty or `/`-separated segments of
/// [a-zA-Z0-9.-_], none empty, `.` or `..`, and no trailing slash. So no percent-encoding,
/// query, fragment, user info or port can appear.
///
/// Thread safety: an immutable value. Equality, ordering (by trust domain, then path) and
/// hashing work on the canonical form.
class SpiffeId {
 public:
  /// An empty ID (`str()` is "", `empty()` true), which no parse returns; for containers and for
  /// results that Asio default-constructs.
  SpiffeId() = default;
  bool empty() const noexcept { return text_.empty(); }

  /// Throws `awaken::Error` with a `spiffe_errc` code (`empty`, `id_too_long`,
  /// `wrong_scheme`, `missing_trust_domain`, `trust_domain_too_long`, `bad_trust_domain_char`,
  /// `empty_segment`, `dot_segment`, `trailing_slash`, `bad_path_char`) and a message that
  /// quotes the input and names the offending byte or segment.
  static SpiffeId parse(std::string_view text);
  /// As `parse`, without throwing: nullopt and `ec` set on failure.
  static std::optional<SpiffeId> parse(std::string_view text, std::error_code& ec);

  /// `spiffe://<td>/<s1>/<s2>...`; each segment must be a valid, non-empty segment without `/`.
  /// Throws as `parse` does (`id_too_long` over 2048 bytes).
  static SpiffeId from_segments(const TrustDomain& td, std::span<const std::string_view> segments);
  static SpiffeId from_segments(const TrustDomain& td, std::initializer_list<std::string_view> segments) {
    return from_segments(td, std::span<const std::string_view>{segments.begin(), segments.size()});
  }

  const TrustDomain& trust_domain() const noexcept { return td_; }
  /// The path, empty or starting with `/`.
  std::string_view path() const noexcept {
    return text_.empty() ? std::string_view{} : std::string_view{text_}.substr(9 + td_.name().size());
  }
  /// The canonical text.
  const std::string& str() const noexcept { return text_; }
  bool member_of(const TrustDomain& td) const noexcept { return td_ == td; }

  friend bool operator==(const SpiffeId& a, const SpiffeId& b) noexcept { return a.text_ == b.text_; }
  friend std::strong_ordering operator<=>(const SpiffeId& a, const SpiffeId& b) noexcept {
    if (auto c = a.td_ <=> b.td_; c != 0) return c;
    return a.path().compare(b.path()) <=> 0;
  }

 private:
  SpiffeId(TrustDomain td, std::string text) noexcept : td_(std::move(td)), text_(std::move(text)) {}
  TrustDomain td_;
  std::string text_;
};

inline std::ostream& operator<<(std::ostream& os, const TrustDomain& td) { return os << td.name(); }
inline std::ostream& operator<<(std::ostream& os, const SpiffeId& id) { return os << id.str(); }
inline std::string to_string(const TrustDomain& td) { return td.name(); }
inline std::string to_string(const SpiffeId& id) { return id.str(); }

}  // namespace awaken::spiffe

template <>
struct std::hash<awaken::spiffe::TrustDomain> {
  std::size_t operator()(const awaken::spiffe::TrustDomain& td) const noexcept {
    return std::hash<std::string_view>{}(td.name());
  }
};
template <>
struct std::hash<awaken::spiffe::SpiffeId> {
  std::size_t operator()(const awaken::spiffe::SpiffeId& id) const noexcept {
    return std::hash<std::string_view>{}(id.str());
  }
};
