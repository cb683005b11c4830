// Test support: the Workload API peer (tests/peers/workload_server.mjs) on a unix socket in a
// scratch directory, its control port, and restarts on the same socket.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <awaken/http/http_client.hpp>
#include <awaken/spiffe/workload_api.hpp>

#include "support/peer.hpp"

namespace awaken::test {

class WorkloadPeer {
 public:
  /// `tcp`: also serve on a loopback TCP port (`tcp_endpoint()`).
  explicit WorkloadPeer(bool tcp = false) : socket_(dir_.path() + "/agent.sock"), tcp_(tcp) { start(); }

  const std::string& socket() const { return socket_; }
  spiffe::WorkloadEndpoint endpoint() const { return spiffe::WorkloadEndpoint::parse("unix://" + socket_); }
  PeerProcess& process() { return *process_; }
  int control_port() const { return process_->info()["control_port"].get<int>(); }

  /// Kills the peer (SIGKILL) and starts a new one on the same socket.
  void restart() {
    process_.reset();
    start();
  }
  void stop() { process_.reset(); }
  void start() {
    std::vector<std::string> args{socket_};
    if (tcp_) args.push_back("--tcp");
    process_ = std::make_unique<PeerProcess>("workload_server.mjs", args);
  }
  spiffe::WorkloadEndpoint tcp_endpoint() const {
    return spiffe::WorkloadEndpoint::parse("tcp://127.0.0.1:" +
                                           std::to_string(process_->info()["tcp_port"].get<int>()));
  }

  /// POSTs (GET for /stats) to the control port, on an io_context of its own.
  nlohmann::json control(const std::string& path) const {
    asio::io_context io;
    http::HttpClient client{io.get_executor()};
    http::HttpRequest request;
    request.method = path.rfind("/stats", 0) == 0 ? "GET" : "POST";
    request.url = "http://127.0.0.1:" + std::to_string(process_->info()["control_port"].get<int>()) + path;
    return nlohmann::json::parse(run(io, client.send(request)).body);
  }

  /// Waits until the peer has `n` bundle streams open.
  void wait_for_streams(int n, std::chrono::milliseconds deadline = std::chrono::seconds{10}) const {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (control("/stats")["streams"].get<int>() < n) {
      if (std::chrono::steady_clock::now() > until) throw std::runtime_error("no bundle stream opened");
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
  }

 private:
  TempDir dir_;
  std::string socket_;
  bool tcp_ = false;
  std::unique_ptr<PeerProcess> process_;
};

}  // namespace awaken::test
