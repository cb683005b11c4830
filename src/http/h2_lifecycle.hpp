// The life of one HTTP/2 connection, without I/O: connecting, open, closed; whether it reads
// and pings (only while calls are open), whether it takes new calls, and when it closes.
// `H2Connection` (grpc_transport.cpp) carries out what it says; unit tests drive it with plain
// values (tests/unit/h2_test.cpp).
#pragma once

namespace awaken::http::detail {

class H2Lifecycle {
 public:
  enum class State { connecting, open, closed };

  /// What to do so that the connection follows its calls.
  struct Steps {
    bool start_read = false;        ///< read the socket
    bool cancel_read = false;       ///< cancel the read (the read alone, not a write)
    bool arm_keepalive = false;     ///< start the keepalive timer
    bool disarm_keepalive = false;  ///< stop it, and forget the pings sent
    bool close = false;             ///< close the socket: nobody will call again
  };

  /// What a finished read asks for.
  enum class AfterRead {
    ignore,   ///< the connection closed meanwhile
    follow,   ///< cancelled because the connection went idle: follow the calls again
    fail,     ///< the socket failed or the server closed it: fail the connection
    receive,  ///< bytes came: feed them to the session, then follow the calls
  };

  State state() const noexcept { return state_; }
  bool reading() const noexcept { return reading_; }
  bool detached() const noexcept { return detached_; }

  /// The socket connected: the connection is open (false when it had failed meanwhile).
  bool connected() noexcept {
    if (state_ != State::connecting) return false;
    state_ = State::open;
    return true;
  }

  /// The steps that make the connection follow its calls: read and ping while any is open
  /// (`idle` false); stop both when none is, and close once detached.
  Steps follow(bool idle, bool keepalive_enabled) noexcept {
    Steps s;
    if (state_ != State::open) return s;
    if (!idle) {
      if (!reading_) s.start_read = reading_ = true;
      if (keepalive_enabled && !keepalive_armed_) s.arm_keepalive = keepalive_armed_ = true;
      return s;
    }
    s.cancel_read = reading_;  // `reading_` stays set until the read reports its end
    if (keepalive_armed_) {
      s.disarm_keepalive = true;
      keepalive_armed_ = false;
    }
    if (detached_) {
      s.close = true;
      state_ = State::closed;
    }
    return s;
  }

  /// A read ended with `aborted` (cancelled) or `failed` (any other error), or with bytes.
  AfterRead read_done(bool aborted, bool failed) noexcept {
    reading_ = false;
    if (state_ == State::closed) return AfterRead::ignore;
    if (aborted) return AfterRead::follow;
    return failed ? AfterRead::fail : AfterRead::receive;
  }

  /// The keepalive timer fired: whether it still matters (open, with calls).
  bool keepalive_fired(bool idle) noexcept {
    keepalive_armed_ = false;
    return state_ == State::open && !idle;
  }
  /// The keepalive timer was started again after a tick.
  void keepalive_rearmed() noexcept { keepalive_armed_ = true; }

  /// Whether an idle open connection should look at its socket before it takes a call: nothing
  /// reads it, so a close or a GOAWAY may be waiting there unseen.
  bool needs_probe() const noexcept { return state_ == State::open && !reading_; }
  /// Whether new calls may use this connection (`session_usable`: the HTTP/2 session can start
  /// streams: no GOAWAY, not broken).
  bool accepting(bool session_usable) const noexcept {
    return state_ != State::closed && !detached_ && !exhausted_ && session_usable;
  }

  /// No new calls will come: the connection closes once its calls have ended.
  void detach() noexcept { detached_ = true; }
  /// The session can start no more streams (ids spent).
  void exhaust() noexcept { exhausted_ = true; }
  /// The connection fails or closes: whether this is news (it was not closed already).
  bool close() noexcept {
    if (state_ == State::closed) return false;
    state_ = State::closed;
    return true;
  }

 private:
  State state_ = State::connecting;
  bool reading_ = false;
  bool keepalive_armed_ = false;
  bool detached_ = false;
  bool exhausted_ = false;
};

}  // namespace awaken::http::detail
