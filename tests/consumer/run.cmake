# ctest driver: install the build tree into a scratch prefix, then configure, build and run the
# consumer against it with find_package(awaken).
set(work ${AWAKEN_CONSUMER_WORK})
set(prefix ${work}/prefix)
file(REMOVE_RECURSE ${work})

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${ARGN}")
  endif()
endfunction()

step(${CMAKE_COMMAND} --install ${AWAKEN_BUILD_DIR} --prefix ${prefix})
step(${CMAKE_COMMAND} -S ${AWAKEN_CONSUMER_SOURCE} -B ${work}/build -G ${AWAKEN_GENERATOR}
     -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${AWAKEN_CXX}
     "-DCMAKE_CXX_FLAGS=${AWAKEN_CONSUMER_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${AWAKEN_CONSUMER_FLAGS}")
step(${CMAKE_COMMAND} --build ${work}/build)
step(${work}/build/consumer)
