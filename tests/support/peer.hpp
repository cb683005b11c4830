// Test support: real peers in child processes (and, through run.hpp, coroutines run under a
// deadline).
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "support/run.hpp"

namespace awaken::test {

/// The directory holding the npm test peers.
std::string peers_dir();

/// A scratch directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A child process (a Node peer) that prints one JSON line on stdout when it is ready. Killed
/// (SIGKILL) and reaped on destruction.
class PeerProcess {
 public:
  /// Runs `node <peers_dir>/<script> args...` and waits up to `startup` for its ready line.
  PeerProcess(const std::string& script, const std::vector<std::string>& args,
              std::chrono::milliseconds startup = std::chrono::seconds{20});
  ~PeerProcess();
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  /// The ready line.
  const nlohmann::json& info() const { return info_; }
  /// Sends `sig` and reaps the process.
  void kill(int sig);
  /// Sends `sig` only (SIGSTOP, SIGCONT).
  void signal(int sig);
  bool running();
  /// Reads further stdout lines (after the ready line) until one arrives or `timeout` passes.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  nlohmann::json info_;
};

/// Runs a command to completion and returns its exit status; stdout goes to `output`.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr,
                std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// File descriptors this process has open (a leak check).
std::size_t open_fds();

}  // namespace awaken::test
