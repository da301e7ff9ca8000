"""The sandbox of the test/eval stages: HumanEval verdicts and containment (SPEC §8)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from heidi_engine import sandbox
from heidi_engine.sandbox import SandboxLimits, build_program, run_many, run_program

ACTIVE_MODE = sandbox.detect_isolation()
WORKING_MODES = [m for m in sandbox.ISOLATION_MODES
                 if sandbox.ISOLATION_MODES.index(m) >= sandbox.ISOLATION_MODES.index(ACTIVE_MODE)]

# HumanEval-format tasks with their canonical solution and a broken one.
TASKS = [
    {
        "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
        "canonical": "    return a + b\n",
        "broken": "    return a - b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
        "entry_point": "add",
    },
    {
        "prompt": "from typing import List\n\n\ndef evens(xs: List[int]) -> List[int]:\n"
                  '    """Keep the even numbers, in order."""\n',
        "canonical": "    return [x for x in xs if x % 2 == 0]\n",
        "broken": "    return [x for x in xs if x % 2]\n",
        "test": "def check(candidate):\n    assert candidate([1, 2, 3, 4]) == [2, 4]\n"
                "    assert candidate([]) == []\n",
        "entry_point": "evens",
    },
    {
        "prompt": 'def first_word(s: str) -> str:\n    """The first whitespace-separated word."""\n',
        "canonical": "    return s.split()[0]\n",
        "broken": "    return s.split()[1]\n",  # raises IndexError instead of failing an assert
        "test": "def check(candidate):\n    assert candidate('hello world') == 'hello'\n"
                "    assert candidate('one') == 'one'\n",
        "entry_point": "first_word",
    },
    {
        "prompt": 'def fib(n: int) -> int:\n    """The n-th Fibonacci number."""\n',
        "canonical": "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "broken": "    return fib(n - 1) + fib(n - 2)\n",  # no base case: RecursionError
        "test": "def check(candidate):\n    assert candidate(10) == 55\n",
        "entry_point": "fib",
    },
    {
        "prompt": 'def is_pal(s: str) -> bool:\n    """Whether s reads the same backwards."""\n',
        "canonical": "    return s == s[::-1]\n",
        "broken": "    return s == s[::-1\n",  # syntax error
        "test": "def check(candidate):\n    assert candidate('abba')\n    assert not candidate('ab')\n",
        "entry_point": "is_pal",
    },
]

FAST = SandboxLimits(timeout_s=5.0)


def _unsandboxed(program: str, env: dict | None = None) -> int:
    return subprocess.run([sys.executable, "-c", program], env=env, timeout=30,
                          capture_output=True).returncode


def _live_pids_named(tag: str) -> list[int]:
    """Live (non-zombie) processes whose comm is ``tag``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
            stat_line = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if comm == tag and stat_line[stat_line.rindex(")") + 2] not in "ZX":
            found.append(int(entry.name))
    return found


def _tagged(tag: str, body: str) -> str:
    """A program that renames its process to ``tag`` (inherited by its children) first."""
    return ("import ctypes\n"
            f"ctypes.CDLL(None).prctl(15, {tag.encode()!r}, 0, 0, 0)\n" + body)


def test_build_program_follows_the_humaneval_layout():
    assert build_program("P", "C", "T", "f") == "PC\nT\ncheck(f)"


@pytest.mark.parametrize("mode", WORKING_MODES)
def test_verdicts_agree_with_the_humaneval_convention(mode):
    programs, expected = [], []
    for task in TASKS:
        for variant, ok in (("canonical", True), ("broken", False)):
            programs.append(build_program(task["prompt"], task[variant], task["test"],
                                          task["entry_point"]))
            expected.append(ok)
            # The convention itself, checked without any sandbox.
            assert (_unsandboxed(programs[-1]) == 0) is ok
    results = run_many(programs, FAST, workers=2, isolation=mode)
    assert [r.passed for r in results] == expected
    for result in results:
        assert (result.reason == "passed") is result.passed
        assert result.duration_ms >= 0


def test_failure_reasons_name_the_cause():
    assert run_program("assert 1 == 2", FAST).reason == "failed: exit code 1: AssertionError"
    assert run_program("import sys\nsys.exit(3)", FAST).reason == "failed: exit code 3"
    assert run_program("raise SystemExit(0)", FAST).passed


