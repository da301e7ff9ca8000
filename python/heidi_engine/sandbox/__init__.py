"""Run untrusted test programs: the sandbox of the test and eval stages (SPEC §8).

Verdicts no program can forge
    A program is a HumanEval-format task answer: ``prompt``, ``completion``, ``test``
    and ``entry_point``. The untrusted part (``prompt + completion``) runs in a
    *candidate* process; the task's ``prompt`` and ``test`` run in a separate *judge*
    process that calls ``check(proxy)``, each call of ``proxy`` forwarded to the
    candidate as data (:mod:`heidi_engine.sandbox.supervisor`). The answer passes only
    when ``check`` returned in the judge; the candidate holds no channel to the verdict
    and cannot ptrace or read the judge, so no exit code, output, signal or hook of its
    own can make it pass.

Isolation levels (``HEIDI_SANDBOX``)
    ``bubblewrap``
        A long-lived ``bwrap`` per worker slot: new user, pid, network, ipc, uts and
        cgroup namespaces (no network at all), no capabilities, a cleared environment,
        and a filesystem of its own: read-only ``/usr``, ``/bin``, ``/sbin``, ``/lib*``,
        the interpreter's prefix and two files of ``/etc``; private ``/dev``,
        ``/proc``; size-capped tmpfs ``/tmp`` (the work directory and HOME) and
        ``/dev/shm``. Nothing of ``/home``, ``/root``, ``/var``, ``/run``, the host's
        ``/tmp``, the run directory or the checkout exists inside.
    ``rlimits-unsafe``
        The same judge/candidate verdicts and rlimits, but the program sees the host
        filesystem and network with the permissions of the user (or, as root, of an
        unprivileged uid per slot). Only used when named.
    ``auto`` (default)
        ``bubblewrap`` when it works here (probed by running a program in it), else
        :class:`SandboxUnavailable`: the test and eval stages refuse to run.

Speed
    Each worker slot keeps one sandbox and one pre-initialised supervisor for its whole
    life; per program the supervisor only forks the judge and the candidate, then
    kills every other process it can reach and wipes its scratch directories. Setting
    up the isolation is paid once per worker, not once per program.

As root, each slot's sandbox runs under its own unprivileged uid
(``SANDBOX_UID_BASE + slot``): root ignores ``RLIMIT_NPROC``, so a fork bomb is only
contained under a non-root uid. Slots are held with ``flock`` on lock files in a
directory private to the user, so concurrent engine processes never share one.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import queue
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .._py.config import Config
from ..errors import HeidiError
from ..process import pid_alive
from . import supervisor as _supervisor

LEVELS = Config.choices("sandbox")
ENFORCED_LEVELS = ("bubblewrap", "rlimits-unsafe")
# Unassigned uids for runs started as root; one per concurrent slot. (Not the range of
# earlier versions, whose slot locks lived elsewhere: the two never share a uid.)
SANDBOX_UID_BASE = 2_101_000_000
MAX_SLOTS = 256
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Inside a bubblewrap sandbox: the per-program work directory (also HOME and TMPDIR).
BWRAP_WORK_DIR = "/tmp/work"
# Read-only system directories a Python interpreter needs (symlinks are recreated).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
# Extra seconds the host waits for a verdict beyond the program's own timeout before it
# kills the whole worker (the supervisor enforces the timeout itself).
HOST_GRACE_S = 2.0
WORKER_START_TIMEOUT_S = 30.0
INSTALL_HINT = ("install bubblewrap (apt-get install bubblewrap) and allow unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
                "kernel.apparmor_restrict_unprivileged_userns=0), or set "
                "HEIDI_SANDBOX=rlimits-unsafe to run untrusted code with no isolation")


class SandboxUnavailable(HeidiError, RuntimeError):
    """No sandbox level that hides the host's filesystem and network works here."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed program (and of its worker's tmpfs)."""

    timeout_s: float = Config.sandbox_timeout_s
    memory_mb: int = Config.sandbox_memory_mb
    max_processes: int = 32
    max_file_mb: int = 16
    max_open_files: int = 64
    # Size of each private tmpfs of a bubblewrap sandbox (/tmp, /dev/shm).
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


class Program(str):
    """A HumanEval-format program: its text is the HumanEval layout
    (``prompt + completion + "\\n" + test + "\\n" + "check(entry_point)"``), and it keeps
    its parts, which the sandbox runs apart (untrusted candidate, trusted judge)."""

    prompt: str
    completion: str
    test: str
    entry_point: str

    def __new__(cls, prompt: str, completion: str, test: str, entry_point: str) -> Program:
        self = super().__new__(cls, prompt + completion + "\n" + test + "\n"
                               + "check(" + entry_point + ")")
        self.prompt, self.completion, self.test, self.entry_point = (
            prompt, completion, test, entry_point)
        return self

    def request(self) -> dict:
        return {"prompt": self.prompt, "completion": self.completion, "test": self.test,
                "entry_point": self.entry_point}


def build_program(prompt: str, completion: str, test: str, entry_point: str) -> Program:
    """The program a test runs (SPEC §8, the HumanEval convention)."""
    return Program(prompt, completion, test, entry_point)


# ---------------------------------------------------------------------------------------
# Environment


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _world_accessible(path: str) -> bool:
    """True if a user with no relation to the file's owner can run it."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)
    except OSError:
        return False


