"""StatusWriter: the JSON encoding of state files and atomic replacement."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# Values whose encoding is easy to get wrong: floats (repr rules), big ints, non-str keys,
# escapes, non-ASCII (incl. above U+FFFF), DEL, '/'.
TRICKY = {
    "schema": "heidi.run_state/1",
    "floats": [0.1, 1.0, -0.0, 1e16, 1e15, 1e-05, 0.0001, 1.5e300, 5e-324,
               1.7976931348623157e308, 123456789.125, 2.5e-07],
    "special": [float("nan"), float("inf"), float("-inf")],
    "ints": [0, -1, 2**63 - 1, -(2**63), 2**64, -(10**30)],
    "text": "quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f nul \x00 us \x1f del \x7f",
    "unicode": "é ü 中文 \u2028 \U0001F600 \U0010FFFF \ufffd",
    "nested": {"a": [True, False, None, {"b": []}], "": {}},
    7: "int key",
    2.5: "float key",
    True: "bool key",
    None: "none key",
}


def reference(mapping) -> bytes:
    return (json.dumps(mapping, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def test_golden_state_file(backend, tmp_path):
    golden = (DATA / "status_golden.json").read_bytes()
    assert reference(TRICKY) == golden  # the golden file is json.dumps' output
    path = tmp_path / "state" / "run_state.json"
    backend.StatusWriter(path).write(TRICKY)
    assert path.read_bytes() == golden
    assert os.listdir(path.parent) == ["run_state.json"]


def test_lone_surrogate_and_tuple(backend, tmp_path):
    value = {"s": "a\ud800b\udc00", "t": (1, "x")}
    path = tmp_path / "s.json"
    backend.StatusWriter(str(path)).write(value)
    assert path.read_bytes() == reference(value)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ({"a": {1, 2}}, TypeError, "Object of type set is not JSON serializable"),
        ({(1, 2): 1}, TypeError, "keys must be str, int, float, bool or None, not tuple"),
    ],
)
def test_unserialisable_values_write_nothing(backend, tmp_path, value, error, message):
    path = tmp_path / "s.json"
    backend.StatusWriter(path).write({"ok": 1})
    with pytest.raises(error) as info:
        backend.StatusWriter(path).write(value)
    assert str(info.value) == message
    assert path.read_bytes() == b'{"ok":1}\n'
    assert os.listdir(tmp_path) == ["s.json"]


def test_replaces_existing_file(backend, tmp_path):
    path = tmp_path / "run_state.json"
    writer = backend.StatusWriter(path)
    for i in range(5):
        writer.write({"i": i})
    assert json.loads(path.read_text()) == {"i": 4}
    assert os.listdir(tmp_path) == ["run_state.json"]


def test_missing_directory_is_created_and_bad_parent_reports_oserror(backend, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        backend.StatusWriter(tmp_path / "file" / "state.json").write({})


def _payload(i: int) -> dict:
    # Alternate large and small payloads so a torn read would show as bad JSON.
    return {"i": i, "pad": "x" * (200_000 if i % 2 else 10)}


def _write_many(backend_name: str, path: str, count: int) -> None:
    from heidi_engine import backend as backend_mod

    writer = backend_mod.load(backend_name).StatusWriter(path)
    for i in range(count):
        writer.write(_payload(i))


@pytest.mark.slow
def test_reader_never_sees_partial_file(backend, tmp_path):
    path = tmp_path / "run_state.json"
    writes = 2000
    backend.StatusWriter(path).write(_payload(0))
    stop = threading.Event()
    reads = []
    failures = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                failures.append("missing")
                continue
            try:
                value = json.loads(data)
                assert data.endswith(b"\n")
                assert value == _payload(value["i"])
            except (ValueError, AssertionError, KeyError) as exc:
                failures.append(repr(exc)[:80])
            reads.append(1)

    # A thread reader in this process and the writer in another process (real concurrency).
    thread = threading.Thread(target=reader)
    thread.start()
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_write_many, args=(backend.name, str(path), writes))
    writer.start()
    writer.join(timeout=240)
    stop.set()
    thread.join()
    assert writer.exitcode == 0
    assert failures == []
    assert len(reads) > 100
    assert sorted(os.listdir(tmp_path)) == ["run_state.json"]


def test_temp_names_are_unique_across_threads(backend, tmp_path):
    path = tmp_path / "run_state.json"
    writer = backend.StatusWriter(path)
    errors = []

    def write(n: int) -> None:
        try:
            for i in range(200):
                writer.write({"thread": n, "i": i})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads(path.read_text())["i"] == 199
    assert os.listdir(tmp_path) == ["run_state.json"]
