"""Run untrusted test programs: the sandbox of the test and eval stages (SPEC §8).

Each run gets a fresh temporary directory as its working directory and home, its own
session/process group, rlimits (CPU, address space, processes, file size, open files),
a minimal environment (nothing from the host's), and a wall-clock timeout after which
the whole group is killed. On top of that, the strongest isolation the OS allows:

- ``bubblewrap``: ``bwrap --unshare-all`` (user, pid, net, ipc, uts, cgroup
  namespaces), a read-only view of ``/``, a private tmpfs on ``/tmp`` with the work
  directory bound into it, a private ``/proc``. No network (only an unconfigured
  loopback); the pid namespace dies with the run, so nothing it started survives.
- ``namespaces``: ``unshare`` user + net + pid (+ mount for ``/proc``) namespaces.
- ``rlimits``: rlimits, the process group and the minimal environment only.

When the engine runs as root, each concurrent run uses its own unprivileged uid
(``SANDBOX_UID_BASE + slot``): root ignores ``RLIMIT_NPROC``, so a fork bomb is only
contained under a non-root uid, and a uid per slot keeps one run's processes from
counting against another's. After every run any process left with that uid is killed.

The verdict follows the HumanEval convention: a program passes iff it exits 0 within
the timeout.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ISOLATION_MODES = ("bubblewrap", "namespaces", "rlimits")
# Unassigned uids for runs started as root; one per concurrent slot.
SANDBOX_UID_BASE = 2_100_000_000
MAX_SLOTS = 256
PROGRAM_NAME = "program.py"
# Where the work directory appears inside a bubblewrap sandbox (under its private /tmp).
BWRAP_WORK_DIR = "/tmp/work"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
STDERR_TAIL_BYTES = 4096

# Runs inside the sandboxed interpreter: apply the rlimits (soft = hard, so the program
# cannot raise them), then execute the program as __main__ in a fresh namespace. Doing
# this in-process instead of exec'ing a second interpreter halves the start-up cost.
_BOOTSTRAP = """\
import resource, sys
_l = [int(v) for v in sys.argv[1:6]]
for _r, _v in zip((resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_NPROC,
                   resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE), _l):
    resource.setrlimit(_r, (_v, _v))
_p = sys.argv[6]
sys.argv = sys.argv[6:]
with open(_p, encoding="utf-8") as _f:
    _c = compile(_f.read(), _p, "exec")
del _l, _r, _v, _f, resource
exec(_c, {"__name__": "__main__", "__file__": _p, "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 32
    max_file_mb: int = 16
    max_open_files: int = 64
    # Size of the private /tmp of a bubblewrap sandbox.
    tmpfs_mb: int = 64

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        for name in ("memory_mb", "max_processes", "max_file_mb", "max_open_files", "tmpfs_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    reason: str
    duration_ms: int

    def as_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "duration_ms": self.duration_ms}


def build_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The program a test runs (SPEC §8, the HumanEval convention)."""
    return prompt + completion + "\n" + test + "\n" + "check(" + entry_point + ")"


# ---------------------------------------------------------------------------------------
# Environment detection


def _world_accessible(path: str) -> bool:
    """True if a user with no relation to the file's owner can run it (every parent
    directory searchable by others, the file executable by others)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        for parent in real.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def _running_as_root() -> bool:
    return os.geteuid() == 0


@functools.lru_cache(maxsize=1)
def sandbox_python() -> str:
    """The interpreter programs run with: ours, unless it is unreachable for the
    unprivileged sandbox uid (e.g. installed under /root), then a system python3."""
    import sys

    candidates = [sys.executable]
    if _running_as_root():
        candidates = [c for c in candidates if _world_accessible(c)]
        candidates += [p for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                       if os.path.exists(p) and _world_accessible(p)]
    if not candidates:
        raise RuntimeError("no Python interpreter reachable by the sandbox user "
                           "(install python3 under /usr/bin or run as a non-root user)")
    return candidates[0]


def _probe(argv: list[str], slot_uid: int | None) -> bool:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10, env={"PATH": SAFE_PATH},
                              cwd="/", **_credentials(slot_uid))
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _credentials(uid: int | None) -> dict:
    if uid is None:
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}


