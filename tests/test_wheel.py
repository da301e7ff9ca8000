"""The binary wheel, installed the way a user installs it.

The wheel from ``scripts/build-wheel.sh`` (``$HEIDI_WHEEL``, else the one in ``dist/``,
else built here) is installed into a fresh virtualenv with ``pip install --no-index
--no-deps`` plus its runtime dependencies, and engine tests run against that installed
copy: from outside the source tree, with the C++ headers and the system copies of the
libraries the wheel carries hidden (bubblewrap), and with heidid started from the
virtualenv's scripts directory.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.native, pytest.mark.daemon]

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "build" / "wheel-tools" / "bin"
PY_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
# Engine tests run against the installed wheel: both backends, the journal, the config,
# and the HTTP API over heidid and `heidi serve`.
ENGINE_SUBSET = ("test_core.py", "test_journal.py", "test_config.py", "test_server_api.py")
# Libraries that only the C++ -dev packages bring onto a machine; hidden while the
# installed wheel runs, so it can only work with the copies it carries.
DEV_ONLY_LIBRARIES = ("libcpp-httplib.so*", "libtomlplusplus.so*")


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _find_or_build_wheel() -> Path:
    explicit = os.environ.get("HEIDI_WHEEL")
    if explicit:
        return Path(explicit)
    built = sorted((ROOT / "dist").glob(f"heidi_engine-*-{PY_TAG}-*manylinux*.whl"))
    if len(built) != 1 or not (TOOLS / "auditwheel").exists():
        _run([str(ROOT / "scripts" / "build-wheel.sh")], cwd=ROOT,
             env={**os.environ, "PYTHON": sys.executable}, timeout=1200)
        built = sorted((ROOT / "dist").glob(f"heidi_engine-*-{PY_TAG}-*manylinux*.whl"))
    assert len(built) == 1, f"expected one {PY_TAG} manylinux wheel in dist/, found {built}"
    return built[0]


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _find_or_build_wheel()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel and its runtime and test dependencies."""
    env_dir = tmp_path_factory.mktemp("wheel") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--no-index", "--no-deps", str(wheel)], timeout=300)
    # The wheel is installed already: this adds only the dependencies its metadata names.
    _run([*pip, f"{wheel}[test]"], timeout=600)
    return env_dir


def _site_packages(env_dir: Path) -> Path:
    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    return site


def _hidden_dev_files_sandbox(tmp_path: Path) -> list[str]:
    """A bwrap prefix with /usr/include empty and the -dev-only libraries unreadable."""
    bwrap = shutil.which("bwrap")
    assert bwrap, "bwrap is needed to hide the build headers (scripts/setup.sh installs it)"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    cmd = [bwrap, "--dev-bind", "/", "/"]
    for include in ("/usr/include", "/usr/local/include"):
        if Path(include).is_dir():
            cmd += ["--tmpfs", include]
    for libdir in ("/usr/lib", f"/usr/lib/{platform.machine()}-linux-gnu", "/usr/local/lib"):
        for pattern in DEV_ONLY_LIBRARIES:
            for lib in Path(libdir).glob(pattern):
                cmd += ["--ro-bind", str(empty), str(lib.resolve())]
    return cmd


def test_auditwheel_reports_a_manylinux_tag(wheel):
    platform_tag = rf"-{PY_TAG}-{PY_TAG}-manylinux_2_\d+_{platform.machine()}\.whl$"
    assert re.search(platform_tag, wheel.name), wheel.name
    shown = _run([str(TOOLS / "auditwheel"), "show", str(wheel)]).stdout
    flat = " ".join(shown.split())
    tag = re.search(r'consistent with the following platform tag: "(manylinux_2_\d+_\w+)"', flat)
    assert tag, shown
    assert tag.group(1) in wheel.name
    # Every library outside the policy was copied in: none is left for the system to provide.
    assert "external shared libraries are required" not in flat, shown


def test_installed_binaries_load_only_policy_and_bundled_libraries(wheel, installed):
    site = _site_packages(installed)
    (module,) = site.glob("heidi_cpp*.so")
    heidid = site / "heidi_engine.scripts" / "heidid"
    assert heidid.is_file() and os.access(heidid, os.X_OK)
    tag = re.search(r"(manylinux_2_\d+)_", wheel.name).group(1)
    policies = json.loads(next(TOOLS.parent.glob("lib/python3*/site-packages/auditwheel/policy/"
                                                 "manylinux-policy.json")).read_text())
    allowed = next(set(p["lib_whitelist"]) for p in policies if p["name"] == tag)
    bundled = site / "heidi_engine.libs"
    assert sorted(p.name.split("-")[0] for p in bundled.iterdir()), "no libraries were bundled"
    for binary in (module, heidid):
        for line in _run(["ldd", str(binary)]).stdout.splitlines():
            name, _, target = line.strip().partition(" => ")
            if "not found" in target:
                pytest.fail(f"{binary.name}: {line.strip()}")
            if not target or name in allowed:  # vdso, the loader, or a policy library
                continue
            path = Path(target.split(" (")[0]).resolve()
            assert path.parent == bundled, f"{binary.name} loads {name} from {path}"


def test_the_installed_stub_states_the_installed_module(installed, tmp_path):
    """The wheel carries heidi_cpp's typed stub as the stub-only package heidi_cpp-stubs,
    where type checkers find it, and it matches the installed module (the test extra
    brings mypy)."""
    assert (_site_packages(installed) / "heidi_cpp-stubs" / "__init__.pyi").is_file()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MYPYPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    allowlist = ROOT / "tests" / "data" / "heidi_cpp_stubtest_allowlist.txt"
    _run([str(installed / "bin" / "python"), "-m", "mypy.stubtest", "heidi_cpp",
          "--allowlist", str(allowlist)], cwd=tmp_path, env=env, timeout=600)


def test_engine_tests_pass_against_the_installed_wheel(installed, tmp_path):
    python = installed / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "HEIDID", "VIRTUAL_ENV", "CPATH", "CPLUS_INCLUDE_PATH",
                        "C_INCLUDE_PATH", "LD_LIBRARY_PATH", "PYTHONHOME")}
    env["HEIDI_REQUIRE_NATIVE"] = "1"
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT)))
    sandbox = _hidden_dev_files_sandbox(tmp_path)
    if "--ro-bind" in sandbox:  # the -dev libraries are on this machine: check they are hidden
        load_system_copy = "import ctypes; ctypes.CDLL('libcpp-httplib.so')"
        probe = subprocess.run([*sandbox, str(python), "-c", load_system_copy],
                               capture_output=True, text=True, env=env)
        assert probe.returncode != 0, "the system's cpp-httplib is still loadable in the sandbox"
    report = ("import heidi_engine, heidi_cpp; from heidi_engine.server.launcher import find_heidid;"
              "print(heidi_engine.__file__, heidi_cpp.__file__, find_heidid(),"
              " heidi_engine.load().name)")
    where = _run([*sandbox, str(python), "-c", report], cwd=tmp_path, env=env).stdout.split()
    site = _site_packages(installed)
    assert Path(where[0]).is_relative_to(site) and Path(where[1]).is_relative_to(site), where
    assert where[2] == str(installed / "bin" / "heidid"), where
    assert where[3] == "native", where
    # pytest runs from a scratch directory with the repository's config; nothing under
    # python/ is importable there, so the tests import the installed package.
    result = subprocess.run(
        [*sandbox, str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-m", "not slow",
         *(str(ROOT / "tests" / name) for name in ENGINE_SUBSET)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]
    assert " skipped" not in result.stdout.splitlines()[-1], result.stdout[-3000:]
