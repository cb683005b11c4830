#include "support/peer.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

extern char** environ;

namespace awaken::test {
namespace {

using Clock = std::chrono::steady_clock;

int spawn(const std::vector<std::string>& argv, int* out_fd) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    throw std::runtime_error("spawn " + argv[0] + " failed: " + std::strerror(rc));
  }
  *out_fd = pipefd[0];
  return pid;
}

// Reads from fd into buffer until a newline or the deadline; returns the line without it.
std::optional<std::string> read_line_until(int fd, std::string& buffer, Clock::time_point deadline) {
  for (;;) {
    if (auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || fd < 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) return std::nullopt;
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

// What a stalled peer is doing, for the log: each thread's state and kernel wait channel, and
// the command lines of its children (the peers run openssl at start-up).
std::string describe_process(int pid) {
  auto read_file = [](const std::string& path) {
    std::string text;
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      char chunk[512];
      std::size_t n = 0;
      while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0 && text.size() < 4096) text.append(chunk, n);
      std::fclose(f);
    }
    for (char& c : text)
      if (c == '\0') c = ' ';
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  };
  const std::string base = "/proc/" + std::to_string(pid);
  std::string out;
  std::string children;
  if (DIR* d = ::opendir((base + "/task").c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string task = base + "/task/" + e->d_name;
      const std::string stat = read_file(task + "/stat");
      const auto close_paren = stat.rfind(')');
      out += "\n  thread " + std::string{e->d_name} + " " + read_file(task + "/comm") + ": state " +
             (close_paren != std::string::npos && close_paren + 2 < stat.size() ? stat.substr(close_paren + 2, 1)
                                                                                : std::string{"?"}) +
             ", wchan " + read_file(task + "/wchan");
      children += read_file(task + "/children") + " ";
    }
    ::closedir(d);
  }
  std::size_t start = 0;
  while ((start = children.find_first_not_of(' ', start)) != std::string::npos) {
    const std::size_t end = children.find(' ', start);
    const std::string child = children.substr(start, end - start);
    out += "\n  child " + child + ": " + read_file("/proc/" + child + "/cmdline");
    start = end;
  }
  return out.empty() ? " (no /proc entry)" : out;
}

}  // namespace

std::string peers_dir() { return AWAKEN_PEERS_DIR; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "awaken-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

PeerProcess::PeerProcess(const std::string& script, const std::vector<std::string>& args,
                         std::chrono::milliseconds startup) {
  std::vector<std::string> argv{"node", peers_dir() + "/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  // A peer that has not reported ready within `startup` is killed and started once more: on a
  // loaded machine a start has been seen to stall past the bound (a peer is ready in about
  // 0.5 s otherwise).
  for (int attempt = 0;; ++attempt) {
    pid_ = spawn(argv, &out_fd_);
    auto line = read_line_until(out_fd_, buffer_, Clock::now() + startup);
    if (line) {
      info_ = nlohmann::json::parse(*line);
      return;
    }
    std::fprintf(stderr, "peer %s not ready after %lld ms (attempt %d), output so far '%s':%s\n", script.c_str(),
                 static_cast<long long>(startup.count()), attempt + 1, buffer_.substr(0, 512).c_str(),
                 describe_process(pid_).c_str());
    kill(SIGKILL);
    if (out_fd_ >= 0) ::close(out_fd_);
    out_fd_ = -1;
    buffer_.clear();
    if (attempt == 1) throw std::runtime_error("peer " + script + " did not report ready");
  }
}

PeerProcess::~PeerProcess() {
  kill(SIGKILL);
  if (out_fd_ >= 0) ::close(out_fd_);
}

void PeerProcess::kill(int sig) {
  if (pid_ <= 0) return;
  ::kill(pid_, sig);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void PeerProcess::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

bool PeerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::optional<std::string> PeerProcess::read_line(std::chrono::milliseconds timeout) {
  return read_line_until(out_fd_, buffer_, Clock::now() + timeout);
}

int run_command(const std::vector<std::string>& argv, std::string* output, std::chrono::milliseconds timeout) {
  int fd = -1;
  const int pid = spawn(argv, &fd);
  std::string all;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    all.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (output != nullptr) *output = std::move(all);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

}  // namespace awaken::test
