#!/usr/bin/env bash
# Incremental native build for development, without pip:
#   scripts/dev-build.sh            -> build/dev/heidi_cpp*.so and build/dev/heidid
#   BUILD_NAME=tsan CMAKE_ARGS=-DHEIDI_TSAN=ON scripts/dev-build.sh
# Then run the tests against it:  PYTHONPATH=python:build/dev python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."
build="build/${BUILD_NAME:-dev}"
py="${PYTHON:-python3}"
if [ ! -f "$build/build.ninja" ]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
    -DPython_EXECUTABLE="$(command -v "$py")" ${CMAKE_ARGS:-}
fi
cmake --build "$build" -j "${JOBS:-2}"
