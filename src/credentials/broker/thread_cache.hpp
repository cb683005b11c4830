// The broker's lock-free hit path: each thread keeps references to the last 16 entries it was
// handed. Each slot holds its entry through a holder of its own, so that the reference counts a
// hit touches belong to this thread alone and two threads reading one key never share a
// written cache line.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "credentials/broker/broker_core.hpp"

namespace awaken::detail {

struct ThreadSlot {
  std::uint64_t owner = 0;  // broker id; 0 when empty
  std::string provider;
  std::string scope;
  std::shared_ptr<Entry> entry;

  void clear() noexcept {
    owner = 0;
    entry.reset();
  }
};

class ThreadCache {
 public:
  /// The live slot of `owner`'s `k`, or null (a dead one is emptied on the way).
  ThreadSlot* find(std::uint64_t owner, KeyView k) noexcept {
    for (ThreadSlot& s : slots_) {
      if (s.owner != owner || s.provider != k.provider || s.scope != k.scope) continue;
      if (!s.entry->dead.load(std::memory_order_acquire)) return &s;
      s.clear();
      return nullptr;
    }
    return nullptr;
  }

  /// Remembers `global` for `k`, in an empty or dead slot if there is one (dropped tokens are
  /// let go of on the way), else in the next slot round the ring.
  void fill(std::uint64_t owner, KeyView k, const std::shared_ptr<Entry>& global) {
    ThreadSlot* victim = nullptr;
    for (ThreadSlot& s : slots_) {
      if (s.entry != nullptr && !s.entry->dead.load(std::memory_order_relaxed)) continue;
      s.clear();
      if (victim == nullptr) victim = &s;
    }
    if (victim == nullptr) {
      victim = &slots_[next_++ % slots_.size()];
      victim->clear();
    }
    auto holder = std::make_shared<std::shared_ptr<Entry>>(global);
    victim->provider.assign(k.provider);
    victim->scope.assign(k.scope);
    victim->entry = std::shared_ptr<Entry>(holder, holder->get());
    victim->owner = owner;
  }

  /// Empties every slot of `owner` (a broker being destroyed).
  void forget(std::uint64_t owner) noexcept {
    for (ThreadSlot& s : slots_)
      if (s.owner == owner) s.clear();
  }

 private:
  std::array<ThreadSlot, 16> slots_;
  unsigned next_ = 0;
};

/// This thread's cache.
inline ThreadCache& thread_cache() noexcept {
  thread_local ThreadCache cache;
  return cache;
}

}  // namespace awaken::detail
