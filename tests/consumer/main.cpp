// Uses each layer through the installed package: secrets, JOSE, the HTTP transport, and a SPIFFE
// TLS context (which brings asio::ssl and OpenSSL in through the package's own dependencies).
#include <cstdio>
#include <sstream>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>

#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>
#include <awaken/jose/base64url.hpp>
#include <awaken/jose/jws.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/tls.hpp>

namespace {
// A throwaway P-256 key made for this check; it protects nothing.
constexpr const char* test_key = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgIs/zAFBQSl7pThxJ
EJvNrdOvkqFWIS5atZHsl2xsAGihRANCAAQmOJ+Biei3dR2p19HSOG0bdB9V+kaW
fJbqA7oJ//Do8skYSp62rej0hTzdLDh5u+KBEpStvh8ryYbQGKODWg/G
-----END PRIVATE KEY-----
)";

int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}
}  // namespace

int main() {
  std::ostringstream os;
  os << awaken::RedactedString{"secret"};
  expect(os.str() == "[redacted]", "RedactedString prints redacted");

  expect(awaken::jose::base64url_decode(awaken::jose::base64url_encode("awaken")) == "awaken", "base64url round trip");

  const auto key = awaken::jose::PrivateKey::from_pem(awaken::RedactedString{test_key});
  const auto token = awaken::jose::sign_compact(awaken::jose::Algorithm::es256, nlohmann::json::object(),
                                                R"({"sub":"consumer"})", key);
  std::error_code ec;
  const bool verified = awaken::jose::CompactJws::parse(token).verify(key.public_key(), ec);
  expect(verified && !ec, "ES256 sign and verify");

  asio::io_context io;
  awaken::http::HttpClient client{io.get_executor()};
  std::error_code send_ec;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        awaken::http::HttpRequest request;
        request.url = "http://127.0.0.1:1/";
        auto [e, response] = co_await client.send(request, asio::experimental::as_tuple(asio::use_awaitable));
        send_ec = e;
      },
      asio::detached);
  io.run();
  expect(send_ec == awaken::http_errc::connect_failed, "HTTP transport reports connect_failed");

  asio::ssl::context tls{asio::ssl::context::tls_client};
  auto bundles = std::make_shared<awaken::spiffe::X509BundleSet>();
  awaken::spiffe::configure_tls_client(tls, bundles, awaken::spiffe::authorize_any());
  expect(SSL_CTX_get_verify_mode(tls.native_handle()) == SSL_VERIFY_PEER, "SPIFFE TLS client verifies its peer");

  std::printf("%d passed, %d failed\n", 5 - failures, failures);
  return failures == 0 ? 0 : 1;
}