def _base_interpreter() -> str | None:
    """The base interpreter of the running one (never a virtualenv's)."""
    real = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if real.startswith(prefix + os.sep) and os.path.isfile(real):
        return real
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.join(prefix, "bin", version), os.path.join(prefix, "bin", "python3")):
        if os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


@functools.lru_cache(maxsize=1)
def sandbox_python() -> tuple[str, str]:
    """(interpreter, prefix to bind read-only) that programs run with: the base
    interpreter of this one, unless an unprivileged sandbox uid cannot reach it (e.g.
    under ``/root``), then the system ``python3``."""
    candidates = []
    base = _base_interpreter()
    if base is not None and (not _running_as_root() or _world_accessible(base)):
        candidates.append((base, os.path.realpath(sys.base_prefix)))
    for path in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.isfile(path) and (not _running_as_root() or _world_accessible(path)):
            real = os.path.realpath(path)
            candidates.append((real, os.path.dirname(os.path.dirname(real))))
    if not candidates:
        raise SandboxUnavailable("no Python interpreter the sandbox can run (install python3 "
                                 "under /usr/bin or run as a non-root user)")
    return candidates[0]


def _system_binds() -> list[str]:
    argv: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    _, prefix = sandbox_python()
    covered = [p for p in SYSTEM_DIRS if os.path.isdir(p) and not os.path.islink(p)]
    if not any(prefix == p or prefix.startswith(p + os.sep) for p in covered):
        argv += ["--ro-bind", prefix, prefix]
    for path in ETC_FILES:
        argv += ["--ro-bind-try", path, path]
    return argv


def _bwrap_argv(limits: SandboxLimits) -> list[str]:
    env = _sandbox_env(BWRAP_WORK_DIR)
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user",
            "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    size = str(limits.tmpfs_mb << 20)
    argv += _system_binds()
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm",
             "--size", size, "--tmpfs", "/tmp",
             # The root bwrap builds is an uncapped tmpfs: make it (not /tmp, /dev/shm) read-only.
             "--remount-ro", "/", "--chdir", "/tmp"]
    return argv


def _sandbox_env(home: str) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": home,
            "TMPDIR": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _credentials(uid: int | None) -> dict:
    if uid is None:
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}


# ---------------------------------------------------------------------------------------
# Private state: slot locks and (rlimits-unsafe only) host work directories


def _verify_private_dir(path: str) -> int:
    """Open ``path`` as a directory that only we control (ours, mode 0700, not a
    symlink); returns its fd. Raises SandboxUnavailable naming the problem."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxUnavailable(f"{path}: cannot open the sandbox state directory "
                                 f"({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        os.close(fd)
        raise SandboxUnavailable(f"{path}: sandbox state directory is not private "
                                 f"(owner uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}; "
                                 f"expected uid {os.geteuid()}, mode 0o700)")
    return fd


def private_dir_candidates() -> list[str]:
    found = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        found.append(os.path.join(runtime, "heidi-sandbox"))
    cache = os.environ.get("XDG_CACHE_HOME", "")
    home = os.path.expanduser("~")
    if os.path.isabs(cache):
        found.append(os.path.join(cache, "heidi", "sandbox"))
    elif os.path.isabs(home):
        found.append(os.path.join(home, ".cache", "heidi", "sandbox"))
    return found


@functools.lru_cache(maxsize=1)
def private_dir() -> tuple[str, int]:
    """(path, fd) of the user's private sandbox directory (created 0700, verified)."""
    errors = []
    for path in private_dir_candidates():
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            return path, _verify_private_dir(path)
        except SandboxUnavailable as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
    raise SandboxUnavailable("no private directory for sandbox slot locks: "
                             + ("; ".join(errors) or "set HOME or XDG_RUNTIME_DIR"))


