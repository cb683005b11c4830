// One libcurl easy handle: a request configured and checked (`Transfer::configure`), the
// response's headers and body as they come, and curl's results as awaken's codes.
#include "core/wipe.hpp"
#include "http/curl_engine.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/url_text.hpp"

namespace awaken::http::detail {
namespace {

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char); }

bool has_forbidden_byte(std::string_view s) {
  return s.find_first_of(std::string_view{"\r\n\0", 3}) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::size_t header_callback(char* data, std::size_t size, std::size_t count, void* user) {
  const std::size_t n = size * count;
  // One line per call, except after a pause: curl then hands over what it held back, which may
  // be several lines at once.
  std::string_view rest{data, n};
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    try {
      if (!static_cast<Transfer*>(user)->on_header(line)) return 0;
    } catch (...) {  // never unwind through curl
      return 0;
    }
  }
  return n;
}

std::size_t write_callback(char* data, std::size_t size, std::size_t count, void* user) {
  try {
    return static_cast<Transfer*>(user)->on_body(data, size * count);
  } catch (...) {  // never unwind through curl
    return 0;
  }
}

// Header lines may carry secrets (authorization): wipe them before curl frees them.
void free_header_list(curl_slist* list) {
  for (curl_slist* item = list; item != nullptr; item = item->next)
    awaken::detail::wipe(item->data, std::strlen(item->data));
  curl_slist_free_all(list);
}

}  // namespace

std::error_code to_error_code(CURLcode result) noexcept {
  switch (result) {
    case CURLE_OK: return {};
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT: return http_errc::invalid_request;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return http_errc::resolve_failed;
    case CURLE_COULDNT_CONNECT: return http_errc::connect_failed;
    case CURLE_OPERATION_TIMEDOUT: return http_errc::timeout;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: return http_errc::tls_failed;
    case CURLE_FILESIZE_EXCEEDED: return http_errc::response_too_large;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY: return http_errc::protocol_error;
    default: return http_errc::transfer_failed;
  }
}

// ---------------------------------------------------------------------------------------------
// Transfer

Transfer::Transfer() {
  ensure_curl_initialised();
  easy_ = curl_easy_init();
}

Transfer::~Transfer() {
  if (easy_ != nullptr) curl_easy_cleanup(easy_);
  if (header_list_ != nullptr) free_header_list(header_list_);
  awaken::detail::wipe(body_);  // a form may carry a secret or an assertion
  awaken::detail::wipe(client_key_);
}

