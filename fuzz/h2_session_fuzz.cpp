// Fuzzes the sans-IO HTTP/2 gRPC session with what a server might send, in two pieces: no
// crash, no leak, no message over the bound; a session that refused the bytes stays refused.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "http/h2_session.hpp"

using namespace awaken::http::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t bound = 64 * 1024;
  H2GrpcSession session{{.max_message_bytes = bound, .initial_window = 65535}};
  const std::int32_t stream = session.start({"localhost", "/S/M", {{"workload.spiffe.io", "true"}}, {}}, "request");
  (void)session.take_output();
  const std::string_view bytes{reinterpret_cast<const char*>(data), size};
  std::vector<H2Event> events;
  const auto first = session.receive(bytes.substr(0, size / 2), events);
  for (const auto& e : events) {
    if (e.kind == H2Event::Kind::message) {
      if (e.message.size() > bound) std::abort();
      session.taken(e.stream);
    }
  }
  const auto second = session.receive(bytes.substr(size / 2), events);
  if (first && !second) std::abort();
  (void)session.take_output();
  session.cancel(stream);
  (void)session.take_output();
  return 0;
}
