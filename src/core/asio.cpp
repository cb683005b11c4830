// Asio's compiled part, built once into libawaken (AWAKEN_ASIO_SEPARATE_COMPILATION).
#include <asio/impl/src.hpp>
// And its TLS part (awaken/spiffe/tls.hpp configures asio::ssl contexts).
#include <asio/ssl/impl/src.hpp>
