// The broker's decisions (see broker_core.hpp).
#include "credentials/broker/broker_core.hpp"

#include <algorithm>

#include <asio/error.hpp>

#include <awaken/error.hpp>

#include "credentials/minters/provider_context.hpp"

namespace awaken::detail {

Deadlines TokenWindows::deadlines(SteadyTime now, SteadyTime expiry) const noexcept {
  const auto lifetime = expiry - now;
  auto soft =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(lifetime * std::clamp(soft_fraction, 0.0, 1.0));
  soft = std::min<std::chrono::steady_clock::duration>(soft, max_soft);
  return {expiry - hard, expiry - soft};
}

Outcome failure(std::error_code code, std::string context) {
  return Outcome{code, std::make_shared<const Diagnostics>(Diagnostics{std::move(context), {}}), nullptr};
}

// ---- Flight

void Flight::join(std::unique_ptr<EntryCompletion> c) {
  std::unique_lock lk(mutex_);
  if (done_) {
    Outcome o = outcome_;
    lk.unlock();
    if (o.error && o.diagnostics) c->set_diagnostics(*o.diagnostics);
    c->complete(o.error, std::move(o.entry));
    return;
  }
  if (waiters_.size() == waiters_.capacity())  // so that nothing throws once the slot is set
    waiters_.reserve(std::max<std::size_t>(8, 2 * waiters_.capacity()));
  if (auto slot = c->cancellation_slot(); slot.is_connected()) {
    slot.assign([weak = weak_from_this(), index = waiters_.size()](asio::cancellation_type type) {
      if (type == asio::cancellation_type::none) return;
      auto flight = weak.lock();
      if (!flight) return;
      std::unique_lock lock(flight->mutex_);
      if (flight->done_ || index >= flight->waiters_.size() || !flight->waiters_[index]) return;  // answered
      auto mine = std::move(flight->waiters_[index]);
      lock.unlock();
      mine->complete(make_error_code(asio::error::operation_aborted), nullptr);
    });
  }
  waiters_.push_back(std::move(c));
}

Waiters Flight::close(Outcome outcome) {
  std::lock_guard lk(mutex_);
  if (done_) return {};
  done_ = true;
  outcome_ = std::move(outcome);
  return std::move(waiters_);
}

bool Flight::is_done() const {
  std::lock_guard lk(mutex_);
  return done_;
}

// ---- BrokerCore: materials

const BrokerCore::Material* BrokerCore::material(std::string_view provider) const {
  auto it = materials_.find(provider);
  return it == materials_.end() ? nullptr : &it->second;
}

bool BrokerCore::is_registered(std::string_view provider) const {
  const Material* m = material(provider);
  return m != nullptr && m->material.has_value();
}

void BrokerCore::drop(std::string_view provider) {
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (it->first.provider == provider) {
      it->second->dead.store(true, std::memory_order_release);
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<CredentialMaterial> BrokerCore::set_material(std::string provider, CredentialMaterial m) {
  auto it = materials_.find(std::string_view{provider});
  if (it == materials_.end()) it = materials_.emplace(std::move(provider), Material{}).first;
  auto& slot = it->second;
  if (slot.generation != std::numeric_limits<std::uint64_t>::max()) ++slot.generation;
  auto previous = std::exchange(slot.material, std::move(m));
  drop(it->first);
  return previous;
}

BrokerCore::Removed BrokerCore::remove_material(std::string_view provider) {
  Removed r;
  r.outcome = failure(credential_errc::not_configured, provider_context(provider));
  r.closed.reserve(flights_.size());  // nothing below may throw once flights close
  if (auto it = materials_.find(provider); it != materials_.end()) {
    auto& slot = it->second;
    if (slot.generation != std::numeric_limits<std::uint64_t>::max()) ++slot.generation;
    r.previous = std::exchange(slot.material, std::nullopt);
  }
  drop(provider);
  for (auto it = flights_.begin(); it != flights_.end();) {
    if (it->first.provider == provider) {
      r.closed.push_back({it->second, it->second->close(r.outcome)});
      it = flights_.erase(it);
    } else {
      ++it;
    }
  }
  return r;
}

BrokerCore::Removed BrokerCore::shut_down() {
  Removed r;
  r.outcome = failure(awaken::errc::shut_down, "credential broker destroyed");
  r.closed.reserve(flights_.size());  // nothing below may throw once flights close
  r.retired.reserve(materials_.size());
  shut_ = true;
  for (auto& [key, entry] : cache_) entry->dead.store(true, std::memory_order_release);
  cache_.clear();
  for (auto& [key, f] : flights_) r.closed.push_back({f, f->close(r.outcome)});
  flights_.clear();
  for (auto& [provider, m] : materials_)
    if (m.material) r.retired.push_back(std::move(*m.material));
  materials_.clear();
  return r;
}

// ---- BrokerCore: lookups

std::shared_ptr<Flight> BrokerCore::start(KeyView key, bool background) {
  auto f = make_flight_(CacheKey{std::string{key.provider}, std::string{key.scope}}, background);
  flights_.emplace(f->key, f);
  return f;
}

void BrokerCore::unlist(const std::shared_ptr<Flight>& f) {
  auto it = flights_.find(KeyView(f->key));
  if (it != flights_.end() && it->second == f) flights_.erase(it);
}

BrokerCore::Lookup BrokerCore::lookup(KeyView key, SteadyTime now) {
  using Kind = Lookup::Kind;
  if (shut_) return {Kind::fail, failure(awaken::errc::shut_down, provider_context(key.provider)), {}, {}};
  if (!is_registered(key.provider))
    return {Kind::fail, failure(credential_errc::not_configured, provider_context(key.provider)), {}, {}};
  if (auto it = cache_.find(key); it != cache_.end()) {
    const auto& e = it->second;
    const HandOut h = hand_out_at(e->deadlines, now);
    if (h != HandOut::refuse) {
      std::shared_ptr<Flight> refresh;
      if (h == HandOut::refresh && e->claim_refresh(now)) {
        try {
          refresh = start_refresh(e, now);
        } catch (...) {  // the entry was re-armed; a later hit tries again
        }
      }
      return {Kind::hit, {}, e, std::move(refresh)};
    }
  }
  if (auto f = flights_.find(key); f != flights_.end()) return {Kind::join, {}, {}, f->second};
  return {Kind::start, {}, {}, start(key, false)};
}

std::shared_ptr<Entry> BrokerCore::cached(KeyView key) const {
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

std::shared_ptr<Flight> BrokerCore::start_refresh(const std::shared_ptr<Entry>& e, SteadyTime now) {
  if (shut_ || e->dead.load(std::memory_order_relaxed)) return nullptr;
  if (flights_.find(KeyView(e->key)) != flights_.end()) return nullptr;  // its end rearms the entry
  try {
    auto f = start(e->key, true);
    ++background_refreshes_;
    return f;
  } catch (...) {
    e->rearm(now + refresh_retry_);
    throw;
  }
}

bool BrokerCore::invalidate(KeyView key, const Token* rejected) {
  auto it = cache_.find(key);
  if (it == cache_.end() || &it->second->token != rejected) return false;
  it->second->dead.store(true, std::memory_order_release);
  cache_.erase(it);
  return true;
}

// ---- BrokerCore: mints

BrokerCore::MintStart BrokerCore::begin_mint(const std::shared_ptr<Flight>& f) {
  MintStart s;
  if (f->is_done()) return s;  // closed meanwhile; its waiters were answered
  const Material* m = material(f->key.provider);
  if (m == nullptr || !m->material) {
    unlist(f);
    s.outcome = failure(credential_errc::not_configured, provider_context(f->key.provider));
    s.orphans = f->close(s.outcome);
    return s;
  }
  s.material = m->material;
  s.generation = m->generation;
  return s;
}

void BrokerCore::rearm(KeyView key, SteadyTime now) {
  if (auto it = cache_.find(key); it != cache_.end()) it->second->rearm(now + refresh_retry_);
}

void BrokerCore::sweep(SteadyTime now) {
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (it->second->token.steady_expires_at() <= now) {
      it->second->dead.store(true, std::memory_order_release);
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
}

std::shared_ptr<Entry> BrokerCore::publish(const CacheKey& key, Token token, SteadyTime now) {
  const Deadlines d = windows_.deadlines(now, token.steady_expires_at());
  auto entry = std::make_shared<Entry>(key, std::move(token), d);
  sweep(now);  // keys no longer asked for do not pile up
  auto [it, fresh] = cache_.try_emplace(key, entry);
  if (!fresh) {
    it->second->dead.store(true, std::memory_order_release);
    it->second = entry;
  }
  return entry;
}

BrokerCore::MintEnd BrokerCore::finish_mint(const std::shared_ptr<Flight>& f, std::uint64_t generation,
                                            std::optional<Token> token, std::error_code error, Diagnostics diagnostics,
                                            SteadyTime now) {
  using Kind = MintEnd::Kind;
  if (f->is_done()) return {Kind::abandoned, {}, {}};  // deregistered or shut down meanwhile
  const Material* m = material(f->key.provider);
  if (m == nullptr || !m->material || m->generation != generation) {
    ++stale_discards_;
    return {Kind::stale, {}, {}};
  }
  unlist(f);
  Outcome outcome;
  if (!token) {
    ++failed_flights_;
    rearm(f->key, now);  // a cached token stays until its hard window; refresh later
    outcome = Outcome{error, std::make_shared<const Diagnostics>(std::move(diagnostics)), nullptr};
    auto waiters = f->close(outcome);
    return {Kind::failed, std::move(waiters), std::move(outcome)};
  }
  outcome.entry = publish(f->key, std::move(*token), now);
  auto waiters = f->close(outcome);
  return {Kind::published, std::move(waiters), std::move(outcome)};
}

Waiters BrokerCore::abort(const std::shared_ptr<Flight>& f, std::error_code error, Diagnostics diagnostics,
                          SteadyTime now) {
  unlist(f);
  rearm(f->key, now);
  return f->close(Outcome{error, std::make_shared<const Diagnostics>(std::move(diagnostics)), nullptr});
}

BrokerStats BrokerCore::stats() const {
  BrokerStats s;
  for (const auto& [id, m] : materials_)
    if (m.material) ++s.providers;
  s.cached_tokens = cache_.size();
  s.flights = flights_.size();
  s.mint_attempts = mint_attempts_.load(std::memory_order_relaxed);
  s.failed_flights = failed_flights_;
  s.background_refreshes = background_refreshes_;
  s.stale_discards = stale_discards_;
  return s;
}

}  // namespace awaken::detail