def test_env_secrets_of_the_host_are_invisible(monkeypatch):
    value = "sk-fake-" + secrets.token_hex(16)
    monkeypatch.setenv("HEIDI_TEST_FAKE_SECRET", value)
    probe = (
        "import os, sys\n"
        f"needle = {value!r}\n"
        "if any(needle in v for v in os.environ.values()):\n"
        "    sys.exit(1)\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/environ', 'rb') as fh:\n"
        "            if needle.encode() in fh.read():\n"
        "                sys.exit(1)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    assert _unsandboxed(probe, env=dict(os.environ)) == 1  # the probe does see a leak
    result = run_program(probe, FAST)
    assert result.passed, result.reason


def test_environment_is_minimal():
    probe = ("import os, sys\n"
             "allowed = {'PATH', 'LANG', 'LC_ALL', 'HOME', 'TMPDIR', 'PYTHONHASHSEED',\n"
             "           'PYTHONDONTWRITEBYTECODE', 'PWD', 'LC_CTYPE'}\n"
             "sys.exit(0 if set(os.environ) <= allowed and os.getcwd() == os.environ['HOME'] else 1)\n")
    assert run_program(probe, FAST).passed


@pytest.mark.skipif(ACTIVE_MODE == "rlimits", reason="no network namespace available here")
def test_network_is_unreachable():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        probe = ("import socket, sys\n"
                 "try:\n"
                 f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
                 "except OSError:\n"
                 "    sys.exit(0)\n"
                 "sys.exit(1)\n")
        assert _unsandboxed(probe) == 1  # the listener is reachable from outside
        server.accept()[0].close()
        result = run_program(probe, FAST)
        assert result.passed, result.reason
        with pytest.raises(TimeoutError):
            server.accept()


def test_fork_bomb_is_contained_and_nothing_survives():
    tag = "hb" + secrets.token_hex(6)
    limits = SandboxLimits(timeout_s=3.0, max_processes=16)
    bomb = _tagged(tag, "import os\nwhile True:\n    try:\n        os.fork()\n"
                        "    except OSError:\n        pass\n")
    peak = 0
    done = threading.Event()

    def watch():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(_live_pids_named(tag)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_program(bomb, limits)
    finally:
        done.set()
        watcher.join()
    assert not result.passed
    assert result.reason.startswith("timed out")
    assert result.duration_ms < 3000 + 5000
    assert 0 < peak <= limits.max_processes + 2
    assert _live_pids_named(tag) == []


def test_huge_allocation_fails_quickly():
    result = run_program("x = bytearray(10 * 1024 ** 3)\nprint(len(x))\n",
                         SandboxLimits(timeout_s=10.0, memory_mb=512))
    assert not result.passed
    assert result.reason == "failed: memory limit"
    assert result.duration_ms < 5000


def test_infinite_loop_times_out_and_is_killed():
    tag = "hl" + secrets.token_hex(6)
    started = time.monotonic()
    result = run_program(_tagged(tag, "while True:\n    pass\n"), SandboxLimits(timeout_s=1.5))
    elapsed = time.monotonic() - started
    assert not result.passed
    assert result.reason == "timed out after 1.5 s"
    assert 1.5 <= elapsed < 6
    assert _live_pids_named(tag) == []


def test_background_children_do_not_outlive_a_passing_run():
    tag = "hd" + secrets.token_hex(6)
    daemon = _tagged(tag, "import os, time\n"
                          "if os.fork() == 0:\n"
                          "    os.setsid()\n"
                          "    if os.fork() == 0:\n"
                          "        time.sleep(60)\n"
                          "    os._exit(0)\n"
                          "time.sleep(0.3)\n")
    result = run_program(daemon, FAST)
    assert result.passed, result.reason
    time.sleep(0.2)
    assert _live_pids_named(tag) == []


@pytest.mark.skipif(ACTIVE_MODE != "bubblewrap", reason="filesystem isolation needs bubblewrap")
def test_writes_outside_the_work_dir_do_not_reach_the_host(tmp_path):
    marker = secrets.token_hex(8)
    targets = [tmp_path / f"escape-{marker}", Path.home() / f"heidi-escape-{marker}",
               Path("/tmp") / f"heidi-escape-{marker}"]
    probe = ("import os, sys\n"
             "with open('inside.txt', 'w') as fh:\n"  # its own directory is writable
             "    fh.write('ok')\n"
             f"for path in {[str(t) for t in targets]!r}:\n"
             "    try:\n"
             "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
             "        with open(path, 'w') as fh:\n"
             "            fh.write('escaped')\n"
             "    except OSError:\n"
             "        pass\n")
    result = run_program(probe, FAST)
    assert result.passed, result.reason
    for target in targets:
        assert not target.exists(), target


def test_run_many_keeps_order_and_reports_progress():
    programs = [f"import sys\nsys.exit({i % 3})" for i in range(9)]
    seen = []
    results = run_many(programs, FAST, workers=3, on_result=lambda i, r: seen.append(i))
    assert [r.passed for r in results] == [i % 3 == 0 for i in range(9)]
    assert sorted(seen) == list(range(9))


def test_describe_names_the_active_isolation():
    info = sandbox.describe()
    assert info["isolation"] == ACTIVE_MODE
    assert info["isolation"] in sandbox.ISOLATION_MODES
    assert os.path.exists(info["python"])


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="isolation"):
        run_program("pass", FAST, isolation="chroot")
