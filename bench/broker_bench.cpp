// The credential broker's hot path and flights, against a baseline measured in the same run: a
// `std::shared_mutex` + `std::unordered_map` cache returning a `shared_ptr` copy of the token.
// Heap allocations are counted in a replaced `malloc` family.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <benchmark/benchmark.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/error.hpp>

#include "bench_report.hpp"

// Every heap allocation goes through malloc, so counting there also catches the memory Asio
// takes with aligned_alloc for coroutine frames. glibc allows replacing the malloc family.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}
namespace {
std::atomic<std::uint64_t> g_allocations{0};
void note_allocation() noexcept { g_allocations.fetch_add(1, std::memory_order_relaxed); }
}  // namespace
extern "C" {
void* malloc(std::size_t n) {
  note_allocation();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  note_allocation();
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  note_allocation();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  note_allocation();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  note_allocation();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  note_allocation();
  *out = __libc_memalign(a, n);
  return *out != nullptr ? 0 : 12;  // ENOMEM
}
void free(void* p) { __libc_free(p); }
}

namespace {

using namespace std::chrono_literals;
using awaken::AwakenBroker;
using awaken::CredentialMaterial;
using awaken::IssuedToken;
using awaken::RedactedString;
using awaken::Token;

constexpr std::string_view provider = "vertex";
constexpr std::string_view scope = "https://www.googleapis.com/auth/cloud-platform";

// The baseline: what a careful first version of a token cache looks like.
class MutexMapCache {
 public:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  void put(std::string key, std::shared_ptr<const Token> token) {
    std::unique_lock lk(mutex_);
    map_[std::move(key)] = std::move(token);
  }
  std::shared_ptr<const Token> get(std::string_view key) const {
    std::shared_lock lk(mutex_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const Token>, Hash, std::equal_to<>> map_;
};

// Keys are "provider\nscope", built once outside the loop, so the baseline pays no concatenation.
const std::string& baseline_key() {
  static const std::string k = std::string{provider} + "\n" + std::string{scope};
  return k;
}

MutexMapCache& baseline() {
  static MutexMapCache* c = [] {
    auto* cache = new MutexMapCache;
    cache->put(baseline_key(), std::make_shared<const Token>(Token::expiring_in(RedactedString{"ya29.bench"}, 3600s)));
    return cache;
  }();
  return *c;
}

// One warm broker shared by the hot-path benchmarks (its io_context is never run again).
struct Warm {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  Warm() {
    broker.register_material(std::string{provider}, CredentialMaterial::static_bearer(RedactedString{"ya29.bench"}));
    asio::co_spawn(io, broker.token_for(provider, scope), asio::detached);
    io.run();
  }
};

Warm& warm() {
  static Warm* w = new Warm;
  return *w;
}

void report_allocations(benchmark::State& state, std::uint64_t before) {
  if (state.thread_index() != 0) return;
  const auto n = g_allocations.load() - before;
  state.counters["allocs_per_call"] = static_cast<double>(n) / static_cast<double>(state.iterations());
}

void baseline_lookup(benchmark::State& state) {
  const MutexMapCache& cache = baseline();
  const std::string& key = baseline_key();
  const auto before = g_allocations.load();
  for (auto _ : state) {
    auto t = cache.get(key);
    benchmark::DoNotOptimize(t);
  }
  report_allocations(state, before);
  state.SetItemsProcessed(state.iterations());
}

void try_cached(benchmark::State& state) {
  const AwakenBroker& broker = warm().broker;
  (void)broker.try_cached(provider, scope);  // this thread's first hit fills its slot
  const auto before = g_allocations.load();
  for (auto _ : state) {
    auto t = broker.try_cached(provider, scope);
    benchmark::DoNotOptimize(t);
  }
  report_allocations(state, before);
  state.SetItemsProcessed(state.iterations());
}

void token_for(benchmark::State& state) {
  asio::io_context io;
  AwakenBroker broker{io.get_executor()};
  broker.register_material(std::string{provider}, CredentialMaterial::static_bearer(RedactedString{"ya29.bench"}));
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        (void)co_await broker.token_for(provider, scope);  // mint and warm the frame recycler
        (void)co_await broker.token_for(provider, scope);
        const auto before = g_allocations.load();
        for (auto _ : state) {
          auto t = co_await broker.token_for(provider, scope);
          benchmark::DoNotOptimize(t);
        }
        report_allocations(state, before);
      },
      asio::detached);
  io.run();
  state.SetItemsProcessed(state.iterations());
}

// Waits `delay` and then returns a token or, when `fail`, a permanent error.
class SlowMinter final : public awaken::Minter {
 public:
  SlowMinter(std::chrono::milliseconds delay, bool fail) : delay_(delay), fail_(fail) {}
  std::string_view kind_label() const noexcept override { return "bench_slow"; }
  asio::awaitable<Token> mint(std::string_view, const awaken::MintContext& ctx) const override {
    ++calls;
    asio::steady_timer t{co_await asio::this_coro::executor, delay_};
    co_await t.async_wait(asio::use_awaitable);
    if (fail_) awaken::throw_error(awaken::credential_errc::permanent_upstream, "bench", {403, "invalid_grant", {}});
    co_return Token::expiring_in(RedactedString{"ya29.cold"}, 3600s, ctx.clock);
  }
  mutable std::atomic<int> calls{0};

