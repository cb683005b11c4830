// What a failed operation can tell besides its error code, and the completion tokens that carry
// it: `bind_diagnostics` (keep it in an object of yours) and `with_diagnostics` (turn the pair
// into one `awaken::Error` for code that prefers exceptions).
//
// Every asynchronous operation of awaken completes with `void(std::error_code, T)` (or
// `void(std::error_code)`), as Asio's own operations do, and works with any completion token:
//
//   broker.token_for("idp", "read", [](std::error_code ec, awaken::IssuedToken t) { ... });
//   auto [ec, t] = co_await broker.token_for("idp", "read", asio::experimental::as_tuple(asio::use_awaitable));
//   std::future<awaken::IssuedToken> f = broker.token_for("idp", "read", asio::use_future);
//   auto op = broker.token_for("idp", "read", asio::experimental::deferred);  // starts when launched
//   awaken::IssuedToken t = co_await broker.token_for("idp", "read");  // the default token
//
// The default token, `awaken::use_awaitable`, is `with_diagnostics(asio::use_awaitable)`: a
// failure is thrown as `awaken::Error`, whose code is the operation's and whose `details()` and
// `what()` carry the diagnostics. Other tokens receive the bare code; to read what the server
// said with them, bind a `Diagnostics` object:
//
//   awaken::Diagnostics diag;
//   broker.token_for("idp", "read", awaken::bind_diagnostics(diag, [&](std::error_code ec, auto t) {
//     if (ec) log(ec, diag.details.server_message);
//   }));
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/associator.hpp>
#include <asio/async_result.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/error.hpp>

namespace awaken {

/// What awaken knows of a failure besides its code: what it was doing (`context`: names and ids,
/// never a secret) and what the server said (`details`: HTTP status, a bounded excerpt of the
/// body or `grpc-message`, the OAuth `error` and `error_description`, a retry hint). Written by
/// an operation before it completes with an error; left empty on success.
struct Diagnostics {
  std::string context;
  ErrorDetails details;

  void clear() noexcept {
    context.clear();
    details = ErrorDetails{};
  }
};

/// The exception for a code and its diagnostics: "<context>: <code message> (<server words>)".
inline Error to_error(std::error_code ec, const Diagnostics& d) { return Error(ec, d.context, d.details); }

/// The code and diagnostics an exception stands for: an `awaken::Error`'s code, context and
/// details; another `std::system_error`'s code alone (a foreign exception may quote a response
/// body); anything
/// else is `std::errc::not_enough_memory` for `std::bad_alloc` and `std::errc::state_not_recoverable`
/// otherwise (with the exception's type in the context, never its text).
std::pair<std::error_code, Diagnostics> classify_exception(const std::exception_ptr& e) noexcept;

/// The `Diagnostics` an operation should fill for a completion handler, through Asio's
/// associator mechanism: null unless the handler was bound with `bind_diagnostics` or made by
/// `with_diagnostics`. Asio's binders (`bind_executor`, `bind_cancellation_slot`, ...) pass the
/// association through.
template <class T, class Default = std::nullptr_t>
struct associated_diagnostics;

namespace detail {
template <class T, class Default, class = void>
struct associated_diagnostics_impl {
  using type = Diagnostics*;
  static type get(const T&, const Default& = Default()) noexcept { return nullptr; }
};
template <class T, class Default>
struct associated_diagnostics_impl<T, Default,
                                   std::void_t<typename asio::associator<associated_diagnostics, T, Default>::type>>
    : asio::associator<associated_diagnostics, T, Default> {};
}  // namespace detail

template <class T, class Default>
struct associated_diagnostics : detail::associated_diagnostics_impl<T, Default> {};

template <class T>
Diagnostics* get_associated_diagnostics(const T& handler) noexcept {
  return associated_diagnostics<T>::get(handler);
}

/// A completion token or handler with a `Diagnostics` object bound to it (see
/// `bind_diagnostics`). The object must outlive the operation.
template <class T>
class diagnostics_binder {
 public:
  template <class U>
  diagnostics_binder(Diagnostics& diagnostics, U&& target)
      : target_(std::forward<U>(target)), diagnostics_(&diagnostics) {}

  T& get() noexcept { return target_; }
  const T& get() const noexcept { return target_; }
  Diagnostics* get_diagnostics() const noexcept { return diagnostics_; }

  template <class... Args>
  auto operator()(Args&&... args) && -> decltype(std::declval<T&&>()(std::forward<Args>(args)...)) {
    return std::move(target_)(std::forward<Args>(args)...);
  }

