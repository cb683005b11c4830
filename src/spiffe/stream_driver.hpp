// The thin Asio driver of `SupervisorCore`: runs one Workload API stream for a source, doing the
// I/O each action asks for and turning what happens into the core's events.
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <spdlog/logger.h>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/error.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "spiffe/source_state.hpp"
#include "spiffe/stream_supervisor.hpp"

namespace awaken::spiffe::detail {

// Keeps one stream open for as long as the source lives, by the supervisor's rules. `open`
// starts the stream on a client: a `Stream` whose `next()` returns the next set (nullopt at a
// clean end) and throws for a failed call (a `spiffe_errc` for one bad message, after which
// the stream goes on), and whose `cancel()` resets it.
template <class Set, class Open>
asio::awaitable<void> supervise(std::shared_ptr<SourceState<Set>> s, Open open, std::string what) {
  SupervisorCore core{SupervisorCore::reconnect_policy(s->min_backoff, s->max_backoff), *s->jitter};
  using Act = StreamAction::Kind;
  StreamAction action = core.start();
  std::optional<WorkloadApiClient> client;  // lives as long as its stream: it owns the transport
  std::optional<decltype(open(std::declval<WorkloadApiClient&>()))> stream;
  std::optional<Set> set;
  struct Forget {  // the stream dies with this frame: nobody may cancel it after
    SourceState<Set>& s;
    ~Forget() { s.cancel_stream = nullptr; }
  } forget{*s};
  while (!s->stopping) {
    StreamEvent event{StreamEvent::Kind::stream_ended};
    std::string text;
    switch (action.kind) {
      case Act::give_up: {
        std::lock_guard lk(s->mutex);
        s->fatal = action.error;
        s->fatal_text = s->last_failure;
        co_return;
      }
      case Act::wait:
        s->timer.expires_after(action.delay);
        co_await s->timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (s->stopping) co_return;
        [[fallthrough]];
      case Act::connect:
        stream.reset();
        client.reset();
        try {
          client.emplace(s->factory());
          stream.emplace(open(*client));
          s->cancel_stream = [&stream] {
            if (stream) stream->cancel();
          };
          action = core.connected();
          continue;
        } catch (const std::system_error& e) {
          event = {StreamEvent::Kind::connect_failed, e.code()};
          text = e.what();
        } catch (const std::exception& e) {
          event = {StreamEvent::Kind::connect_failed, make_error_code(grpc_status::internal)};
          text = e.what();
        } catch (...) {
          event = {StreamEvent::Kind::connect_failed, make_error_code(grpc_status::internal)};
          text = "the client factory threw";
        }
        s->log->warn("awaken: {}: cannot make a Workload API client: {}", s->name, text);
        break;
      case Act::publish: s->publish(std::move(*set)); [[fallthrough]];
      case Act::read_next:
        try {
          set = co_await stream->next();
          event =
              set ? StreamEvent{StreamEvent::Kind::update_applied, {}, !core.synced() || !(*s->load_current() == *set)}
                  : StreamEvent{StreamEvent::Kind::stream_ended};
          if (!set) text = "the Workload API ended the " + what + " stream";
        } catch (const std::system_error& e) {
          text = e.what();
          // A `spiffe_errc` is one bad message: the stream goes on.
          event = e.code().category() == spiffe_category()
                      ? StreamEvent{StreamEvent::Kind::message_rejected, e.code()}
                      : StreamEvent{StreamEvent::Kind::stream_failed, e.code(), false, is_no_identity_issued(e)};
        } catch (const std::exception& e) {  // out of memory, say: this stream is done, not the source
          event = {StreamEvent::Kind::stream_failed, make_error_code(grpc_status::internal)};
          text = e.what();
        }
        if (s->stopping) co_return;
        if (event.kind == StreamEvent::Kind::message_rejected)
          s->log->warn("awaken: {}: {} update rejected, keeping the last good set: {}", s->name, what, text);
        else if (event.kind != StreamEvent::Kind::update_applied)
          s->log->debug("awaken: {}: {} stream ended or failed: {}", s->name, what, text);
        break;
    }
    if (event.kind != StreamEvent::Kind::update_applied) s->note_failure(text);
    action = core.on(event);
    s->record(action);
  }
}

}  // namespace awaken::spiffe::detail