 private:
  std::chrono::milliseconds delay_;
  bool fail_;
};

// N callers ask for one cold key at once; one iteration is the wall time until all have an
// answer. The minter takes 20 ms, so 20 ms is the floor.
void cold_callers(benchmark::State& state, bool fail) {
  const int callers = static_cast<int>(state.range(0));
  double mints = 0, answered = 0;
  const auto before = g_allocations.load();
  for (auto _ : state) {
    asio::io_context io;
    AwakenBroker broker{io.get_executor()};
    auto minter = std::make_shared<SlowMinter>(20ms, fail);
    broker.register_material(std::string{provider}, CredentialMaterial::from_minter(minter));
    int done = 0;
    for (int i = 0; i < callers; ++i)
      asio::co_spawn(io, broker.token_for(provider, scope), [&](std::exception_ptr, IssuedToken) { ++done; });
    io.run();
    mints += minter->calls;
    answered += done;
  }
  state.counters["mints"] = mints / static_cast<double>(state.iterations());
  state.counters["answered"] = answered / static_cast<double>(state.iterations());
  state.counters["allocs_per_caller"] =
      static_cast<double>(g_allocations.load() - before) / static_cast<double>(state.iterations()) / callers;
}

// The floor for the cold benchmarks: the same callers, spawned the same way, each waiting on one
// shared 20 ms timer instead of a broker (no cache, no flight, no token).
void cold_baseline(benchmark::State& state) {
  const int callers = static_cast<int>(state.range(0));
  const auto before = g_allocations.load();
  for (auto _ : state) {
    asio::io_context io;
    asio::steady_timer timer{io, 20ms};
    int done = 0;
    for (int i = 0; i < callers; ++i)
      asio::co_spawn(
          io, [&]() -> asio::awaitable<void> { co_await timer.async_wait(asio::use_awaitable); },
          [&](std::exception_ptr) { ++done; });
    io.run();
    benchmark::DoNotOptimize(done);
  }
  state.counters["allocs_per_caller"] =
      static_cast<double>(g_allocations.load() - before) / static_cast<double>(state.iterations()) / callers;
}

BENCHMARK(baseline_lookup)
    ->Name("hit/baseline_shared_mutex_map")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(try_cached)
    ->Name("hit/try_cached")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Repetitions(5)
    ->DisplayAggregatesOnly(true);
BENCHMARK(token_for)->Name("hit/co_await_token_for")->UseRealTime()->Repetitions(5)->DisplayAggregatesOnly(true);
// The cold benchmarks run few, long iterations.
void cold(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5)->Repetitions(3)->DisplayAggregatesOnly(true);
}
BENCHMARK(cold_baseline)->Name("cold/baseline_timer_wait")->Arg(1000)->Arg(10000)->Apply(cold);
BENCHMARK_CAPTURE(cold_callers, ok, false)->Name("cold/20ms_mint")->Arg(1000)->Arg(10000)->Apply(cold);
BENCHMARK_CAPTURE(cold_callers, fail, true)->Name("cold/20ms_permanent_failure")->Arg(100)->Apply(cold);

}  // namespace

