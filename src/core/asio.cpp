// Asio's compiled part, built once into libawaken (AWAKEN_ASIO_SEPARATE_COMPILATION).
#include <asio/impl/src.hpp>
