// Workload proof tokens: making them per request, and the receiving side's checks in the
// draft's order, with a bounded replay cache.
#include <awaken/error.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/spiffe/experimental/wpt.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/bounded_json.hpp"
#include "core/url_text.hpp"
#include "spiffe/identity/jwt_claims.hpp"

namespace awaken::spiffe::experimental {
namespace {

using awaken::detail::append_json_string;
using awaken::detail::has_control;
using awaken::detail::is_absolute_http;
using awaken::detail::is_tchar;
using awaken::detail::without_query;

constexpr const char* what = "workload proof token";
constexpr std::size_t max_jti_bytes = 256;
constexpr std::size_t max_oth_entries = 32;

[[noreturn]] void fail(std::error_code code, const std::string& context) {
  throw_error(code, std::string{what} + ": " + context);
}

std::string_view trim(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x + 32 : x) == (y >= 'A' && y <= 'Z' ? y + 32 : y);
         });
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

}  // namespace

WptHeaders make_workload_proof(const WitSvid& svid, const WptRequest& request, const WptOptions& options) {
  const jose::JwsSigner* signer = svid.proof_signer();
  if (signer == nullptr) throw_error(spiffe_errc::missing_private_key, "make_workload_proof");
  if (!is_absolute_http(request.target_uri))
    fail(spiffe_errc::proof_mismatch, "the target is not an absolute http(s) URI");
  const long long now = detail::now_seconds(options.clock);
  const std::string jti = jose::random_base64url(16);

  std::string claims;
  claims.reserve(160 + request.target_uri.size() + 48 * request.other_headers.size());
  claims += "{\"aud\":";
  // An empty path is "/" (RFC 3986 section 6.2.3), as the verifier reads the request's.
  const std::string_view aud = without_query(request.target_uri);
  append_json_string(claims, aud);
  if (aud.find('/', aud.find("://") + 3) == std::string_view::npos) {
    claims.pop_back();
    claims += "/\"";
  }
  claims += ",\"exp\":";
  claims += std::to_string(detail::add_seconds(now, std::max<long long>(options.lifetime.count(), 1)));
  claims += ",\"jti\":\"";
  claims += jti;
  claims += "\",\"wth\":\"";
  claims += svid.token_hash();
  claims += '"';
  if (!request.access_token.empty()) {
    claims += ",\"ath\":\"";
    claims += jose::sha256_base64url(request.access_token);
    claims += '"';
  }
  if (!request.transaction_token.empty()) {
    claims += ",\"tth\":\"";
    claims += jose::sha256_base64url(request.transaction_token);
    claims += '"';
  }
  if (!request.other_headers.empty()) {
    // What a verifier refuses is not made: more than 32 entries, or a header named twice (its
    // value would be ambiguous).
    if (request.other_headers.size() > max_oth_entries)
      fail(spiffe_errc::proof_mismatch, "more than 32 headers for oth");
    claims += ",\"oth\":{";
    bool first = true;
    for (auto it = request.other_headers.begin(); it != request.other_headers.end(); ++it) {
      const auto& [name, value] = *it;
      if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar) || has_control(value))
        fail(spiffe_errc::proof_mismatch, "a header for oth is not an HTTP header");
      const std::string_view this_name = name;
      if (std::any_of(request.other_headers.begin(), it, [&](const auto& h) { return iequals(h.first, this_name); }))
        fail(spiffe_errc::proof_mismatch, "a header for oth is named twice");
      if (!first) claims += ',';
      first = false;
      append_json_string(claims, lower(name));
      claims += ":\"";
      claims += jose::sha256_base64url(trim(value));
      claims += '"';
    }
    claims += '}';
  }
  claims += '}';
  return WptHeaders{svid.token(), RedactedString{signer->sign(claims)}};
}

// --- verification ------------------------------------------------------------------------------

namespace {

// Forwards to a bundle source and keeps the bundle it handed out, so that a cached WIT-SVID
// knows which bundle validated it.
class RecordingBundles final : public BundleSource {
 public:
  explicit RecordingBundles(const BundleSource& inner) : inner_(inner) {}
  std::shared_ptr<const JwtBundle> bundle_for_trust_domain(const TrustDomain& td) const override {
    seen_ = inner_.bundle_for_trust_domain(td);
    return seen_;
  }
  std::shared_ptr<const JwtBundle> take() { return std::move(seen_); }