int main(int argc, char** argv) {
  baseline();
  warm();
  benchmark::Initialize(&argc, argv);
  awaken::bench::MedianCapture reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const auto ns = [&](const std::string& name) { return reporter.time(name, true); };
  const std::string base1 = "hit/baseline_shared_mutex_map/repeats:5/real_time/threads:1";
  const std::string base2 = "hit/baseline_shared_mutex_map/repeats:5/real_time/threads:2";
  const std::string try1 = "hit/try_cached/repeats:5/real_time/threads:1";
  const std::string try2 = "hit/try_cached/repeats:5/real_time/threads:2";
  const std::string aw = "hit/co_await_token_for/repeats:5/real_time";
  std::printf("\n");
  if (ns(base1) > 0 && ns(try1) > 0 && ns(aw) > 0) {
    std::printf(
        "hit, 1 thread:   try_cached %.1f ns (%.2f allocs), co_await token_for %.1f ns (%.2f allocs), "
        "baseline %.1f ns (%.2f allocs)\n",
        ns(try1), reporter.counter(try1, "allocs_per_call"), ns(aw), reporter.counter(aw, "allocs_per_call"), ns(base1),
        reporter.counter(base1, "allocs_per_call"));
    std::printf("                 try_cached/baseline = %.2fx, token_for/baseline = %.2fx\n", ns(try1) / ns(base1),
                ns(aw) / ns(base1));
  }
  // With threads, Google Benchmark's time per iteration is wall time over all threads' iterations:
  // its inverse is the throughput.
  if (ns(try2) > 0 && ns(base2) > 0) {
    std::printf("hit throughput:  try_cached 2 threads / 1 thread = %.2fx (%.1f M/s vs %.1f M/s)\n",
                ns(try1) / ns(try2), 1e3 / ns(try2), 1e3 / ns(try1));
    std::printf("                 baseline   2 threads / 1 thread = %.2fx (%.1f M/s vs %.1f M/s)\n",
                ns(base1) / ns(base2), 1e3 / ns(base2), 1e3 / ns(base1));
    std::printf("                 try_cached/baseline at 2 threads = %.2fx the throughput\n", ns(base2) / ns(try2));
  }
  for (const char* n : {"1000", "10000"}) {
    const std::string name = std::string{"cold/20ms_mint/"} + n + "/iterations:5/repeats:3/real_time";
    const std::string base = std::string{"cold/baseline_timer_wait/"} + n + "/iterations:5/repeats:3/real_time";
    if (reporter.time(name, true) > 0 && reporter.time(base, true) > 0)
      std::printf(
          "cold key, %5s callers: %.1f ms wall, %.0f mint(s), %.0f answered; "
          "awaken/timer_wait = %.2fx (%.1f ms), %.1f vs %.1f allocs per caller\n",
          n, reporter.time(name, true), reporter.counter(name, "mints"), reporter.counter(name, "answered"),
          reporter.time(name, true) / reporter.time(base, true), reporter.time(base, true),
          reporter.counter(name, "allocs_per_caller"), reporter.counter(base, "allocs_per_caller"));
  }
  const std::string failing = "cold/20ms_permanent_failure/100/iterations:5/repeats:3/real_time";
  if (reporter.time(failing, true) > 0)
    std::printf("permanent failure, 100 callers: %.1f ms wall (%.2fx the 20 ms mint), %.0f mint(s), %.0f answered\n",
                reporter.time(failing, true), reporter.time(failing, true) / 20.0, reporter.counter(failing, "mints"),
                reporter.counter(failing, "answered"));
  return 0;
}