 private:
  T target_;
  Diagnostics* diagnostics_;
};

/// Binds `diagnostics` to a completion token: the operation writes what it knows of a failure
/// there before it completes. `diagnostics` is cleared when the operation starts.
template <class Token>
diagnostics_binder<std::decay_t<Token>> bind_diagnostics(Diagnostics& diagnostics, Token&& token) {
  return diagnostics_binder<std::decay_t<Token>>(diagnostics, std::forward<Token>(token));
}

template <class T, class Default>
struct associated_diagnostics<diagnostics_binder<T>, Default> {
  using type = Diagnostics*;
  static type get(const diagnostics_binder<T>& b, const Default& = Default()) noexcept { return b.get_diagnostics(); }
};

/// A completion token adapter: an operation that completes with `void(std::error_code, T...)`
/// completes the wrapped token with `void(std::exception_ptr, T...)` instead, the exception
/// being an `awaken::Error` that carries both the code and the diagnostics. With
/// `asio::use_awaitable` this makes `co_await` throw `awaken::Error`.
template <class Token>
struct with_diagnostics_t {
  Token token;
};

template <class Token>
with_diagnostics_t<std::decay_t<Token>> with_diagnostics(Token&& token) {
  return {std::forward<Token>(token)};
}

/// The default completion token of awaken's operations: `co_await op(...)` returns the value or
/// throws `awaken::Error`.
using use_awaitable_t = with_diagnostics_t<asio::use_awaitable_t<>>;
inline constexpr use_awaitable_t use_awaitable{};

namespace detail {

// The handler `with_diagnostics` gives an operation: holds the diagnostics it is to fill, and
// turns a code into an exception for the wrapped handler.
template <class Handler>
class throwing_handler {
 public:
  explicit throwing_handler(Handler h) : handler_(std::move(h)) {}

  template <class... Args>
  void operator()(std::error_code ec, Args&&... args) && {
    std::exception_ptr e;
    if (ec) e = std::make_exception_ptr(to_error(ec, diagnostics_));
    std::move(handler_)(std::move(e), std::forward<Args>(args)...);
  }

  Handler& get() noexcept { return handler_; }
  const Handler& get() const noexcept { return handler_; }
  Diagnostics* get_diagnostics() const noexcept { return &diagnostics_; }

 private:
  Handler handler_;
  mutable Diagnostics diagnostics_;
};

template <class Signature>
struct exception_signature;
template <class... Args>
struct exception_signature<void(std::error_code, Args...)> {
  using type = void(std::exception_ptr, Args...);
};

}  // namespace detail

template <class Handler, class Default>
struct associated_diagnostics<detail::throwing_handler<Handler>, Default> {
  using type = Diagnostics*;
  static type get(const detail::throwing_handler<Handler>& h, const Default& = Default()) noexcept {
    return h.get_diagnostics();
  }
};

}  // namespace awaken

namespace asio {

// The executor, allocator and cancellation slot of a bound handler are those of its target.
template <template <typename, typename> class Associator, class T, class DefaultCandidate>
struct associator<Associator, awaken::diagnostics_binder<T>, DefaultCandidate> {
  using type = typename Associator<T, DefaultCandidate>::type;
  static type get(const awaken::diagnostics_binder<T>& b, const DefaultCandidate& c = DefaultCandidate()) noexcept {
    return Associator<T, DefaultCandidate>::get(b.get(), c);
  }
};

template <template <typename, typename> class Associator, class H, class DefaultCandidate>
struct associator<Associator, awaken::detail::throwing_handler<H>, DefaultCandidate> {
  using type = typename Associator<H, DefaultCandidate>::type;
  static type get(const awaken::detail::throwing_handler<H>& h,
                  const DefaultCandidate& c = DefaultCandidate()) noexcept {
    return Associator<H, DefaultCandidate>::get(h.get(), c);
  }
};

template <class T, class Signature>
class async_result<awaken::diagnostics_binder<T>, Signature> {
 public:
  template <class Initiation>
  struct init_wrapper {
    awaken::Diagnostics* diagnostics;
    Initiation initiation;

    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args) {
      diagnostics->clear();
      std::move(initiation)(
          awaken::diagnostics_binder<std::decay_t<Handler>>(*diagnostics, std::forward<Handler>(handler)),
          std::forward<Args>(args)...);
    }
  };

  template <class Initiation, class RawToken, class... Args>
  static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
    T inner = token.get();  // Asio 1.22's async_initiate takes the token as an lvalue
    return async_initiate<T, Signature>(
        init_wrapper<std::decay_t<Initiation>>{token.get_diagnostics(), std::forward<Initiation>(initiation)}, inner,
        std::forward<Args>(args)...);
  }
};

template <class Token, class... Args>
class async_result<awaken::with_diagnostics_t<Token>, void(std::error_code, Args...)> {
 public:
  template <class Initiation>
  struct init_wrapper {
    Initiation initiation;

    template <class Handler, class... InitArgs>
    void operator()(Handler&& handler, InitArgs&&... args) {
      std::move(initiation)(awaken::detail::throwing_handler<std::decay_t<Handler>>(std::forward<Handler>(handler)),
                            std::forward<InitArgs>(args)...);
    }
  };

  template <class Initiation, class RawToken, class... InitArgs>
  static auto initiate(Initiation&& initiation, RawToken&& token, InitArgs&&... args) {
    Token inner = token.token;  // Asio 1.22's async_initiate takes the token as an lvalue
    return async_initiate<Token, void(std::exception_ptr, Args...)>(
        init_wrapper<std::decay_t<Initiation>>{std::forward<Initiation>(initiation)}, inner,
        std::forward<InitArgs>(args)...);
  }
};

}  // namespace asio
