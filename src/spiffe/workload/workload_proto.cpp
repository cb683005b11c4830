// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/), only as much as the
// Workload API's JWT messages need.
#include "spiffe/workload/workload_proto.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <awaken/error.hpp>

namespace awaken::spiffe::detail {
namespace {

constexpr int max_depth = 64;

enum Wire : int { varint_wire = 0, fixed64_wire = 1, bytes_wire = 2, fixed32_wire = 5 };

[[noreturn]] void malformed(std::string_view message, const std::string& why) {
  throw_error(spiffe_errc::malformed_message, "Workload API " + std::string{message} + ": " + why);
}

bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else
      return false;
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

struct Field {
  std::uint32_t number = 0;
  int wire = 0;
  std::uint64_t value = 0;  // varint, fixed64 or fixed32
  std::string_view bytes;   // length-delimited
};

class Reader {
 public:
  Reader(std::string_view data, std::string_view message) : data_(data), message_(message) {}
  bool done() const noexcept { return pos_ == data_.size(); }

  Field next() {
    Field f;
    const std::uint64_t tag = varint();
    f.number = static_cast<std::uint32_t>(tag >> 3);
    f.wire = static_cast<int>(tag & 7);
    if (f.number == 0 || (tag >> 3) > 0x1FFFFFFF) malformed(message_, "field number 0 or out of range");
    switch (f.wire) {
      case varint_wire: f.value = varint(); break;
      case fixed64_wire: f.value = fixed(8); break;
      case fixed32_wire: f.value = fixed(4); break;
      case bytes_wire: {
        const std::uint64_t len = varint();
        if (len > data_.size() - pos_) malformed(message_, "a length-delimited field runs past the end");
        f.bytes = data_.substr(pos_, static_cast<std::size_t>(len));
        pos_ += static_cast<std::size_t>(len);
        break;
      }
      default: malformed(message_, "wire type " + std::to_string(f.wire) + " (groups are not accepted)");
    }
    return f;
  }

  // A string field: length-delimited, valid UTF-8.
  std::string string(const Field& f, const char* name) const {
    if (f.wire != bytes_wire) malformed(message_, std::string{name} + " is not length-delimited");
    if (!valid_utf8(f.bytes)) malformed(message_, std::string{name} + " is not valid UTF-8");
    return std::string{f.bytes};
  }
  std::string bytes(const Field& f, const char* name) const {
    if (f.wire != bytes_wire) malformed(message_, std::string{name} + " is not length-delimited");
    return std::string{f.bytes};
  }
  std::string_view message_name() const noexcept { return message_; }

 private:
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == data_.size()) malformed(message_, "truncated varint");
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      if (shift == 63 && b > 1) malformed(message_, "varint over 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    malformed(message_, "varint longer than 10 bytes");
  }
  std::uint64_t fixed(std::size_t n) {
    if (data_.size() - pos_ < n) malformed(message_, "truncated fixed-width field");
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }

  std::string_view data_;
  std::string_view message_;
  std::size_t pos_ = 0;
};

class Writer {
 public:
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_ += static_cast<char>((v & 0x7F) | 0x80);
      v >>= 7;
    }
    out_ += static_cast<char>(v);
  }
  void bytes(std::uint32_t number, std::string_view b) {
    varint((static_cast<std::uint64_t>(number) << 3) | bytes_wire);
    varint(b.size());
    out_ += b;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

nlohmann::json decode_value(std::string_view data, int depth);

nlohmann::json decode_struct(std::string_view data, int depth) {
  if (depth > max_depth) malformed("ValidateJWTSVIDResponse", "claims nested deeper than 64");
  nlohmann::json out = nlohmann::json::object();
  Reader r{data, "ValidateJWTSVIDResponse"};
  while (!r.done()) {
    const Field f = r.next();
    if (f.number != 1) continue;
    if (f.wire != bytes_wire) malformed(r.message_name(), "a Struct entry is not length-delimited");
    Reader entry{f.bytes, "ValidateJWTSVIDResponse"};
    std::string key;
    nlohmann::json value;  // an entry without a value is null
    while (!entry.done()) {
      const Field e = entry.next();
      if (e.number == 1)
        key = entry.string(e, "a claim name");
      else if (e.number == 2 && e.wire == bytes_wire)
        value = decode_value(e.bytes, depth + 1);
      else if (e.number == 2)
        malformed(r.message_name(), "a claim value is not length-delimited");
    }
    out[key] = std::move(value);  // a repeated key: the last wins, as for any protobuf map
  }
  return out;
}

nlohmann::json decode_value(std::string_view data, int depth) {
  if (depth > max_depth) malformed("ValidateJWTSVIDResponse", "claims nested deeper than 64");
  nlohmann::json out;  // no kind set: null
  Reader r{data, "ValidateJWTSVIDResponse"};
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case 1: out = nullptr; break;
      case 2: {
        if (f.wire != fixed64_wire) malformed(r.message_name(), "number_value is not a double");
        double d = 0;
        std::memcpy(&d, &f.value, sizeof d);
        if (!std::isfinite(d))
          out = nullptr;
        else if (d == std::floor(d) && std::fabs(d) < 9.2e18)
          out = static_cast<std::int64_t>(d);
        else
          out = d;
        break;
      }
      case 3: out = r.string(f, "string_value"); break;
      case 4:
        if (f.wire != varint_wire) malformed(r.message_name(), "bool_value is not a varint");
        out = f.value != 0;
        break;
      case 5:
        if (f.wire != bytes_wire) malformed(r.message_name(), "struct_value is not length-delimited");
        out = decode_struct(f.bytes, depth + 1);
        break;
      case 6: {
        if (f.wire != bytes_wire) malformed(r.message_name(), "list_value is not length-delimited");
        out = nlohmann::json::array();
        Reader list{f.bytes, "ValidateJWTSVIDResponse"};
        while (!list.done()) {
          const Field item = list.next();
          if (item.number != 1) continue;
          if (item.wire != bytes_wire) malformed(r.message_name(), "a list item is not length-delimited");
          out.push_back(decode_value(item.bytes, depth + 1));
        }
        break;
      }
      default: break;
    }
  }
  return out;
}

}  // namespace