bool Transfer::configure(const HttpRequest& request, const HttpClientOptions& options, std::error_code& ec) {
  ec = {};
  if (easy_ == nullptr) {
    ec = http_errc::invalid_request;
    return false;
  }
  using awaken::detail::starts_with_nocase;
  if (!(starts_with_nocase(request.url, "http://") || starts_with_nocase(request.url, "https://")) ||
      has_forbidden_byte(request.url) || !is_token(request.method)) {
    ec = http_errc::invalid_request;
    return false;
  }
  for (const auto& h : request.headers) {
    if (!is_token(h.name) || has_forbidden_byte(h.value)) {
      ec = http_errc::invalid_request;
      return false;
    }
    // "Name;" is curl's spelling of a header with an empty value ("Name:" would remove it).
    std::string line = h.value.empty() ? h.name + ";" : h.name + ": " + h.value;
    header_list_ = curl_slist_append(header_list_, line.c_str());
    awaken::detail::wipe(line);
  }
  // No "Expect: 100-continue" round trip.
  header_list_ = curl_slist_append(header_list_, "Expect:");
  max_header_bytes_ = options.max_header_bytes;
  body_ = request.body;

  // Options whose silent refusal would weaken security fail the request instead.
  auto must = [&ec](CURLcode rc) {
    if (rc != CURLE_OK && !ec) ec = http_errc::invalid_request;
  };
  curl_easy_setopt(easy_, CURLOPT_PRIVATE, this);
  curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_buffer_);
  curl_easy_setopt(easy_, CURLOPT_URL, request.url.c_str());
  must(curl_easy_setopt(easy_, CURLOPT_PROTOCOLS_STR, "http,https"));
  // Proxies only when asked for: never from http_proxy and friends in the environment.
  must(curl_easy_setopt(easy_, CURLOPT_PROXY, options.proxy.c_str()));
  curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list_);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, header_callback);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, write_callback);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(easy_, CURLOPT_USERAGENT, options.user_agent.c_str());
  // curl reads 0 as "no limit": a zero or negative timeout means "expire at once" here.
  const auto timeout = std::max(request.timeout.value_or(options.timeout), std::chrono::milliseconds{1});
  curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  if (request.method != "HEAD")
    curl_easy_setopt(easy_, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_response_bytes));
  must(curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, 1L));
  must(curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!options.ca_file.empty() || !options.ca_pem.empty()) {
    // Only these CAs: without this, curl would add the distribution's CA directory.
    must(curl_easy_setopt(easy_, CURLOPT_CAPATH, nullptr));
    if (!options.ca_file.empty())
      must(curl_easy_setopt(easy_, CURLOPT_CAINFO, options.ca_file.c_str()));
    else
      must(curl_easy_setopt(easy_, CURLOPT_CAINFO, nullptr));
    if (!options.ca_pem.empty()) {
      curl_blob blob{const_cast<char*>(options.ca_pem.data()), options.ca_pem.size(), CURL_BLOB_COPY};
      must(curl_easy_setopt(easy_, CURLOPT_CAINFO_BLOB, &blob));
    }
  }
  if (request.client_certificate_pem.empty() != request.client_key_pem.empty()) {
    ec = http_errc::invalid_request;  // a certificate without its key, or the reverse
    return false;
  }
  if (!request.client_certificate_pem.empty()) {
    // Lent to curl without a copy, so that the key is wiped with the transfer (curl frees its
    // copies without wiping them).
    client_certificate_ = request.client_certificate_pem;
    client_key_ = std::string{request.client_key_pem.reveal()};
    curl_blob cert{client_certificate_.data(), client_certificate_.size(), CURL_BLOB_NOCOPY};
    curl_blob key{client_key_.data(), client_key_.size(), CURL_BLOB_NOCOPY};
    must(curl_easy_setopt(easy_, CURLOPT_SSLCERT_BLOB, &cert));
    must(curl_easy_setopt(easy_, CURLOPT_SSLCERTTYPE, "PEM"));
    must(curl_easy_setopt(easy_, CURLOPT_SSLKEY_BLOB, &key));
    must(curl_easy_setopt(easy_, CURLOPT_SSLKEYTYPE, "PEM"));
  }
  if (!request.unix_socket_path.empty())
    curl_easy_setopt(easy_, CURLOPT_UNIX_SOCKET_PATH, request.unix_socket_path.c_str());
  switch (request.version) {
    case HttpVersion::automatic: break;
    case HttpVersion::http1_1:
      curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
      break;
    case HttpVersion::http2_prior_knowledge:
      must(curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)));
      if (curl_before_8()) {
        curl_easy_setopt(easy_, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, 1L);
      }
      break;
  }

  const bool sends_body =
      !body_.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH";
  if (request.method == "HEAD" && !sends_body) {
    curl_easy_setopt(easy_, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(easy_, CURLOPT_POST, 1L);
  } else if (request.method != "GET" || sends_body) {
    // POSTFIELDS alone would turn a GET with a body into a POST.
    curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (sends_body) {
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
  }
  return !ec;
}

std::string Transfer::diagnostic() const {
  return bounded_excerpt(std::string_view{error_buffer_, ::strnlen(error_buffer_, sizeof error_buffer_)});
}

bool Transfer::on_header(std::string_view line) {
  header_bytes_ += line.size() + 2;
  if (header_bytes_ > max_header_bytes_) {
    too_large_ = true;
    return false;
  }
  if (line.substr(0, 5) == "HTTP/") {
    // A new header block: an interim 1xx response is followed by the final one.
    headers_.clear();
    in_trailers_ = false;
    const auto sp = line.find(' ');
    status_ = 0;
    if (sp != std::string_view::npos) {
      for (char c : line.substr(sp + 1, 3)) {
        if (c < '0' || c > '9') break;
        status_ = status_ * 10 + (c - '0');
      }
    }
    return true;
  }
  if (line.empty()) {
    in_trailers_ = true;
    return true;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return true;  // tolerate folding remnants
  Header h{std::string{line.substr(0, colon)}, std::string{trim(line.substr(colon + 1))}};
  std::transform(h.name.begin(), h.name.end(), h.name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  (in_trailers_ ? trailers_ : headers_).push_back(std::move(h));
  return true;
}

}  // namespace awaken::http::detail
