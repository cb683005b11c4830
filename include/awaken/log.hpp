// The one logger awaken writes to.
#pragma once

#include <memory>

namespace spdlog {
class logger;
}

namespace awaken {

/// The logger every awaken component writes to. By default a logger named "awaken" that writes
/// to stderr at level `warn`; it is never registered in spdlog's registry, and awaken never
/// touches spdlog's default logger. Secrets never reach a log line.
///
/// Thread safety: safe to call from any thread; the returned pointer keeps the logger alive.
std::shared_ptr<spdlog::logger> logger() noexcept;

/// Replaces the logger (nullptr restores the default). Safe to call from any thread; log lines
/// already being written finish on the old logger.
void set_logger(std::shared_ptr<spdlog::logger> replacement) noexcept;

}  // namespace awaken