std::string encode_jwt_svid_request(std::span<const std::string> audiences, std::string_view spiffe_id) {
  Writer w;
  for (const auto& a : audiences) w.bytes(1, a);
  if (!spiffe_id.empty()) w.bytes(2, spiffe_id);
  return w.take();
}

std::string encode_validate_jwt_svid_request(std::string_view audience, std::string_view svid) {
  Writer w;
  w.bytes(1, audience);
  w.bytes(2, svid);
  return w.take();
}

std::vector<JwtSvidEntry> decode_jwt_svid_response(std::string_view message, std::size_t max_entries) {
  std::vector<JwtSvidEntry> out;
  Reader r{message, "JWTSVIDResponse"};
  while (!r.done()) {
    const Field f = r.next();
    if (f.number != 1 || out.size() >= max_entries) continue;
    if (f.wire != bytes_wire) malformed(r.message_name(), "svids is not length-delimited");
    JwtSvidEntry e;
    Reader svid{f.bytes, "JWTSVIDResponse"};
    while (!svid.done()) {
      const Field g = svid.next();
      if (g.number == 1)
        e.spiffe_id = svid.string(g, "spiffe_id");
      else if (g.number == 2)
        e.svid = svid.string(g, "svid");
      else if (g.number == 3)
        e.hint = svid.string(g, "hint");
    }
    out.push_back(std::move(e));
  }
  return out;
}