class _SlotPool:
    """Hands out slot numbers so concurrent workers never share a sandbox uid.

    A slot is held by an exclusive ``flock`` on its own lock file in the private
    directory (opened without following symlinks), so the guarantee covers every engine
    process of the user, and a crashed holder releases its slot with its descriptors.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._next = 0
        self._next_lock = threading.Lock()

    def acquire(self) -> tuple[int, int]:
        """Block until a slot is free; returns (slot, lock fd)."""
        _, dir_fd = private_dir()
        with self._next_lock:
            first = self._next
            self._next = (self._next + 1) % self._size
        while True:
            for offset in range(self._size):
                slot = (first + offset) % self._size
                fd = os.open(f"slot-{slot}.lock",
                             os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dir_fd)
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

WORK_PREFIX = "heidi-sbx-"


def clean_stale_work_dirs(root: str | None = None) -> list[str]:
    """Remove ``heidi-sbx-<euid>-<pid>-*`` work directories whose process is gone (a
    crashed run of ``rlimits-unsafe``); returns what was removed."""
    root = root or tempfile.gettempdir()
    removed = []
    mine = f"{WORK_PREFIX}{os.geteuid()}-"
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(mine):
            continue
        pid = entry.name[len(mine):].split("-", 1)[0]
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        slot_uid = _running_as_root() and 0 <= info.st_uid - SANDBOX_UID_BASE < MAX_SLOTS
        if not (stat.S_ISDIR(info.st_mode) and (info.st_uid == os.geteuid() or slot_uid)):
            continue
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _is_zombie(proc_dir: str) -> bool:
    with open(f"{proc_dir}/stat", "rb") as fh:
        stat_line = fh.read()
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


# ---------------------------------------------------------------------------------------
# Workers


class WorkerError(SandboxUnavailable):
    """A sandbox worker could not be started."""


class _Worker:
    """One sandbox with a warm supervisor, bound to a slot; not thread-safe."""

    def __init__(self, level: str, limits: SandboxLimits, slot: int) -> None:
        self.level, self.limits, self.slot = level, limits, slot
        self.uid = SANDBOX_UID_BASE + slot if _running_as_root() else None
        self.proc: subprocess.Popen | None = None
        self.work_dir: str | None = None
        self._start()

    def _start(self) -> None:
        if self.uid is not None:
            _kill_uid_processes(self.uid)  # left by a crashed holder of this slot
        requests_r, requests_w = os.pipe()
        verdicts_r, verdicts_w = os.pipe()
        python, _ = sandbox_python()
        config = {"requests_fd": requests_r, "verdicts_fd": verdicts_w,
                  "limits": asdict(self.limits)}
        if self.level == "bubblewrap":
            config.update(work=BWRAP_WORK_DIR, scratch=["/tmp", "/dev/shm"], kill_all=True)
            prefix, cwd, env = _bwrap_argv(self.limits), "/", {"PATH": SAFE_PATH}
        else:
            self.work_dir = tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.geteuid()}-{os.getpid()}-")
            if self.uid is not None:
                os.chown(self.work_dir, self.uid, self.uid)
            work = os.path.join(self.work_dir, "work")
            config.update(work=work, scratch=[self.work_dir], kill_all=self.uid is not None,
                          die_with_parent=True)
            prefix, cwd, env = [], self.work_dir, _sandbox_env(work)
        argv = prefix + [python, "-I", "-S", "-c", _supervisor_source(), json.dumps(config)]
        # stderr is a pipe read only until the supervisor is ready, then closed: bwrap's
        # pid 1 (inside, reachable through /proc/1/fd) keeps its end, which then leads nowhere.
        stderr_r, stderr_w = os.pipe()
        self._stderr = stderr_r
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_w,
                pass_fds=(requests_r, verdicts_w), cwd=cwd, env=env, start_new_session=True,
                **_credentials(self.uid))
        except OSError as exc:
            for fd in (requests_w, verdicts_r, stderr_r):
                os.close(fd)
            raise WorkerError(f"cannot start the sandbox: {exc.strerror or exc}") from None
        finally:
            for fd in (requests_r, verdicts_w, stderr_w):
                os.close(fd)
        self.requests, self.verdicts = requests_w, verdicts_r
        os.set_blocking(self.verdicts, False)
        os.set_blocking(self.requests, False)
        ready = self._receive(WORKER_START_TIMEOUT_S) == {"ready": True}
        message = "" if ready else self._diagnostics()
        os.close(self._stderr)
        self._stderr = None
        if not ready:
            self.close()
            raise WorkerError(f"the sandbox did not start: {message}")

    def _diagnostics(self) -> str:
        os.set_blocking(self._stderr, False)
        try:
            data = os.read(self._stderr, 1 << 16)
        except OSError:
            data = b""
        lines = data.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def _receive(self, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        buffer = b""
        need = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.verdicts], [], [], left)[0]:
                return None
            try:
                chunk = os.read(self.verdicts, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            buffer += chunk
            if need is None and len(buffer) >= 4:
                need = 4 + int.from_bytes(buffer[:4], "big")
            if need is not None and len(buffer) >= need:
                try:
                    return json.loads(buffer[4:need])
                except ValueError:
                    return None

    def _send(self, data: bytes, deadline: float) -> bool:
        """Write a request without blocking past ``deadline`` (a stopped supervisor
        never drains the pipe)."""
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [self.requests], [], left)[1]:
                return False
            try:
                view = view[os.write(self.requests, view):]
            except BlockingIOError:
                continue
            except OSError:
                return False
        return True

    def run(self, program: Program) -> SandboxResult:
        if self.proc is None:
            self._start()
        started = time.monotonic()
        deadline = started + self.limits.timeout_s + HOST_GRACE_S
        try:
            request = _supervisor.frame(program.request())
        except ValueError:
            return SandboxResult(False, "failed: program too large", 0)
        if self._send(request, deadline):
            verdict = self._receive(deadline - time.monotonic())
        else:
            verdict = None
        duration_ms = int((time.monotonic() - started) * 1000)
        if not (isinstance(verdict, dict) and type(verdict.get("passed")) is bool
                and isinstance(verdict.get("reason"), str)):
            # The supervisor died or hung: nothing of this worker is trusted any more.
            timed_out = time.monotonic() - started >= self.limits.timeout_s
            self.close()
            reason = (f"timed out after {self.limits.timeout_s!r} s" if timed_out
                      else "failed: the sandbox worker died")
            return SandboxResult(False, reason, duration_ms)
        if verdict["reason"] == "timeout":
            return SandboxResult(False, f"timed out after {self.limits.timeout_s!r} s", duration_ms)
        return SandboxResult(verdict["passed"] and verdict["reason"] == "passed",
                             verdict["reason"], duration_ms)

    def close(self) -> None:
        if self.proc is not None:
            for fd in (self.requests, self.verdicts):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        if self.uid is not None:
            _kill_uid_processes(self.uid)
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None


@functools.lru_cache(maxsize=1)
def _supervisor_source() -> str:
    return Path(_supervisor.__file__).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------
# Levels


_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}


def probe(level: str) -> str | None:
    """None when ``level`` works here (a program ran in it), else why not."""
    with _probe_lock:
        if level not in _probed:
            _probed[level] = _probe(level)
        return _probed[level]


def _probe(level: str) -> str | None:
    if level == "bubblewrap" and shutil.which("bwrap") is None:
        return "bwrap is not installed"
    try:
        sandbox_python()
        slot, lock_fd = _slots.acquire()
    except SandboxUnavailable as exc:
        return str(exc)
    try:
        worker = _Worker(level, SandboxLimits(timeout_s=10.0), slot)
        test = "def check(candidate):\n    assert candidate() == 1\n"
        try:
            result = worker.run(Program("", "def f():\n    return 1\n", test, "f"))
        finally:
            worker.close()
        return None if result.passed else f"a probe program failed: {result.reason}"
    except WorkerError as exc:
        return str(exc)
    finally:
        _slots.release(lock_fd)


def requested_level(level: str | None = None) -> str:
    """``level``, else ``$HEIDI_SANDBOX``, else the configuration's default."""
    return level or os.environ.get("HEIDI_SANDBOX") or Config.sandbox


