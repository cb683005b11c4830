// SPIFFE ID and trust domain parsing: one scanner, a throwing and a non-throwing front.
#include <awaken/error.hpp>
#include <awaken/spiffe/spiffe_id.hpp>

#include <array>

namespace awaken::spiffe {
namespace {

constexpr std::string_view scheme = "spiffe://";

// One lookup per byte: bit 1 trust domain bytes, bit 2 path bytes.
constexpr auto classes = [] {
  std::array<unsigned char, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = 3;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = 2;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = 3;
  for (unsigned char c : {'.', '-', '_'}) t[c] = 3;
  return t;
}();

bool td_byte(unsigned char c) noexcept { return (classes[c] & 1) != 0; }
bool path_byte(unsigned char c) noexcept { return (classes[c] & 2) != 0; }
char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// What went wrong, where: enough to throw a message naming the part, or to set an error_code.
struct Failure {
  spiffe_errc code{};
  std::size_t at = 0;  // byte offset in the input
  bool byte = false;   // whether `at` names an offending byte
};

// Checks a trust domain name; on success appends its lowercase form to `out`.
bool scan_trust_domain(std::string_view td, std::size_t offset, std::string& out, Failure& f) {
  if (td.empty()) return f = {spiffe_errc::missing_trust_domain, offset}, false;
  if (td.size() > max_trust_domain_bytes) return f = {spiffe_errc::trust_domain_too_long, offset}, false;
  const std::size_t start = out.size();
  out.resize(start + td.size());
  for (std::size_t i = 0; i < td.size(); ++i) {
    const char c = lower(td[i]);
    if (!td_byte(static_cast<unsigned char>(c))) {
      out.resize(start);
      return f = {spiffe_errc::bad_trust_domain_char, offset + i, true}, false;
    }
    out[start + i] = c;
  }
  return true;
}

// Checks one path segment (without its slash).
bool scan_segment(std::string_view seg, std::size_t offset, bool last, Failure& f) {
  if (seg.empty()) return f = {last ? spiffe_errc::trailing_slash : spiffe_errc::empty_segment, offset}, false;
  if (seg == "." || seg == "..") return f = {spiffe_errc::dot_segment, offset}, false;
  for (std::size_t i = 0; i < seg.size(); ++i)
    if (!path_byte(static_cast<unsigned char>(seg[i])))
      return f = {spiffe_errc::bad_path_char, offset + i, true}, false;
  return true;
}

// Parses a whole ID into canonical `text`, with the trust domain's length in `td_len`.
bool scan_id(std::string_view in, std::string& text, std::size_t& td_len, Failure& f) {
  if (in.empty()) return f = {spiffe_errc::empty, 0}, false;
  if (in.size() > max_spiffe_id_bytes) return f = {spiffe_errc::id_too_long, 0}, false;
  if (in.size() < scheme.size()) return f = {spiffe_errc::wrong_scheme, 0}, false;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (lower(in[i]) != scheme[i]) return f = {spiffe_errc::wrong_scheme, 0}, false;
  const std::string_view rest = in.substr(scheme.size());
  const std::size_t slash = rest.find('/');
  const std::string_view td = rest.substr(0, slash);
  text.reserve(in.size());
  text.assign(scheme);
  if (!scan_trust_domain(td, scheme.size(), text, f)) return false;
  td_len = td.size();
  if (slash == std::string_view::npos) return true;
  std::string_view path = rest.substr(slash);  // starts with '/'
  std::size_t offset = scheme.size() + slash;
  while (!path.empty()) {
    path.remove_prefix(1);
    ++offset;
    const std::size_t next = path.find('/');
    const std::string_view seg = path.substr(0, next);
    if (!scan_segment(seg, offset, next == std::string_view::npos, f)) return false;
    if (next == std::string_view::npos) break;
    path.remove_prefix(next);
    offset += next;
  }
  text.append(rest.substr(slash));
  return true;
}

// "SPIFFE ID 'spiffe://td/a%20b': '%' at byte 14: path has a character outside [a-zA-Z0-9.-_]"
[[noreturn]] void raise(std::string_view kind, std::string_view input, const Failure& f) {
  std::string context = std::string{kind} + " '" + bounded_excerpt(input, 160) + "'";
  if (f.byte && f.at < input.size()) {
    context += ": '" + bounded_excerpt(input.substr(f.at, 1), 4) + "' at byte " + std::to_string(f.at);
  } else if (f.at > 0) {
    context += " at byte " + std::to_string(f.at);
  }
  throw_error(f.code, context);
}

bool scan_td_text(std::string_view in, std::string& name, Failure& f) {
  if (in.find("://") != std::string_view::npos) {
    std::string text;
    std::size_t td_len = 0;
    if (!scan_id(in, text, td_len, f)) return false;
    name = text.substr(scheme.size(), td_len);
    return true;
  }
  if (in.find(":/") != std::string_view::npos) return f = {spiffe_errc::wrong_scheme, 0}, false;
  return scan_trust_domain(in, 0, name, f);
}

}  // namespace

TrustDomain TrustDomain::parse(std::string_view text) {
  std::string name;
  Failure f;
  if (!scan_td_text(text, name, f)) raise("trust domain", text, f);
  return TrustDomain{std::move(name)};
}

std::optional<TrustDomain> TrustDomain::parse(std::string_view text, std::error_code& ec) {
  std::string name;
  Failure f;
  if (!scan_td_text(text, name, f)) {
    ec = f.code;
    return std::nullopt;
  }
  ec.clear();
  return TrustDomain{std::move(name)};
}

SpiffeId SpiffeId::parse(std::string_view text) {
  std::string canonical;
  std::size_t td_len = 0;
  Failure f;
  if (!scan_id(text, canonical, td_len, f)) raise("SPIFFE ID", text, f);
  TrustDomain td{canonical.substr(scheme.size(), td_len)};
  return SpiffeId{std::move(td), std::move(canonical)};
}

std::optional<SpiffeId> SpiffeId::parse(std::string_view text, std::error_code& ec) {
  std::string canonical;
  std::size_t td_len = 0;
  Failure f;
  if (!scan_id(text, canonical, td_len, f)) {
    ec = f.code;
    return std::nullopt;
  }
  ec.clear();
  TrustDomain td{canonical.substr(scheme.size(), td_len)};
  return SpiffeId{std::move(td), std::move(canonical)};
}

SpiffeId SpiffeId::from_segments(const TrustDomain& td, std::span<const std::string_view> segments) {
  if (td.name().empty())
    throw_error(spiffe_errc::missing_trust_domain, "SPIFFE ID from segments of an empty trust domain");
  std::string text = td.id_string();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string_view seg = segments[i];
    Failure f;
    const bool ok = seg.find('/') == std::string_view::npos
                        ? scan_segment(seg, 0, false, f)
                        : (f = {spiffe_errc::bad_path_char, seg.find('/'), true}, false);
    if (!ok) {
      std::string context = "SPIFFE ID segment " + std::to_string(i) + " '" + bounded_excerpt(seg, 160) + "'";
      if (f.byte) context += ": '" + bounded_excerpt(seg.substr(f.at, 1), 4) + "' at byte " + std::to_string(f.at);
      throw_error(f.code, context);
    }
    text += '/';
    text += seg;
    if (text.size() > max_spiffe_id_bytes)
      throw_error(spiffe_errc::id_too_long, "SPIFFE ID from segments of " + td.name());
  }
  return SpiffeId{td, std::move(text)};
}

}  // namespace awaken::spiffe
