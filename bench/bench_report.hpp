// Shared by the benchmarks: a console reporter that keeps each benchmark's median times, and the
// ratio lines printed after a run.
#pragma once

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace awaken::bench {

// Passes everything to the console and keeps each benchmark's median CPU and real times.
class MedianCapture : public benchmark::ConsoleReporter {
 public:
  MedianCapture() : ConsoleReporter(isatty(STDOUT_FILENO) != 0 ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const std::string& name = run.run_name.function_name;
      const std::string full = run.run_name.str();  // with "/threads:2", "/real_time", arguments
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
        medians_[name] = {run.GetAdjustedCPUTime(), run.GetAdjustedRealTime()};
        medians_[full] = medians_[name];
        for (const auto& [key, counter] : run.counters) counters_[full + ":" + key] = counter.value;
      } else if (run.run_type == Run::RT_Iteration) {
        singles_[name] = {run.GetAdjustedCPUTime(), run.GetAdjustedRealTime()};
        singles_[full] = singles_[name];
        for (const auto& [key, counter] : run.counters) counters_[full + ":" + key] = counter.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // A user counter of a run (full name), the median's when repetitions were run; NaN if missing.
  double counter(const std::string& full_name, const std::string& key) const {
    auto it = counters_.find(full_name + ":" + key);
    return it == counters_.end() ? std::nan("") : it->second;
  }

  // The median when repetitions were run, else the last measurement; negative if missing.
  // `name` is a function name or a full run name ("x/threads:2").
  double time(const std::string& name, bool real = false) const {
    const Times* t = nullptr;
    if (auto it = medians_.find(name); it != medians_.end())
      t = &it->second;
    else if (auto it2 = singles_.find(name); it2 != singles_.end())
      t = &it2->second;
    if (t == nullptr) return -1;
    return real ? t->real : t->cpu;
  }

 private:
  struct Times {
    double cpu = -1;
    double real = -1;
  };
  std::map<std::string, Times> medians_;
  std::map<std::string, Times> singles_;
  std::map<std::string, double> counters_;
};

// "label  awaken/<baseline> = 1.02x  (a us vs b us, median)"; CPU time unless `real`.
inline void print_ratio(const MedianCapture& r, const char* label, const std::string& ours, const std::string& theirs,
                        const char* baseline = "openssl", bool real = false) {
  const double a = r.time(ours, real);
  const double b = r.time(theirs, real);
  if (a <= 0 || b <= 0) return;
  std::printf("%-26s awaken/%s = %.2fx   (%.2f us vs %.2f us %s, median)\n", label, baseline, a / b, a, b,
              real ? "wall" : "CPU");
}

}  // namespace awaken::bench