def resolve_level(level: str | None = None) -> str:
    """The enforced level for ``level`` (default: :func:`requested_level`).

    Raises SandboxUnavailable when it cannot be enforced here; ``auto`` never falls back
    to a level that leaves the host's filesystem or network visible."""
    level = requested_level(level)
    if level not in LEVELS:
        raise ValueError(f"invalid sandbox level {level!r} (valid: {', '.join(LEVELS)})")
    if level == "rlimits-unsafe":
        problem = probe(level)
        if problem is not None:
            raise SandboxUnavailable(f"sandbox level rlimits-unsafe does not work: {problem}")
        return level
    problem = probe("bubblewrap")
    if problem is None:
        return "bubblewrap"
    raise SandboxUnavailable(f"refusing to run untrusted code: sandbox level {level} is "
                             f"unavailable ({problem}); {INSTALL_HINT}")


def describe(level: str | None = None) -> dict:
    """What the sandbox enforces here, truthfully (for ``heidi doctor``)."""
    requested = requested_level(level)
    info: dict = {"level": requested, "bwrap": shutil.which("bwrap")}
    try:
        info["python"] = sandbox_python()[0]
        enforced = resolve_level(requested)
    except (SandboxUnavailable, ValueError) as exc:
        info.update(isolation=None, refuses_to_run=True, error=str(exc))
        return info
    isolated = enforced == "bubblewrap"
    runs_as = (f"uid {SANDBOX_UID_BASE}+slot (unprivileged)" if _running_as_root()
               else f"uid {os.geteuid()} (the invoking user)")
    info.update(
        isolation=enforced,
        refuses_to_run=False,
        verdict="check() returned in a judge process apart from the program under test",
        network_isolated=isolated,
        pid_namespace=isolated,
        filesystem=("private: read-only system dirs and interpreter, tmpfs /tmp and /dev/shm"
                    if isolated else "host filesystem, readable and writable by " + runs_as),
        runs_as=runs_as,
        unprivileged_uid=_running_as_root(),
        process_limit_enforced=_running_as_root() or isolated,
    )
    return info