 private:
  const BundleSource& inner_;
  mutable std::shared_ptr<const JwtBundle> seen_;
};

}  // namespace

struct WptVerifier::Impl {
  std::shared_ptr<const BundleSource> bundles;
  WptVerifierOptions options;

  // Validated WIT-SVIDs by their text (the key views the text the entry's WitSvid holds). The
  // bundle that validated one is held too: it is immutable, so while the source still hands out
  // that very bundle the signature needs no second check.
  struct Remembered {
    WitSvid wit;
    std::shared_ptr<const JwtBundle> bundle;
    long long not_before;   // nbf minus leeway (seconds), or the lowest value
    long long valid_until;  // exp plus leeway (seconds)
  };
  mutable std::shared_mutex wit_mutex;
  mutable std::unordered_map<std::string_view, Remembered> wits;
  mutable std::atomic<std::uint64_t> wit_hits{0};
  mutable std::atomic<std::uint64_t> wit_misses{0};

  // The remembered WIT-SVID of this text, while the time and its trust domain's bundle allow.
  std::optional<WitSvid> remembered(std::string_view token, long long now) const {
    std::optional<Remembered> found;
    {
      const std::shared_lock lock{wit_mutex};
      const auto it = wits.find(token);
      if (it == wits.end() || now < it->second.not_before || now > it->second.valid_until) return std::nullopt;
      found = it->second;
    }
    // The source is asked outside the lock (a thread-local view for a WitSource).
    if (bundles->bundle_for_trust_domain(found->wit.spiffe_id().trust_domain()).get() != found->bundle.get())
      return std::nullopt;
    return std::move(found->wit);
  }

  WitSvid validated_wit(std::string_view token) const {
    const auto& o = options;
    const long long now = detail::now_seconds(o.wit.clock);
    if (o.wit_cache_capacity > 0) {
      if (auto hit = remembered(token, now)) {
        wit_hits.fetch_add(1, std::memory_order_relaxed);
        return std::move(*hit);
      }
    }
    wit_misses.fetch_add(1, std::memory_order_relaxed);
    RecordingBundles recording{*bundles};
    WitSvid wit = WitSvid::parse_and_validate(token, recording, o.wit);
    if (o.wit_cache_capacity > 0) remember_wit(wit, recording.take(), now);
    return wit;
  }

  void remember_wit(const WitSvid& wit, std::shared_ptr<const JwtBundle> bundle, long long now) const {
    const long long leeway = std::max<long long>(options.wit.leeway.count(), 0);
    const auto nbf = detail::numeric_date(wit.claims(), "nbf", "WIT-SVID");
    Remembered entry{
        wit, std::move(bundle),
        nbf ? detail::add_seconds(detail::whole_seconds(*nbf), -leeway) : std::numeric_limits<long long>::min(),
        detail::add_seconds(std::chrono::floor<std::chrono::seconds>(wit.expiry().time_since_epoch()).count(), leeway)};
    const std::unique_lock lock{wit_mutex};
    // A stale entry for the same text (expired, or validated under an older bundle) goes.
    if (const auto old = wits.find(wit.token().reveal()); old != wits.end()) wits.erase(old);
    if (wits.size() >= options.wit_cache_capacity) {
      std::erase_if(wits, [now](const auto& e) { return e.second.valid_until < now; });
      if (wits.size() >= options.wit_cache_capacity)
        wits.erase(std::min_element(wits.begin(), wits.end(), [](const auto& a, const auto& b) {
          return a.second.valid_until < b.second.valid_until;
        }));
    }
    const std::string_view key = entry.wit.token().reveal();
    wits.emplace(key, std::move(entry));
  }

  // Live jti per caller, with a min-heap of expiries for pruning.
  mutable std::mutex mutex;
  mutable std::unordered_map<std::string, long long> seen;
  mutable std::priority_queue<std::pair<long long, std::string>, std::vector<std::pair<long long, std::string>>,
                              std::greater<>>
      expiries;

  void remember(std::string key, long long until, long long now) const {
    const std::lock_guard lock{mutex};
    while (!expiries.empty() && expiries.top().first < now) {
      seen.erase(expiries.top().second);
      expiries.pop();
    }
    if (seen.contains(key)) fail(spiffe_errc::replayed_proof, "jti already seen");
    if (seen.size() >= options.replay_cache_capacity)
      fail(spiffe_errc::replay_cache_full, std::to_string(seen.size()) + " live entries");
    seen.emplace(key, until);
    expiries.emplace(until, std::move(key));
  }
};

