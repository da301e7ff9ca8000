# C++ dependencies. Nothing is vendored. nlohmann/json is found on the system or, failing
# that, in the `nlohmann-json` PyPI package (a build requirement, so `pip install .` gets
# it); the others exist only as system packages, and a missing one stops the configure
# step naming the Debian package that provides it.
find_package(Threads REQUIRED)

find_package(OpenSSL 3 QUIET COMPONENTS Crypto)
if(NOT OpenSSL_FOUND)
  message(FATAL_ERROR "OpenSSL (libcrypto) not found: apt-get install libssl-dev")
endif()
add_library(heidi::openssl_crypto INTERFACE IMPORTED)
target_link_libraries(heidi::openssl_crypto INTERFACE OpenSSL::Crypto)

add_library(heidi::nlohmann_json INTERFACE IMPORTED)
find_package(nlohmann_json 3.10 QUIET)
if(nlohmann_json_FOUND)
  target_link_libraries(heidi::nlohmann_json INTERFACE nlohmann_json::nlohmann_json)
else()
  if(NOT Python_EXECUTABLE)
    find_package(Python 3.10 QUIET COMPONENTS Interpreter)
  endif()
  if(Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c "import importlib.util, pathlib; spec = importlib.util.find_spec('nlohmann_json'); print(pathlib.Path(next(iter(spec.submodule_search_locations)), 'include') if spec else '')"
      OUTPUT_VARIABLE _nlohmann_pypi_include OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  if(NOT _nlohmann_pypi_include OR NOT EXISTS "${_nlohmann_pypi_include}/nlohmann/json.hpp")
    message(FATAL_ERROR "nlohmann/json not found: pip install nlohmann-json (pip install . does this) or apt-get install nlohmann-json3-dev")
  endif()
  message(STATUS "nlohmann/json from the nlohmann-json Python package: ${_nlohmann_pypi_include}")
  target_include_directories(heidi::nlohmann_json INTERFACE "${_nlohmann_pypi_include}")
endif()

find_package(tomlplusplus 3 QUIET)
if(NOT tomlplusplus_FOUND)
  find_path(TOMLPLUSPLUS_INCLUDE_DIR toml++/toml.hpp)
  if(NOT TOMLPLUSPLUS_INCLUDE_DIR)
    message(FATAL_ERROR "toml++ not found: apt-get install libtomlplusplus-dev")
  endif()
  add_library(heidi::tomlplusplus INTERFACE IMPORTED)
  target_include_directories(heidi::tomlplusplus INTERFACE "${TOMLPLUSPLUS_INCLUDE_DIR}")
else()
  add_library(heidi::tomlplusplus INTERFACE IMPORTED)
  target_link_libraries(heidi::tomlplusplus INTERFACE tomlplusplus::tomlplusplus)
endif()

# cpp-httplib: Debian ships it split (declarations in httplib.h, code in libcpp-httplib.so)
# and built with OpenSSL/zlib/brotli support; pkg-config gives the matching defines, which
# change the library's class layouts and so must be used. Header-only copies elsewhere
# (no .pc file) are used as they are.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(CPP_HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
endif()
add_library(heidi::httplib INTERFACE IMPORTED)
if(CPP_HTTPLIB_FOUND)
  target_link_libraries(heidi::httplib INTERFACE PkgConfig::CPP_HTTPLIB)
else()
  find_path(HTTPLIB_INCLUDE_DIR httplib.h)
  if(NOT HTTPLIB_INCLUDE_DIR)
    message(FATAL_ERROR "cpp-httplib not found: apt-get install libcpp-httplib-dev")
  endif()
  find_package(httplib QUIET)
  if(TARGET httplib::httplib)
    target_link_libraries(heidi::httplib INTERFACE httplib::httplib)
  else()
    target_include_directories(heidi::httplib INTERFACE "${HTTPLIB_INCLUDE_DIR}")
  endif()
endif()