@functools.lru_cache(maxsize=1)
def _bwrap_supports_size() -> bool:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout


@functools.lru_cache(maxsize=1)
def detect_isolation() -> str:
    """The strongest isolation that works here (probed once per process)."""
    probe_uid = SANDBOX_UID_BASE if _running_as_root() else None
    python = sandbox_python()
    with tempfile.TemporaryDirectory(prefix="heidi-sbx-probe-") as work:
        if probe_uid is not None:
            os.chown(work, probe_uid, probe_uid)
        Path(work, PROGRAM_NAME).write_text("pass\n")
        if shutil.which("bwrap") and _probe(
            _bwrap_argv(work, SandboxLimits()) + [python, "-I", "-S", "-c", "pass"], probe_uid
        ):
            return "bubblewrap"
        if shutil.which("unshare") and _probe(
            _unshare_argv() + [python, "-I", "-S", "-c", "pass"], probe_uid
        ):
            return "namespaces"
    return "rlimits"


def describe() -> dict:
    """What isolation is active (for ``heidi doctor``)."""
    mode = detect_isolation()
    return {
        "isolation": mode,
        "network_isolated": mode in ("bubblewrap", "namespaces"),
        "pid_namespace": mode in ("bubblewrap", "namespaces"),
        "filesystem": "read-only root, private /tmp" if mode == "bubblewrap" else "host (file permissions)",
        "unprivileged_uid": _running_as_root() or mode != "rlimits",
        "process_limit_enforced": _running_as_root() or mode != "rlimits",
        "python": sandbox_python(),
        "bwrap": shutil.which("bwrap"),
        "unshare": shutil.which("unshare"),
    }


# ---------------------------------------------------------------------------------------
# Running


def _bwrap_argv(work_dir: str, limits: SandboxLimits) -> list[str]:
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user",
            "--disable-userns", "--die-with-parent", "--new-session",
            "--ro-bind", "/", "/"]
    if _bwrap_supports_size():
        argv += ["--size", str(limits.tmpfs_mb << 20)]
    argv += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
             "--bind", work_dir, BWRAP_WORK_DIR, "--chdir", BWRAP_WORK_DIR]
    return argv


