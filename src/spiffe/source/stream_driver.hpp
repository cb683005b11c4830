// The thin Asio driver of `SupervisorCore`: runs one Workload API stream for a source, doing the
// I/O each action asks for and turning what happens into the core's events.
#pragma once

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <typeinfo>
#include <utility>

#include <spdlog/logger.h>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/system_executor.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/error.hpp>
#include <awaken/log.hpp>
#include <awaken/spiffe/source.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "spiffe/source/source_state.hpp"
#include "spiffe/source/stream_supervisor.hpp"

namespace awaken::spiffe::detail {

// One read of a stream as its supervisor takes it: the next update (nullopt at a clean end), or
// a failure's code with what is known of it. Nothing is thrown: a bad message, a failed call or
// a picker that throws is an event.
template <class Set>
struct StreamRead {
  std::error_code ec;
  Diagnostics diagnostics;
  std::optional<Set> set;
};

template <StreamKind Kind>
asio::awaitable<StreamRead<typename WorkloadStream<Kind>::value_type>> read_update(WorkloadStream<Kind>& stream) {
  StreamRead<typename WorkloadStream<Kind>::value_type> read;
  auto token = bind_diagnostics(read.diagnostics, asio::experimental::as_tuple(asio::use_awaitable));
  auto [ec, set] = co_await stream.next(std::move(token));
  read.ec = ec;
  read.set = std::move(set);
  co_return read;
}

// How a lane's updates make the source's snapshot. `Replace`: the update is the snapshot.
template <class Set>
struct Replace {
  static bool same(const Set& latest, const Set& update) { return latest == update; }
  static Set merge(const Set& /*latest*/, Set&& update) { return std::move(update); }
};

template <class Read>
struct update_of;
template <class Part>
struct update_of<asio::awaitable<StreamRead<Part>>> {
  using type = Part;
};

// Keeps lane `lane` of a source open for as long as the source lives, by the supervisor's
// rules. `open` starts the stream on a client: a `Stream` that `read_update` reads (a failed
// call, or a `spiffe_errc` for one bad message after which the stream goes on), and whose
// `cancel()` resets it. `fold` tells whether an update changes the latest snapshot and merges it
// in. `x509`: the stream carries X.509 material (for the metrics of rejected updates).
template <class Set, class Open, class Fold = Replace<Set>>
asio::awaitable<void> supervise(std::shared_ptr<SourceState<Set>> s, std::size_t lane, Open open, std::string what,
                                bool x509, Fold fold = {}) {
  using Stream = decltype(open(std::declval<WorkloadApiClient&>()));
  using Part = typename update_of<decltype(read_update(std::declval<Stream&>()))>::type;
  SupervisorCore core{SupervisorCore::reconnect_policy(s->min_backoff, s->max_backoff), s->timing.jitter_or_real(),
                      x509};
  using Act = StreamAction::Kind;
  auto& slot = *s->lanes[lane];
  StreamAction action = core.start();
  std::optional<WorkloadApiClient> client;  // lives as long as its stream: it owns the transport
  std::optional<Stream> stream;
  std::optional<Part> part;
  struct Forget {  // the stream dies with this frame: nobody may cancel it after
    typename SourceState<Set>::Lane& slot;
    ~Forget() { slot.cancel_stream = nullptr; }
  } forget{slot};
  while (!s->stopping) {
    StreamEvent event{StreamEvent::Kind::stream_ended};
    std::string text;
    std::string context;  // `text` without the code's message, when the failure is an awaken::Error
    switch (action.kind) {
      case Act::give_up: {
        std::lock_guard lk(s->mutex);
        if (s->fatal) co_return;  // another lane gave up first: its reason stands
        s->fatal = action.error;
        s->fatal_text = s->last_failure_context;  // the error that ends the sync adds its code's message
        co_return;
      }
      case Act::wait:
        // On the strand, as a child whose cancellation the stop emits.
        if (auto [failed] = co_await asio::co_spawn(
                s->strand, s->timing.wait(action.delay),
                asio::bind_cancellation_slot(slot.stop_wait.slot(), asio::experimental::as_tuple(asio::use_awaitable)));
            failed && !s->stopping) {
          // A sleep of the user's that failed: the real timer keeps the backoff.
          s->log->warn("awaken: {}: the injected sleep failed; waiting on a timer", s->name);
          co_await asio::co_spawn(
              s->strand, Timing{}.wait(action.delay),
              asio::bind_cancellation_slot(slot.stop_wait.slot(), asio::experimental::as_tuple(asio::use_awaitable)));
        }
        if (s->stopping) co_return;
        [[fallthrough]];
      case Act::connect:
        stream.reset();
        client.reset();
        try {
          client.emplace(s->factory());
          stream.emplace(open(*client));
          slot.cancel_stream = [&stream] {
            if (stream) stream->cancel();
          };
          action = core.connected();
          continue;
        } catch (const Error& e) {  // the factory is the user's: its failures arrive as exceptions
          event = {StreamEvent::Kind::connect_failed, e.code()};
          text = e.what();
          context = e.context();
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
      case Act::publish:
        s->deliver(lane, [&](const Set& latest) { return fold.merge(latest, std::move(*part)); });
        [[fallthrough]];
      case Act::read_next: {
        StreamRead<Part> read = co_await read_update(*stream);
        if (!read.ec) {
          part = std::move(read.set);
          event =
              part ? StreamEvent{StreamEvent::Kind::update_applied, {}, !core.synced() || !fold.same(*s->latest, *part)}
                   : StreamEvent{StreamEvent::Kind::stream_ended};
          if (!part) text = "the Workload API ended the " + what + " stream";
        } else {
          text = to_error(read.ec, read.diagnostics).what();
          context = read.diagnostics.context;
          // A `spiffe_errc` is one bad message: the stream goes on. `not_offered` is the call's.
          event = read.ec.category() == spiffe_category() && read.ec != spiffe_errc::not_offered
                      ? StreamEvent{StreamEvent::Kind::message_rejected, read.ec}
                      : StreamEvent{StreamEvent::Kind::stream_failed, read.ec, false,
                                    is_no_identity_issued(read.ec, read.diagnostics)};
        }
        if (s->stopping) co_return;
        if (event.kind == StreamEvent::Kind::message_rejected)
          s->log->warn("awaken: {}: {} update rejected, keeping the last good set: {}", s->name, what, text);
        else if (event.kind != StreamEvent::Kind::update_applied)
          s->log->debug("awaken: {}: {} stream ended or failed: {}", s->name, what, text);
        break;
      }
    }
    if (event.kind != StreamEvent::Kind::update_applied) s->note_failure(text, context.empty() ? text : context);
    action = core.on(event);
    s->record(action);
  }
}

// A stream of SVID updates as a source's supervisor reads it: each update with its SVID picked
// (the first when there is no picker), or a rejected update: `no_svid` when none fits the picker,
// `svid_expired` when the picked one has expired by `clock`. `Snapshot` is an aggregate of the
// update and the index picked, with `svids_of(update)`.
template <class Stream, class Snapshot, class Picker>
struct PickedStream {
  Stream stream;
  Picker picker;
  const Clock* clock;
  const char* source;  // "X509Source", for the refusals' text

  asio::awaitable<StreamRead<Snapshot>> read() {
    auto update = co_await read_update(stream);
    if (update.ec || !update.set) co_return StreamRead<Snapshot>{update.ec, std::move(update.diagnostics), {}};
    co_return pick(std::move(*update.set));
  }
  void cancel() noexcept { stream.cancel(); }

 private:
  // The picker is the user's and may throw, and so may memory: such a failure is this update's
  // (the stream reconnects), never the source's end.
  StreamRead<Snapshot> pick(typename Stream::value_type update) const noexcept {
    try {
      const auto& svids = Snapshot::svids_of(update);
      std::optional<std::size_t> picked = std::size_t{0};
      if (picker) picked = picker(svids);
      if (!picked || *picked >= svids.size())
        return refused(spiffe_errc::no_svid, std::string{source} + ": no SVID of the update fits the picker");
      const auto& svid = svids[*picked];
      if (svid.expiry() <= clock->system_now())
        return refused(spiffe_errc::svid_expired, std::string{source} + ": the SVID of " + svid.spiffe_id().str() +
                                                      " expired at " + utc_text(svid.expiry()));
      return {{}, {}, Snapshot{std::move(update), *picked}};
    } catch (...) {
      auto [ec, diagnostics] = classify_exception(std::current_exception());
      return {ec, std::move(diagnostics), {}};
    }
  }
  static StreamRead<Snapshot> refused(spiffe_errc code, std::string context) {
    return {make_error_code(code), Diagnostics{std::move(context), {}}, {}};
  }
};

template <class Stream, class Snapshot, class Picker>
asio::awaitable<StreamRead<Snapshot>> read_update(PickedStream<Stream, Snapshot, Picker>& stream) {
  return stream.read();
}

// The executor a source runs on: the one given, else the awaiting coroutine's, which must not
// be Asio's system executor (a handler without an executor of its own).
inline asio::awaitable<asio::any_io_executor> source_executor(std::optional<asio::any_io_executor> given,
                                                              const char* what) {
  const asio::any_io_executor executor = given ? *given : co_await asio::this_coro::executor;
  if (executor.target_type() == typeid(asio::system_executor))  // Asio 1.22's target<T>() does not check T
    throw_error(std::make_error_code(std::errc::invalid_argument),
                std::string{what} + ": build: the handler has no executor; pass one to build");
  co_return executor;
}

// A source's state, configured from its builder's settings.
template <class Set>
std::shared_ptr<SourceState<Set>> make_source_state(const SourceSettings& settings,
                                                    const asio::any_io_executor& executor, std::string name,
                                                    std::size_t lanes) {
  auto s = std::make_shared<SourceState<Set>>(executor, std::move(name), lanes);
  s->min_backoff = settings.min_backoff;
  s->max_backoff = settings.max_backoff;
  s->shutdown_timeout = settings.shutdown_timeout;
  s->limits = settings.limits;
  s->metrics = settings.metrics;
  s->log = settings.logger ? settings.logger : awaken::logger();
  s->timing = settings.timing;
  s->endpoint_text = settings.factory    ? std::string{"the client factory's endpoint"}
                     : settings.endpoint ? settings.endpoint->uri()
                                         : std::string{"no endpoint (SPIFFE_ENDPOINT_SOCKET unset)"};
  if (settings.factory) {
    s->factory = settings.factory;
    return s;
  }
  // One client for the source's life: its stream and its one-shot calls (`fetch_jwt_svid`)
  // share one connection, which reconnects by itself. A missing or bad endpoint is thrown at
  // each use, so that it is reported as a client's failure.
  std::optional<WorkloadApiClient> client;
  if (settings.endpoint) {
    WorkloadApiOptions options;
    options.bundle_limits = settings.limits;
    const std::size_t largest = std::max(settings.limits.max_bundle_jwks_bytes, settings.limits.max_bundle_der_bytes);
    options.max_message_bytes =
        std::max<std::size_t>(options.max_message_bytes, largest > SIZE_MAX / 2 ? SIZE_MAX : largest + (1u << 20));
    client.emplace(executor, *settings.endpoint, options);
  }
  s->factory = [client = std::move(client), failure = settings.endpoint_error]() {
    if (!client) throw failure;
    return *client;
  };
  return s;
}

// Starts the supervisor of lane `lane` of `s` (see `supervise`).
template <class Set, class Open, class Fold = Replace<Set>>
void spawn_supervisor(const std::shared_ptr<SourceState<Set>>& s, std::size_t lane, Open open, std::string what,
                      bool x509, Fold fold = {}) {
  asio::co_spawn(s->strand, supervise(s, lane, std::move(open), std::move(what), x509, std::move(fold)),
                 [s](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       s->log->error("awaken: {}: the supervisor failed: {}", s->name, ex.what());
                     } catch (...) {
                       s->log->error("awaken: {}: the supervisor failed", s->name);
                     }
                   }
                   s->finish(e != nullptr);
                 });
}