# ---------------------------------------------------------------------------------------
# Running


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _as_program(program: object) -> Program:
    if not isinstance(program, Program):
        raise TypeError("the sandbox runs Program objects (see build_program), "
                        f"not {type(program).__name__}")
    return program


def run_many(programs: Sequence[Program], limits: SandboxLimits | None = None, workers: int = 0,
             *, level: str | None = None,
             on_result: Callable[[int, SandboxResult], None] | None = None) -> list[SandboxResult]:
    """Run programs in parallel on at most ``workers`` warm sandboxes (0 = number of
    cores). Results come back in input order; ``on_result(index, result)`` is called
    as each finishes (serialised by a lock). Raises SandboxUnavailable (before running
    anything) when the level cannot be enforced."""
    limits = limits or SandboxLimits()
    programs = [_as_program(p) for p in programs]
    enforced = resolve_level(level)
    if not programs:
        return []
    clean_stale_work_dirs()  # left by a crashed rlimits-unsafe run
    workers = min(workers or default_workers(), MAX_SLOTS, len(programs))
    results: list[SandboxResult | None] = [None] * len(programs)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for index in range(len(programs)):
        todo.put(index)
    report_lock = threading.Lock()
    errors: list[BaseException] = []

    def serve() -> None:
        # The worker is started by this thread and lives while it does: bubblewrap's
        # --die-with-parent ties the sandbox to the thread that spawned it.
        slot, lock_fd = _slots.acquire()
        worker = None
        try:
            while True:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                if worker is None:
                    worker = _Worker(enforced, limits, slot)
                result = worker.run(programs[index])  # restarts a worker that died
                results[index] = result
                if on_result is not None:
                    with report_lock:
                        on_result(index, result)
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
        finally:
            if worker is not None:
                worker.close()
            _slots.release(lock_fd)

    threads = [threading.Thread(target=serve, name=f"heidi-sandbox-{n}", daemon=True)
               for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def run_program(program: Program, limits: SandboxLimits | None = None, *,
                level: str | None = None) -> SandboxResult:
    """Run one program in a fresh sandbox and return its verdict."""
    return run_many([program], limits, 1, level=level)[0]