def _unshare_argv() -> list[str]:
    return [shutil.which("unshare") or "unshare", "--user", "--map-root-user", "--net",
            "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]


def _minimal_env(home: str) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": home,
            "TMPDIR": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


class _SlotPool:
    """Hands out slot numbers so concurrent runs never share a sandbox uid.

    A slot is held by an exclusive ``flock`` on its own lock file, so the guarantee
    covers every engine process on the machine (two stage processes, a test run), and
    a crashed holder releases its slot with its file descriptors.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._next = 0
        self._next_lock = threading.Lock()

    @functools.cached_property
    def _lock_dir(self) -> Path:
        directory = Path(tempfile.gettempdir()) / f"heidi-sandbox-slots-{os.geteuid()}"
        directory.mkdir(mode=0o700, exist_ok=True)
        return directory

    def acquire(self) -> tuple[int, int]:
        """Block until a slot is free; returns (slot, lock fd)."""
        with self._next_lock:
            first = self._next
            self._next = (self._next + 1) % self._size
        while True:
            for offset in range(self._size):
                slot = (first + offset) % self._size
                fd = os.open(self._lock_dir / f"slot-{slot}.lock",
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return slot, fd
            time.sleep(0.05)

    @staticmethod
    def release(lock_fd: int) -> None:
        os.close(lock_fd)


_slots = _SlotPool(MAX_SLOTS)


def _is_zombie(proc_dir: str) -> bool:
    """A zombie runs nothing; it waits for its (possibly lazy) parent to reap it."""
    with open(f"{proc_dir}/stat", "rb") as fh:
        stat_line = fh.read()
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat_line[stat_line.rindex(b")") + 2:][:1] in (b"Z", b"X")


def _kill_uid_processes(uid: int) -> None:
    """SIGKILL every live process owned by ``uid`` until none is left (root only)."""
    for _ in range(50):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid or _is_zombie(entry.path):
                    continue
                os.kill(int(entry.name), signal.SIGKILL)
                found = True
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        if not found:
            return
        time.sleep(0.01)


def _describe_failure(returncode: int, stderr_tail: bytes) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"failed: killed by {name}"
    lines = [ln.strip() for ln in stderr_tail.decode("utf-8", "replace").splitlines() if ln.strip()]
    last = lines[-1][:200] if lines else ""
    if last.startswith("MemoryError"):
        return "failed: memory limit"
    return f"failed: exit code {returncode}" + (f": {last}" if last else "")


def run_program(program: str, limits: SandboxLimits | None = None, *,
                isolation: str | None = None) -> SandboxResult:
    """Run one Python program in the sandbox and return its verdict."""
    limits = limits or SandboxLimits()
    mode = isolation or detect_isolation()
    if mode not in ISOLATION_MODES:
        raise ValueError(f"invalid isolation {mode!r} (valid: {', '.join(ISOLATION_MODES)})")
    slot, lock_fd = _slots.acquire()
    try:
        return _run_in_slot(program, limits, mode, slot)
    finally:
        _slots.release(lock_fd)


def _run_in_slot(program: str, limits: SandboxLimits, mode: str, slot: int) -> SandboxResult:
    uid = SANDBOX_UID_BASE + slot if _running_as_root() else None
    work = tempfile.mkdtemp(prefix="heidi-sbx-")
    try:
        Path(work, PROGRAM_NAME).write_text(program, encoding="utf-8")
        if uid is not None:
            # A holder of this slot that crashed may have left processes behind.
            _kill_uid_processes(uid)
            os.chown(work, uid, uid)
        inner_work = BWRAP_WORK_DIR if mode == "bubblewrap" else work
        cpu_s = int(limits.timeout_s) + 1
        limit_args = [str(cpu_s), str(limits.memory_mb << 20), str(limits.max_processes),
                      str(limits.max_file_mb << 20), str(limits.max_open_files)]
        command = [sandbox_python(), "-I", "-S", "-c", _BOOTSTRAP, *limit_args, PROGRAM_NAME]
        if mode == "bubblewrap":
            command = _bwrap_argv(work, limits) + command
        elif mode == "namespaces":
            command = _unshare_argv() + command
        with tempfile.TemporaryFile() as stderr_file:
            started = time.monotonic()
            try:
                proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=stderr_file, cwd=work, env=_minimal_env(inner_work),
                    start_new_session=True, close_fds=True, **_credentials(uid))
            except OSError as exc:
                return SandboxResult(False, f"failed: spawn error: {exc.strerror or exc}", 0)
            timed_out = False
            try:
                returncode = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            # Whatever happened, nothing the program started may outlive the run.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if timed_out:
                returncode = proc.wait()
            if uid is not None:
                _kill_uid_processes(uid)
            duration_ms = int((time.monotonic() - started) * 1000)
            if timed_out:
                return SandboxResult(False, f"timed out after {limits.timeout_s!r} s", duration_ms)
            if returncode == 0:
                return SandboxResult(True, "passed", duration_ms)
            size = stderr_file.seek(0, os.SEEK_END)
            stderr_file.seek(max(0, size - STDERR_TAIL_BYTES))
            return SandboxResult(False, _describe_failure(returncode, stderr_file.read()),
                                 duration_ms)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_many(programs: Sequence[str], limits: SandboxLimits | None = None, workers: int = 0,
             *, isolation: str | None = None,
             on_result: Callable[[int, SandboxResult], None] | None = None) -> list[SandboxResult]:
    """Run programs in parallel on at most ``workers`` workers (0 = number of cores).

    Results come back in input order. ``on_result(index, result)`` is called as each
    run finishes (from a worker thread, serialised by a lock) for live progress.
    """
    limits = limits or SandboxLimits()
    mode = isolation or detect_isolation()
    workers = min(workers or default_workers(), MAX_SLOTS, max(len(programs), 1))
    lock = threading.Lock()

    def one(index: int) -> SandboxResult:
        result = run_program(programs[index], limits, isolation=mode)
        if on_result is not None:
            with lock:
                on_result(index, result)
        return result

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heidi-sandbox") as pool:
        return list(pool.map(one, range(len(programs))))
