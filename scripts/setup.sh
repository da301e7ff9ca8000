#!/usr/bin/env bash
# Set up Heidi Engine on a fresh Debian/Ubuntu machine:
#   system packages (C++ libraries, sandbox, browser for tests), a virtualenv in .venv,
#   and the package built and installed into it with the model libraries.
#
#   scripts/setup.sh            install for running the loop
#   scripts/setup.sh --test     also install the test tools
#   scripts/setup.sh --dev      editable install for development (persistent build dir)
#
# HEIDI_NATIVE=OFF scripts/setup.sh installs the pure-Python backend only (no compiler).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
case "${1:-}" in
  "") ;;
  --test) mode=test ;;
  --dev) mode=dev ;;
  *) echo "setup.sh: unknown option '$1' (valid: --test, --dev)" >&2; exit 2 ;;
esac

apt_packages=(pkg-config libcpp-httplib-dev nlohmann-json3-dev libtomlplusplus-dev libssl-dev bubblewrap libseccomp-dev)
if [ "$mode" != run ]; then
  apt_packages+=(chromium wrk openssl)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch is pinned to the CPU build; installed first so nothing pulls a CUDA build.
"${pip[@]}" "torch==2.13.0"
extras="ml,data"
[ "$mode" = run ] || extras="$extras,test,bench"
if [ "$mode" = dev ]; then
  "${pip[@]}" scikit-build-core pybind11 ninja cmake
  "${pip[@]}" --no-build-isolation -C build-dir=build/editable -e ".[$extras]"
else
  "${pip[@]}" ".[$extras]"
fi
echo "setup: done ($(.venv/bin/python -c 'import heidi_engine as h; print("backend:", h.load().name)'))"
