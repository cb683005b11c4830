#include "credentials/minters/token_request.hpp"
#include "core/wipe.hpp"
#include "credentials/minters/provider_context.hpp"

#include <nlohmann/json.hpp>

#include <awaken/error.hpp>

namespace awaken::detail {

std::string DpopBinding::nonce() const {
  const std::lock_guard lock{mutex_};
  return nonce_;
}

void DpopBinding::keep_nonce(std::string_view nonce) const {
  if (nonce.empty() || !is_dpop_nonce(nonce)) return;
  const std::lock_guard lock{mutex_};
  nonce_.assign(nonce);
}

namespace {

// Sends `request`; a transport failure is thrown as `network` (retryable) or with its own code.
asio::awaitable<http::HttpResponse> send_request(http::HttpRequest request, const MintContext& ctx,
                                                 const std::string& origin) {
  try {
    co_return co_await ctx.http.send(std::move(request));
  } catch (const Error& e) {
    if (e.code() == http_errc::response_too_large)
      throw_error(credential_errc::transient_upstream,
                  endpoint_context(ctx, origin) + ": the response is larger than allowed");
    if ((e.code() == condition::transient))
      throw_error(credential_errc::network, endpoint_context(ctx, origin) + ": " + e.code().message());
    throw_error(e.code(), endpoint_context(ctx, origin));
  }
}

// Throws what a non-2xx `response` means; its body is wiped first.
[[noreturn]] void refuse(http::HttpResponse& response, const MintContext& ctx, const std::string& origin,
                         RefusalReader read_refusal) {
  Refusal refusal = read_refusal(response.status, response.body);
  wipe(response.body);
  if (refusal.transient) {
    refusal.details.retry_after = retry_after(response, ctx.clock);
    throw_error(credential_errc::transient_upstream, endpoint_context(ctx, origin), std::move(refusal.details));
  }
  throw_error(credential_errc::permanent_upstream, endpoint_context(ctx, origin), std::move(refusal.details));
}

constexpr bool is_success(int status) noexcept { return status >= 200 && status < 300; }

// RFC 9449 section 8: 400 with error use_dpop_nonce and a DPoP-Nonce header.
bool is_nonce_challenge(const http::HttpResponse& response) {
  return response.status == 400 && response.header("dpop-nonce") &&
         oauth_error_details(response.status, response.body).oauth_error == "use_dpop_nonce";
}

}  // namespace

NonceChallengeAnswer answer_nonce_challenge(int attempt, std::string_view sent_nonce,
                                            std::string_view offered_nonce) noexcept {
  if (offered_nonce.empty() || !is_dpop_nonce(offered_nonce)) return NonceChallengeAnswer::invalid_nonce;
  return attempt == 0 && offered_nonce != sent_nonce ? NonceChallengeAnswer::retry : NonceChallengeAnswer::not_met;
}

asio::awaitable<http::HttpResponse> send_token_request(http::HttpRequest request, const MintContext& ctx,
                                                       const std::string& origin, RefusalReader read_refusal) {
  http::HttpResponse response = co_await send_request(std::move(request), ctx, origin);
  if (!is_success(response.status)) refuse(response, ctx, origin, read_refusal);
  co_return response;
}

asio::awaitable<Token> request_token(http::HttpRequest request, const MintContext& ctx, std::string origin) {
  http::HttpResponse response = co_await send_token_request(std::move(request), ctx, origin, oauth_refusal);
  const WipeOnExit wipe{response.body};  // the body holds a token: wipe it whatever happens next
  co_return parse_token_response(response.body, ctx, origin);
}

asio::awaitable<Token> request_token(RequestBuilder build, const MintContext& ctx, std::string origin,
                                     const DpopBinding& dpop) {
  for (int attempt = 0;; ++attempt) {
    // Built anew for each attempt: a client assertion is good for one request only.
    http::HttpRequest request = co_await build();
    const WipeOnExit wipe_request{request.body};  // it may hold assertions
    const std::string sent_nonce = dpop.nonce();
    std::string proof;
    try {
      proof = dpop.key()->proof(request.method, request.url, {}, sent_nonce, ctx.clock);
    } catch (const Error& e) {
      throw_error(jose_errc::signing_failed, endpoint_context(ctx, origin) + ": DPoP proof: " + e.code().message());
    }
    request.headers.push_back({"dpop", std::move(proof)});
    http::HttpResponse response = co_await send_request(request, ctx, origin);
    const WipeOnExit wipe{response.body};
    if (const auto nonce = response.header("dpop-nonce")) dpop.keep_nonce(*nonce);
    if (is_success(response.status)) co_return parse_token_response(response.body, ctx, origin, dpop.key());
    if (is_nonce_challenge(response)) {
      const std::string_view offered = response.header("dpop-nonce").value_or(std::string_view{});
      switch (answer_nonce_challenge(attempt, sent_nonce, offered)) {
        case NonceChallengeAnswer::retry: continue;  // a request built anew, with the kept nonce
        case NonceChallengeAnswer::invalid_nonce:
          throw_error(credential_errc::permanent_upstream,
                      endpoint_context(ctx, origin) + ": DPoP nonce challenge with a DPoP-Nonce that is not a nonce (" +
                          std::to_string(offered.size()) + " bytes; a nonce is 1 to " +
                          std::to_string(max_dpop_nonce_bytes) + " bytes of visible ASCII, no quote or backslash)");
        case NonceChallengeAnswer::not_met:
          throw_error(credential_errc::transient_upstream,
                      endpoint_context(ctx, origin) +
                          ": DPoP nonce challenge not met, after a retry or with the nonce just sent (" +
                          oauth_error_details(response.status, response.body).server_message + ")");
      }
    }
    refuse(response, ctx, origin, oauth_refusal);
  }
}

http::HttpRequest form_request(std::string url, std::string form, std::string authorization) {
  http::HttpRequest request;
  request.method = "POST";
  request.url = std::move(url);
  request.headers.push_back({"content-type", "application/x-www-form-urlencoded"});
  request.headers.push_back({"accept", "application/json"});
  if (!authorization.empty()) request.headers.push_back({"authorization", std::move(authorization)});
  request.body = std::move(form);
  return request;
}

asio::awaitable<Token> post_form(std::string url, std::string form, std::string authorization, const MintContext& ctx,
                                 std::string origin) {
  http::HttpRequest request = form_request(std::move(url), std::move(form), std::move(authorization));
  co_return co_await request_token(std::move(request), ctx, std::move(origin));
}

std::int64_t unix_seconds(const MintContext& ctx) {
  return std::chrono::duration_cast<std::chrono::seconds>(ctx.clock.system_now().time_since_epoch()).count();
}

std::string sign_assertion(jose::Algorithm algorithm, std::string_view key_id, const nlohmann::json& claims,
                           const jose::PrivateKey& key, const MintContext& ctx, std::string_view what) {
  nlohmann::json header{{"typ", "JWT"}};
  if (!key_id.empty()) header["kid"] = std::string{key_id};
  try {
    return jose::sign_compact(algorithm, header, claims.dump(), key);
  } catch (const Error& e) {
    throw_error(jose_errc::signing_failed,
                provider_context(ctx.provider_id) + ": " + std::string{what} + ": " + e.code().message());
  }
}

}  // namespace awaken::detail
