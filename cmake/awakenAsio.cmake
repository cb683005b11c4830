# Standalone Asio ships no CMake package of its own: wrap its headers in an imported INTERFACE
# target, awaken::asio. Set AWAKEN_ASIO_INCLUDE_DIR to use another copy of Asio.
if(NOT TARGET awaken::asio)
  find_path(AWAKEN_ASIO_INCLUDE_DIR asio.hpp)
  if(NOT AWAKEN_ASIO_INCLUDE_DIR)
    message(FATAL_ERROR "standalone Asio not found (Debian: libasio-dev); set AWAKEN_ASIO_INCLUDE_DIR")
  endif()
  find_package(Threads REQUIRED)
  add_library(awaken::asio INTERFACE IMPORTED GLOBAL)
  target_include_directories(awaken::asio INTERFACE ${AWAKEN_ASIO_INCLUDE_DIR})
  # ASIO_DISABLE_STD_ALIGNED_ALLOC: Asio decides between aligned_alloc and operator new from
  # _GLIBCXX_HAVE_ALIGNED_ALLOC, which is only defined once a standard header has been included.
  # A translation unit whose first include is an Asio header (src/core/asio.cpp, or a user's)
  # would choose differently from the others, and its recycled handler memory would be freed
  # with the wrong function. One choice for every unit that links awaken::asio.
  target_compile_definitions(awaken::asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED ASIO_DISABLE_STD_ALIGNED_ALLOC)
  # Asio 1.22 looks for coroutines under clang only in libc++'s <experimental/coroutine>; clang
  # has them in <coroutine> with libstdc++ too, and awaken's headers need them.
  target_compile_definitions(awaken::asio INTERFACE
    $<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1>
    $<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_STD_COROUTINE=1>)
  target_link_libraries(awaken::asio INTERFACE Threads::Threads)
endif()