WptVerifier::WptVerifier(std::shared_ptr<const BundleSource> wit_bundles, WptVerifierOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!wit_bundles) throw_error(spiffe_errc::bundle_not_found, "WptVerifier: no WIT bundle source");
  if (options.origins.empty()) throw_error(spiffe_errc::invalid_endpoint, "WptVerifier: no origin configured");
  for (auto& origin : options.origins) {
    if (!is_absolute_http(origin) || without_query(origin).size() != origin.size())
      throw_error(spiffe_errc::invalid_endpoint,
                  "WptVerifier: origin '" + bounded_excerpt(origin, 128) + "' is not http(s)://authority");
    const auto scheme_end = origin.find("://") + 3;
    if (origin.find('/', scheme_end) != std::string::npos)
      throw_error(spiffe_errc::invalid_endpoint,
                  "WptVerifier: origin '" + bounded_excerpt(origin, 128) + "' has a path");
  }
  impl_->bundles = std::move(wit_bundles);
  impl_->options = std::move(options);
}

WptVerifier::~WptVerifier() = default;

std::size_t WptVerifier::replay_cache_size() const {
  const std::lock_guard lock{impl_->mutex};
  return impl_->seen.size();
}

WptVerifierStats WptVerifier::stats() const {
  WptVerifierStats out;
  out.replay_entries = replay_cache_size();
  {
    const std::shared_lock lock{impl_->wit_mutex};
    out.wit_cache_entries = impl_->wits.size();
  }
  out.wit_cache_hits = impl_->wit_hits.load(std::memory_order_relaxed);
  out.wit_cache_misses = impl_->wit_misses.load(std::memory_order_relaxed);
  return out;
}

