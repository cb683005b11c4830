// gRPC over HTTP/2 wire details that need no I/O: message framing and status. Private to the
// library (tests and fuzzers include it directly).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <awaken/error.hpp>
#include <awaken/http/http_client.hpp>

namespace awaken::http::detail {

/// Splits a byte stream into gRPC length-prefixed messages (1 flag byte, 4-byte big-endian
/// length, payload), whatever the chunking: a message may arrive in many pieces and a piece may
/// hold many messages.
class GrpcFrameParser {
 public:
  explicit GrpcFrameParser(std::size_t max_message_bytes) noexcept : max_(max_message_bytes) {}

  /// Consumes `bytes`, appending each complete message to `out`. On a violation (compressed or
  /// unknown flag, a message over the bound) returns the gRPC status to end the call with and
  /// ignores all further input.
  std::error_code feed(std::string_view bytes, std::deque<std::string>& out);

  /// True when the input so far ends inside a message.
  bool mid_message() const noexcept { return header_fill_ != 0 || in_payload_; }

 private:
  std::size_t max_;
  unsigned char header_[5] = {};
  std::size_t header_fill_ = 0;
  bool in_payload_ = false;
  std::size_t expected_ = 0;
  std::string payload_;
  std::error_code failed_;
};

/// Encodes one uncompressed message.
std::string grpc_frame(std::string_view message);

/// The `grpc-timeout` header value for `deadline`: at most eight digits and a unit.
std::string grpc_timeout_value(std::chrono::milliseconds deadline);

/// Decodes `%XX` escapes as grpc-message uses them; malformed escapes are kept verbatim.
std::string percent_decode(std::string_view text);

/// The final status of a call from its HTTP status, headers and trailers (the status is read
/// from the trailers, or from the headers of a trailers-only response). A missing or malformed
/// `grpc-status` is an error; a non-200 HTTP status without one maps as gRPC specifies.
struct GrpcFinalStatus {
  std::error_code code;  ///< empty for OK
  std::string message;   ///< decoded grpc-message, bounded
};
GrpcFinalStatus grpc_final_status(int http_status, const std::vector<Header>& headers,
                                  const std::vector<Header>& trailers);

}  // namespace awaken::http::detail
