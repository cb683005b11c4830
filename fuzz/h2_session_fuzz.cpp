// Fuzzes the sans-IO HTTP/2 gRPC session with what a server might send to two calls, cut in
// pieces whose size the first byte picks, with the driver's moves in between (output taken,
// messages taken, one call cancelled halfway, the connection failed at the end). No crash, no
// leak, no message over the bound, each call finished at most once and never after
// fail_all; a session that refused the bytes stays refused.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>
#include <vector>

#include "http/h2_session.hpp"

using namespace awaken::http::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  constexpr std::size_t bound = 64 * 1024;
  H2GrpcSession session{{.max_message_bytes = bound, .initial_window = 65535}};
  const std::int32_t first = session.start({"localhost", "/S/M", {{"workload.spiffe.io", "true"}}, {}}, "request");
  const std::int32_t second = session.start({"localhost", "/S/N", {}, std::chrono::milliseconds{250}}, "r2");
  (void)session.take_output();
  const std::size_t piece = 1 + data[0] % 64;  // 1 to 64 bytes at a time
  std::string_view bytes{reinterpret_cast<const char*>(data) + 1, size - 1};
  std::vector<H2Event> events;
  std::set<std::int32_t> finished;
  bool refused = false;
  const auto check = [&] {
    for (const auto& e : events) {
      if (e.kind == H2Event::Kind::message) {
        if (e.message.size() > bound) std::abort();
        if (finished.count(e.stream) != 0) std::abort();  // a message after the end
        session.taken(e.stream);
      } else if (e.kind == H2Event::Kind::finished) {
        if (!finished.insert(e.stream).second) std::abort();  // ended twice
      }
    }
    events.clear();
  };
  const std::size_t half = bytes.size() / 2;
  std::size_t fed = 0;
  while (!bytes.empty()) {
    const std::string_view chunk = bytes.substr(0, piece);
    bytes.remove_prefix(chunk.size());
    const bool failed = static_cast<bool>(session.receive(chunk, events));
    if (refused && !failed) std::abort();
    refused = refused || failed;
    (void)session.take_output();
    session.take_events(events);
    check();
    if (fed < half && fed + chunk.size() >= half) session.cancel(second);
    fed += chunk.size();
  }
  session.fail_all("connection lost");
  session.take_events(events);
  check();
  if (session.open_calls() != 0 || finished.count(first) == 0) std::abort();
  return 0;
}