// Waits for the first snapshot of a source whose supervisors have started (every lane's first
// good update), until the settings' initial-sync timeout counted from `started` (real time: the
// wait is a timer's). On failure the source is stopped and the reason thrown.
template <class Set>
asio::awaitable<void> await_first_set(std::shared_ptr<SourceState<Set>> s, const SourceSettings& settings,
                                      std::chrono::steady_clock::time_point started) {
  // Waits for the first set; while it has not come, says so on the supervisor's schedule
  // (`first_sync_warning`, `next_sync_warning`) with the endpoint and the last failure.
  const auto sync_timeout = settings.initial_sync_timeout;
  const auto first_set = [&](auto token) { return async_changed(s, 0, std::move(token)); };
  std::chrono::milliseconds warn_after = first_sync_warning;
  bool expired = false;
  std::error_code ec;
  for (;;) {
    std::chrono::milliseconds wait = warn_after;
    bool last_wait = false;
    if (sync_timeout) {
      const auto elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      const auto left = std::max(*sync_timeout - elapsed, std::chrono::milliseconds{0});
      if (left <= wait) {
        wait = left;
        last_wait = true;
      }
    }
    auto [cut, result] = co_await with_deadline<std::uint64_t>(wait, first_set);
    ec = std::get<0>(result);
    if (!cut) break;
    if (last_wait) {
      expired = true;
      break;
    }
    std::string last;
    {
      std::lock_guard lk(s->mutex);
      last = s->last_failure;
    }
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
    s->log->warn("awaken: {}: no update yet from the Workload API at {} after {} s; last failure: {}", s->name,
                 s->endpoint_text, waited.count(), last.empty() ? "none" : last);
    warn_after = next_sync_warning(warn_after);
  }
  if (!expired && !ec) co_return;

  std::string why;
  std::error_code fatal;
  {
    std::lock_guard lk(s->mutex);
    why = s->last_failure;
    fatal = s->fatal;
    if (fatal) why = s->fatal_text;
  }
  s->request_stop();
  if (fatal) throw_error(fatal, s->name + ": initial sync: " + why);
  if (expired)
    throw_error(spiffe_errc::initial_sync_timeout, s->name + ": no update within " +
                                                       std::to_string(sync_timeout->count()) + " ms" +
                                                       (why.empty() ? std::string{} : "; last failure: " + why));
  throw_error(ec, s->name + ": initial sync");
}

}  // namespace awaken::spiffe::detail