namespace {

// One map<string, bytes> entry: key = 1, value = 2.
std::pair<std::string, std::string_view> map_entry(const Reader& r, const Field& f, const char* what) {
  if (f.wire != bytes_wire) malformed(r.message_name(), std::string{what} + " is not length-delimited");
  std::pair<std::string, std::string_view> entry;
  Reader e{f.bytes, r.message_name()};
  while (!e.done()) {
    const Field g = e.next();
    if (g.number == 1)
      entry.first = e.string(g, "a bundle key");
    else if (g.number == 2) {
      if (g.wire != bytes_wire) malformed(r.message_name(), "a bundle is not length-delimited");
      entry.second = g.bytes;
    }
  }
  return entry;
}

template <class Entries>
void refuse_duplicate_keys(const Entries& entries, std::string_view message) {
  std::vector<std::string_view> keys;
  keys.reserve(entries.size());
  for (const auto& e : entries) keys.emplace_back(e.first);
  std::sort(keys.begin(), keys.end());
  if (auto dup = std::adjacent_find(keys.begin(), keys.end()); dup != keys.end())
    malformed(message, "trust domain '" + bounded_excerpt(*dup, 64) + "' twice");
}

[[noreturn]] void too_many(std::string_view message, std::size_t max, const char* what) {
  throw_error(spiffe_errc::resource_limit_exceeded,
              "Workload API " + std::string{message} + ": more than " + std::to_string(max) + " " + what);
}

// Bundle map entries of field `number`, at most `max_entries`.
std::vector<std::pair<std::string, std::string_view>> bundle_map(std::string_view message, std::string_view name,
                                                                 std::uint32_t number, std::size_t max_entries) {
  std::vector<std::pair<std::string, std::string_view>> out;
  Reader r{message, name};
  while (!r.done()) {
    const Field f = r.next();
    if (f.number != number) continue;
    if (out.size() == max_entries) too_many(name, max_entries, "trust domains");
    out.push_back(map_entry(r, f, "bundles"));
  }
  refuse_duplicate_keys(out, name);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> decode_jwt_bundles_response(std::string_view message,
                                                                             std::size_t max_entries) {
  auto views = bundle_map(message, "JWTBundlesResponse", 1, max_entries);
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(views.size());
  for (auto& [key, value] : views) out.emplace_back(std::move(key), std::string{value});
  return out;
}

std::vector<std::pair<std::string, std::string>> decode_wit_bundles_response(std::string_view message,
                                                                             std::size_t max_entries) {
  auto views = bundle_map(message, "WITBundlesResponse", 1, max_entries);
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(views.size());
  for (auto& [key, value] : views) {
    if (!valid_utf8(value)) malformed("WITBundlesResponse", "a bundle is not UTF-8");
    out.emplace_back(std::move(key), std::string{value});
  }
  return out;
}

std::string encode_wit_svid_request(std::string_view spiffe_id) {
  Writer w;
  if (!spiffe_id.empty()) w.bytes(1, spiffe_id);
  return w.take();
}

std::vector<WitSvidEntry> decode_wit_svid_response(std::string_view message, std::size_t max_svids) {
  std::vector<WitSvidEntry> out;
  Reader r{message, "WITSVIDResponse"};
  while (!r.done()) {
    const Field f = r.next();
    if (f.number != 1) continue;
    if (out.size() == max_svids)
      throw_error(spiffe_errc::too_many_svids,
                  "Workload API WITSVIDResponse: more than " + std::to_string(max_svids) + " SVIDs");
    if (f.wire != bytes_wire) malformed(r.message_name(), "svids is not length-delimited");
    WitSvidEntry e;
    Reader svid{f.bytes, "WITSVIDResponse"};
    while (!svid.done()) {
      const Field g = svid.next();
      if (g.number == 1) {
        e.spiffe_id = svid.string(g, "spiffe_id");
      } else if (g.number == 2) {
        e.svid = svid.string(g, "wit_svid");
      } else if (g.number == 3) {
        // Checked as a string is, without a copy of the private key.
        if (g.wire != bytes_wire) malformed(r.message_name(), "wit_svid_key is not length-delimited");
        if (!valid_utf8(g.bytes)) malformed(r.message_name(), "wit_svid_key is not UTF-8");
        e.key = g.bytes;
      } else if (g.number == 4) {
        e.hint = svid.string(g, "hint");
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

X509SvidResponse decode_x509_svid_response(std::string_view message, std::size_t max_svids, std::size_t max_bundles) {
  X509SvidResponse out;
  Reader r{message, "X509SVIDResponse"};
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == 1) {
      if (out.svids.size() == max_svids)
        throw_error(spiffe_errc::too_many_svids,
                    "Workload API X509SVIDResponse: more than " + std::to_string(max_svids) + " SVIDs");
      if (f.wire != bytes_wire) malformed(r.message_name(), "svids is not length-delimited");
      X509SvidEntry e;
      Reader svid{f.bytes, r.message_name()};
      while (!svid.done()) {
        const Field g = svid.next();
        switch (g.number) {
          case 1: e.spiffe_id = svid.string(g, "spiffe_id"); break;
          case 5: e.hint = svid.string(g, "hint"); break;
          case 2:
          case 3:
          case 4: {
            if (g.wire != bytes_wire) malformed(r.message_name(), "an SVID's bytes are not length-delimited");
            (g.number == 2 ? e.chain : g.number == 3 ? e.key : e.bundle) = g.bytes;
            break;
          }
          default: break;
        }
      }
      out.svids.push_back(std::move(e));
    } else if (f.number == 3) {
      if (out.federated.size() == max_bundles) too_many(r.message_name(), max_bundles, "federated trust domains");
      out.federated.push_back(map_entry(r, f, "federated_bundles"));
    }
  }
  refuse_duplicate_keys(out.federated, r.message_name());
  return out;
}

std::vector<std::pair<std::string, std::string_view>> decode_x509_bundles_response(std::string_view message,
                                                                                   std::size_t max_entries) {
  return bundle_map(message, "X509BundlesResponse", 2, max_entries);
}

ValidateResponse decode_validate_jwt_svid_response(std::string_view message) {
  ValidateResponse out;
  Reader r{message, "ValidateJWTSVIDResponse"};
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == 1) {
      out.spiffe_id = r.string(f, "spiffe_id");
    } else if (f.number == 2) {
      if (f.wire != bytes_wire) malformed(r.message_name(), "claims is not length-delimited");
      out.claims = decode_struct(f.bytes, 1);
    }
  }
  return out;
}

}  // namespace awaken::spiffe::detail
