// What the command-line tools share: their argument reader, the usage error, and a main that
// runs one coroutine and turns its outcome into an exit code and one line on stderr.
#pragma once

#include <exception>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

#include <spdlog/cfg/env.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <awaken/log.hpp>

namespace awaken::tools {

/// Bad usage or configuration: exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Walks argv; `value()` takes the argument of the current option, `number()` one that must be
/// an integer.
class ArgReader {
 public:
  ArgReader(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool next() { return ++i_ < argc_; }
  std::string arg() const { return argv_[i_]; }
  std::string value() {
    if (i_ + 1 >= argc_) throw UsageError{arg() + " needs a value"};
    return argv_[++i_];
  }
  int number() {
    const std::string option = arg();
    try {
      return std::stoi(value());
    } catch (const std::logic_error&) {
      throw UsageError{option + " needs a number"};
    }
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
};

/// Removes `flag` from argv wherever it stands; returns whether it was there.
inline bool take_flag(int& argc, char** argv, const std::string& flag) {
  bool found = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (flag == argv[i])
      found = true;
    else
      argv[out++] = argv[i];
  }
  argc = out;
  argv[argc] = nullptr;
  return found;
}

/// awaken's log for a tool: warnings to stderr; the level from `SPDLOG_LEVEL` when set
/// ("debug", or per logger: "awaken=trace"); `debug` with `--verbose`. Secrets never reach it.
inline void configure_logging(bool verbose) {
  spdlog::cfg::load_env_levels();
  auto log = std::make_shared<spdlog::logger>("awaken", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  log->set_level(spdlog::level::warn);
  spdlog::initialize_logger(log);  // applies SPDLOG_LEVEL to it
  if (verbose) log->set_level(std::min(log->level(), spdlog::level::debug));
  awaken::set_logger(std::move(log));
}

/// Whether argv asks for help.
inline bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string{argv[i]} == "--help" || std::string{argv[i]} == "-h") return true;
  return false;
}

/// Runs `aw` and everything else on `io` to the end; rethrows what `aw` threw.
inline void run_to_end(asio::io_context& io, asio::awaitable<void> aw) {
  std::exception_ptr failure;
  io.restart();
  asio::co_spawn(io, std::move(aw), [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) std::rethrow_exception(failure);
}

/// A tool's whole `main`: `--help` (or `-h`) prints `usage` and exits 0; `--verbose` turns on
/// debug logging and is taken out of argv; then `make()` (which parses what is left of argv)
/// runs its coroutine to the end on a fresh io_context. The exit code is the coroutine's;
/// `UsageError` gives 2, `Refusal` 1, any other exception 3.
template <class Refusal, class Make>
int tool_main(int& argc, char** argv, const char* name, const char* usage, Make make) {
  if (wants_help(argc, argv)) {
    std::cout << usage;
    return 0;
  }
  configure_logging(take_flag(argc, argv, "--verbose"));
  try {
    asio::io_context io;
    int status = 0;
    std::exception_ptr failure;
    asio::co_spawn(io, make(), [&](std::exception_ptr e, int code) {
      failure = e;
      status = code;
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    return status;
  } catch (const UsageError& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 2;
  } catch (const Refusal& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 3;
  }
}

}  // namespace awaken::tools
