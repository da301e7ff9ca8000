"""Shared fixtures. ``backend`` runs a test once per engine implementation.

``HEIDI_REQUIRE_NATIVE=1`` (set by CI) turns a missing native module into a failure
instead of a skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from heidi_engine import backend as backend_mod

BACKEND_IDS = ("native", "python")


def _load_backend(name: str):
    if name == "native":
        reason = backend_mod.native_import_error()
        if reason is not None:
            if os.environ.get("HEIDI_REQUIRE_NATIVE") == "1":
                pytest.fail(f"native backend required but heidi_cpp does not import: {reason}")
            pytest.skip(f"heidi_cpp not built: {reason}")
    return backend_mod.load(name)


@pytest.fixture(params=BACKEND_IDS)
def backend(request):
    """The engine implementation under test (``.name`` is ``native`` or ``python``)."""
    if request.param == "native":
        request.applymarker(pytest.mark.native)
    return _load_backend(request.param)


@pytest.fixture
def native():
    return _load_backend("native")


@pytest.fixture
def pure():
    return _load_backend("python")


@pytest.fixture
def out_dir(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def fake():
    """A local OpenAI-compatible server with faults (tests/fake_openai_server.py)."""
    # Loaded by path, as test modules are: tests/ need not be importable.
    path = Path(__file__).with_name("fake_openai_server.py")
    spec = importlib.util.spec_from_file_location("fake_openai_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.FakeOpenAIServer()
    yield server
    server.close()


@pytest.fixture
def clean_env(monkeypatch):
    """Remove every engine variable from the environment for the test."""
    prefixes = ("HEIDI_", "OUT_DIR", "PIPELINE_MODE", "RUN_UNIT_TESTS", "ROUNDS",
                "SAMPLES_PER_ROUND", "RUN_ID", "SEED", "VAL_RATIO", "BASE_MODEL",
                "TRAIN_STEPS", "LR", "LORA_R", "LORA_ALPHA", "SEQ_LEN", "BATCH_SIZE",
                "GRAD_ACCUM")
    keep = {"HEIDI_BACKEND", "HEIDI_REQUIRE_NATIVE"}
    for key in list(os.environ):
        if key.startswith(prefixes) and key not in keep:
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def unprivileged() -> list[str]:
    """A command prefix under which file modes bind: nothing for a non-root user; for root,
    setpriv dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (which bypass them)."""
    import shutil

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to drop the capabilities that bypass file modes")
    no_override = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={no_override}", f"--inh-caps={no_override}", "--"]


def missing_native(what: str) -> None:
    """Skip a test whose native part (heidid, a browser, ...) is missing, or fail it
    where ``HEIDI_REQUIRE_NATIVE=1`` (CI): there, everything native must run."""
    if os.environ.get("HEIDI_REQUIRE_NATIVE") == "1":
        pytest.fail(f"{what} required (HEIDI_REQUIRE_NATIVE=1) but not found")
    pytest.skip(f"{what} not found")


@pytest.fixture
def need_native():
    """``need_native(what)``: skip, or fail under ``HEIDI_REQUIRE_NATIVE=1``."""
    return missing_native