WptVerified WptVerifier::verify(const WptPresented& request) const {
  const auto& o = impl_->options;
  // 1. One header of each kind.
  if (request.identity_tokens.empty()) fail(spiffe_errc::missing_proof, "no Workload-Identity-Token header");
  if (request.proof_tokens.empty()) fail(spiffe_errc::missing_proof, "no Workload-Proof-Token header");
  if (request.identity_tokens.size() > 1)
    fail(spiffe_errc::multiple_proofs, "more than one Workload-Identity-Token header");
  if (request.proof_tokens.size() > 1) fail(spiffe_errc::multiple_proofs, "more than one Workload-Proof-Token header");

  // 2. The WIT-SVID, then the proof under its cnf key.
  WitSvid wit = impl_->validated_wit(request.identity_tokens.front());
  std::optional<jose::CompactJws> parsed;
  try {
    parsed.emplace(jose::CompactJws::parse(request.proof_tokens.front(), o.max_proof_bytes));
  } catch (const Error& e) {
    fail(detail::from_jose(e.code()), e.what());
  }
  const jose::CompactJws& jws = *parsed;
  const auto typ = jws.header().find("typ");
  if (typ == jws.header().end() || !typ->is_string() ||
      (typ->get_ref<const std::string&>() != "wpt+jwt" && typ->get_ref<const std::string&>() != "application/wpt+jwt"))
    fail(spiffe_errc::invalid_typ, "typ must be wpt+jwt");
  if (jws.algorithm() != wit.confirmation_algorithm())
    fail(spiffe_errc::algorithm_mismatch, "alg " + std::string{jose::to_string(jws.algorithm())} +
                                              " with the WIT-SVID's confirmation key (cnf.jwk, alg " +
                                              std::string{jose::to_string(wit.confirmation_algorithm())} + ")");
  std::error_code ec;
  if (!jws.verify(wit.confirmation_key(), ec)) fail(jose_errc::invalid_signature, "under the WIT-SVID's cnf.jwk");

  const auto claims = awaken::detail::parse_bounded_json(jws.payload());
  if (!claims.is_object() || awaken::detail::starts_with_bom(jws.payload()))
    fail(spiffe_errc::invalid_claims, "the claims are not a JSON object");

  // 3. aud: a configured origin followed by the request's path.
  const auto aud = claims.find("aud");
  if (aud == claims.end() || !aud->is_string()) fail(spiffe_errc::audience_mismatch, "aud missing or not a string");
  std::string_view path = without_query(request.path);
  if (path.empty()) path = "/";
  // Origin form only: joined to an origin, anything else would name another authority.
  if (path.front() != '/') fail(spiffe_errc::audience_mismatch, "the request path does not start with '/'");
  const auto& aud_text = aud->get_ref<const std::string&>();
  const bool aud_ok = std::any_of(o.origins.begin(), o.origins.end(), [&](const std::string& origin) {
    return aud_text.size() == origin.size() + path.size() && aud_text.starts_with(origin) &&
           std::string_view{aud_text}.substr(origin.size()) == path;
  });
  if (!aud_ok) fail(spiffe_errc::audience_mismatch, "aud '" + bounded_excerpt(aud_text, 128) + "'");

  // 4. exp, and how far ahead it lies.
  const auto exp = detail::numeric_date(claims, "exp", what);
  if (!exp) fail(spiffe_errc::missing_expiration, "exp missing");
  const long long now = detail::now_seconds(o.wit.clock);
  const long long leeway = std::max<long long>(o.leeway.count(), 0);
  const long long exp_s = detail::whole_seconds(*exp);
  if (now > detail::add_seconds(exp_s, leeway)) fail(spiffe_errc::expired, "exp " + utc_text(detail::at(*exp)));
  if (exp_s - now > o.max_lifetime.count())
    fail(spiffe_errc::lifetime_too_long,
         "exp " + std::to_string(exp_s - now) + " s ahead, over " + std::to_string(o.max_lifetime.count()) + " s");

  const auto jti = claims.find("jti");
  if (jti == claims.end() || !jti->is_string() || jti->get_ref<const std::string&>().empty() ||
      jti->get_ref<const std::string&>().size() > max_jti_bytes)
    fail(spiffe_errc::invalid_claims, "jti missing, empty or over 256 bytes");

  // 5. The hashes: wth always, ath and tth exactly when the request carries those tokens.
  auto hash_claim = [&](const char* name) -> const std::string* {
    const auto it = claims.find(name);
    if (it == claims.end()) return nullptr;
    if (!it->is_string()) fail(spiffe_errc::proof_mismatch, std::string{name} + " is not a string");
    return &it->get_ref<const std::string&>();
  };
  const std::string* wth = hash_claim("wth");
  if (wth == nullptr || *wth != wit.token_hash()) fail(spiffe_errc::proof_mismatch, "wth");
  auto bound = [&](const char* name, std::string_view token) {
    const std::string* value = hash_claim(name);
    if (token.empty()) {
      if (value != nullptr) fail(spiffe_errc::proof_mismatch, std::string{name} + " without its token in the request");
      return;
    }
    if (value == nullptr || *value != jose::sha256_base64url(token)) fail(spiffe_errc::proof_mismatch, name);
  };
  bound("ath", request.access_token);
  bound("tth", request.transaction_token);

  std::vector<std::string> covered;
  if (const auto oth = claims.find("oth"); oth != claims.end()) {
    if (!oth->is_object() || oth->size() > max_oth_entries)
      fail(spiffe_errc::proof_mismatch, "oth is not an object of at most 32 entries");
    for (const auto& entry : oth->items()) {
      // Named rather than bound: clang 14 (the fuzz build) cannot capture structured bindings.
      const std::string& name = entry.key();
      const nlohmann::json& hash = entry.value();
      const auto header = std::find_if(request.headers.begin(), request.headers.end(),
                                       [&](const auto& h) { return iequals(h.first, name); });
      if (header == request.headers.end())
        fail(spiffe_errc::proof_mismatch, "oth names '" + bounded_excerpt(name, 64) + "', which the request lacks");
      if (std::count_if(request.headers.begin(), request.headers.end(),
                        [&](const auto& h) { return iequals(h.first, name); }) > 1)
        fail(spiffe_errc::proof_mismatch, "oth names '" + bounded_excerpt(name, 64) + "', sent more than once");
      if (!hash.is_string() || hash.get_ref<const std::string&>() != jose::sha256_base64url(trim(header->second)))
        fail(spiffe_errc::proof_mismatch, "oth '" + bounded_excerpt(name, 64) + "'");
      covered.push_back(lower(name));
    }
  }

  // 6. Last, the replay cache: only a proof that passed everything uses up its jti.
  std::string key = wit.spiffe_id().str();
  key += '\n';
  key += jti->get_ref<const std::string&>();
  impl_->remember(std::move(key), detail::add_seconds(exp_s, leeway), now);
  return WptVerified{std::move(wit), jti->get<std::string>(), std::move(covered)};
}

}  // namespace awaken::spiffe::experimental
