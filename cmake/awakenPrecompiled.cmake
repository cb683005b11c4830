# Precompiled headers: the third-party headers nearly every translation unit of awaken includes
# (Asio's coroutine machinery, nlohmann/json, spdlog, OpenSSL, the standard library) cost ten to
# fifteen seconds of parsing each; precompiled once per target, they cost that once.
# awaken's own headers stay out, so that touching one rebuilds only what includes it.
# Off (-DAWAKEN_PRECOMPILE_HEADERS=OFF) for the lint build: there each file must compile with its
# own includes.
option(AWAKEN_PRECOMPILE_HEADERS "Precompile the heavy third-party headers" ${PROJECT_IS_TOP_LEVEL})

set(AWAKEN_PRECOMPILED_HEADERS
  <algorithm> <array> <atomic> <chrono> <cstddef> <cstdint> <cstring> <functional> <map> <memory>
  <mutex> <optional> <span> <string> <string_view> <system_error> <type_traits> <utility> <vector>
  <asio/any_io_executor.hpp> <asio/awaitable.hpp> <asio/bind_cancellation_slot.hpp>
  <asio/cancellation_signal.hpp> <asio/co_spawn.hpp> <asio/experimental/as_tuple.hpp>
  <asio/io_context.hpp> <asio/post.hpp> <asio/steady_timer.hpp> <asio/strand.hpp>
  <asio/this_coro.hpp> <asio/use_awaitable.hpp>
  <nlohmann/json.hpp> <spdlog/logger.h> <openssl/evp.h>)

# awaken_precompile(TARGET [HEADERS...]): the common list, and HEADERS, precompiled for TARGET.
# REUSE TARGET2: TARGET takes TARGET2's precompiled header (same flags and definitions).
function(awaken_precompile target)
  if(NOT AWAKEN_PRECOMPILE_HEADERS)
    return()
  endif()
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "REUSE" "")
  if(arg_REUSE)
    target_precompile_headers(${target} REUSE_FROM ${arg_REUSE})
  else()
    target_precompile_headers(${target} PRIVATE ${AWAKEN_PRECOMPILED_HEADERS} ${arg_UNPARSED_ARGUMENTS})
  endif()
endfunction()
