// One owner for every OpenSSL object: `OpensslPtr<EVP_PKEY, EVP_PKEY_free>`.
#pragma once

#include <memory>

namespace awaken::detail {

template <auto Free>
struct OpensslDeleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};

template <class T, auto Free>
using OpensslPtr = std::unique_ptr<T, OpensslDeleter<Free>>;

}  // namespace awaken::detail
