"""The hardened process runner (pure-Python twin of ``heidi::Subprocess``).

The child runs in its own session (process group). One loop on the caller's thread
waits on the stdout/stderr pipes, a pidfd of the child, the cancel token and the
deadline, so the deadline holds even when the child closes its pipes. On timeout or
cancel the whole group gets SIGTERM, then SIGKILL after the grace. When the child
exits, whatever is left of its group is killed before the child is reaped (its pid,
which is the group id, cannot be reused until then). Output beyond the cap is read
and dropped so the child never blocks on a full pipe.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import SpawnError

DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
# A stdout line longer than this is cut to it before the line callback sees it.
MAX_LINE_BYTES = 1 << 20
_READ_CHUNK = 1 << 16
# After the child exits, pipes still held by processes that escaped its group are read
# for at most this long.
_POST_EXIT_DRAIN_S = 0.25


class CancelToken:
    """Lets another thread stop a running child (SIGTERM to its group, grace, SIGKILL).

    Once cancelled it stays cancelled; a run started with a cancelled token does not
    spawn at all.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def cancel(self) -> None:
        if self._event.is_set():
            return
        self._event.set()
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:
            pass

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def fileno(self) -> int:
        """Readable once ``cancel()`` was called."""
        return self._read_fd

    def __del__(self) -> None:
        for fd in (getattr(self, "_read_fd", -1), getattr(self, "_write_fd", -1)):
            if fd >= 0:
                os.close(fd)


@dataclass(frozen=True)
class RunResult:
    """What became of one child. ``exit_code`` is ``-signal`` when a signal ended it."""

    exit_code: int
    signal: int
    timed_out: bool
    stdout: bytes
    stderr: bytes
    truncated: bool
    duration_s: float
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


def _exec_error(path: str) -> int | None:
    """The errno exec would fail with for ``path`` (None when it looks executable)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.errno
    if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
        return errno.EACCES
    return None


def resolve_executable(name: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """Find what exec would run for ``name`` (``execvp`` rules), or raise SpawnError.

    A name with a '/' is taken relative to ``cwd``; otherwise the child's PATH is
    searched (``env``'s when given, the default path if it has none). EACCES from any
    candidate wins over ENOENT, as with ``execvp``.
    """
    if "/" in name:
        path = name if os.path.isabs(name) or cwd is None else os.path.join(cwd, name)
        error = _exec_error(path)
        if error is not None:
            raise SpawnError(error, os.strerror(error), name)
        return name
    error = errno.ENOENT
    if name:
        for directory in os.get_exec_path(dict(env) if env is not None else None):
            candidate = os.path.join(directory or ".", name)
            found = _exec_error(candidate)
            if found is None:
                return candidate
            if found == errno.EACCES:
                error = errno.EACCES
    raise SpawnError(error, os.strerror(error), name)


# The child is started through this program, run by a fresh interpreter (-I -S: no site,
# no environment variables of its own): single-threaded, so calling prctl through ctypes
# is safe there, unlike in a ``preexec_fn`` of a threaded parent. It binds the child's
# death to the runner (PR_SET_PDEATHSIG = SIGKILL), exits 127 if the runner is already
# gone, and execs the target itself. An exec failure (ENOEXEC for a file without "#!",
# unlike execvp's /bin/sh fallback) goes back through a pipe, so the runner raises
# SpawnError as the native runner does. The child's environment comes on a pipe (NUL-
# separated NAME=value), not from the helper's own, which the interpreter may change at
# start (locale coercion sets LC_CTYPE). argv: parent pid, error pipe fd, environment
# pipe fd, path, argv...
_EXEC_HELPER = """\
import os, sys
fd = int(sys.argv[2])
chunks = []
while chunk := os.read(int(sys.argv[3]), 65536):
    chunks.append(chunk)
os.close(int(sys.argv[3]))
env = dict(item.split(b"=", 1) for item in b"".join(chunks).split(b"\\0") if item)
def fail(kind, code):
    os.write(fd, f"{kind}{code}".encode())
    os._exit(127)
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, 9, 0, 0, 0) != 0:
        fail("prctl:", ctypes.get_errno())
except (ImportError, OSError, AttributeError) as exc:
    fail("prctl:", f"{type(exc).__name__}: {exc}")
if os.getppid() != int(sys.argv[1]):
    os._exit(127)
os.set_inheritable(fd, False)
try:
    os.execve(sys.argv[4], sys.argv[5:], env)
except OSError as exc:
    fail("exec:", exc.errno or 0)
"""


def _helper_python() -> str:
    import sys

    if not sys.executable:
        raise SpawnError(errno.ENOENT, "no Python interpreter to bind the child's death "
                         "signal with (sys.executable is empty)", "python")
    return sys.executable


def _send_environment(fd: int, env: Mapping[str, str] | None) -> None:
    items = os.environb.items() if env is None else (
        (os.fsencode(k), os.fsencode(v)) for k, v in env.items())
    data = b"\0".join(k + b"=" + v for k, v in items)
    try:
        with open(fd, "wb", closefd=True) as pipe:
            pipe.write(data)
    except BrokenPipeError:
        pass  # the helper is gone: its exit status is the result


def _spawn_failure(read_fd: int, name: str) -> SpawnError | None:
    """The helper's report: None when the target was exec'd, else the error to raise."""
    data = b""
    while chunk := os.read(read_fd, 4096):
        data += chunk
    if not data:
        return None
    kind, _, detail = data.decode("utf-8", "replace").partition(":")
    if kind == "exec" and detail.isdigit() and int(detail):
        return SpawnError(int(detail), os.strerror(int(detail)), name)
    reason = os.strerror(int(detail)) if detail.isdigit() else detail
    return SpawnError(errno.ENOSYS, "cannot bind the child's death to the runner "
                      f"(prctl PR_SET_PDEATHSIG: {reason})", name)


class _LineSplitter:
    """Cuts stdout into lines for the callback, with a bounded line buffer."""

    def __init__(self, callback: Callable[[str], object]) -> None:
        self._callback = callback
        self._buffer = bytearray()

    def _append(self, piece: bytes) -> None:
        room = MAX_LINE_BYTES - len(self._buffer)
        if room > 0:
            self._buffer += piece[:room]

    def _emit(self) -> None:
        line = self._buffer.decode("utf-8", "replace")
        self._buffer.clear()
        self._callback(line)

    def feed(self, chunk: bytes) -> None:
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                self._append(chunk[start:])
                return
            self._append(chunk[start:newline])
            self._emit()
            start = newline + 1

    def finish(self) -> None:
        if self._buffer:
            self._emit()


class _CappedBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self.data += chunk


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


class Subprocess:
    """Runs one child to completion under a deadline (SPEC §7, Runner)."""

    @staticmethod
    def run(
        argv: Sequence[str],
        timeout_s: float,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        kill_grace_s: float = 2.0,
        on_stdout_line: Callable[[str], object] | None = None,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        argv = [os.fspath(arg) for arg in argv]
        if not argv:
            raise ValueError("argv must not be empty")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if kill_grace_s < 0:
            raise ValueError("kill_grace_s must be >= 0")
        if max_output_bytes < 0:
            raise ValueError("max_output_bytes must be >= 0")
        cwd_str = os.fspath(cwd) if cwd is not None else None
        started = time.monotonic()
        if cancel is not None and cancel.cancelled:
            return RunResult(-1, 0, False, b"", b"", False, 0.0, cancelled=True)

        executable = resolve_executable(argv[0], env, cwd_str)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        env_read_fd, env_write_fd = os.pipe2(os.O_CLOEXEC)
        command = [_helper_python(), "-I", "-S", "-c", _EXEC_HELPER, str(os.getpid()),
                   str(write_fd), str(env_read_fd), executable, *argv]
        try:
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=dict(env) if env is not None else None,
                    cwd=cwd_str,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(write_fd, env_read_fd),
                    bufsize=0,
                )
            except OSError as exc:
                raise SpawnError(exc.errno, exc.strerror, exc.filename or argv[0]) from exc
            for fd in (write_fd, env_read_fd):
                os.close(fd)
            write_fd = env_read_fd = -1
            sending, env_write_fd = env_write_fd, -1
            _send_environment(sending, env)
            failure = _spawn_failure(read_fd, argv[0])
        finally:
            for fd in (read_fd, write_fd, env_read_fd, env_write_fd):
                if fd >= 0:
                    os.close(fd)
        if failure is not None:
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            raise failure
        try:
            return _supervise(
                proc, started, timeout_s, max_output_bytes, kill_grace_s, on_stdout_line, cancel
            )
        except BaseException:
            # A failing callback or an interrupt: nothing may outlive the run.
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
        finally:
            proc.stdout.close()
            proc.stderr.close()


def _supervise(
    proc: subprocess.Popen,
    started: float,
    timeout_s: float,
    max_output_bytes: int,
    kill_grace_s: float,
    on_stdout_line: Callable[[str], object] | None,
    cancel: CancelToken | None,
) -> RunResult:
    pgid = proc.pid
    out = _CappedBuffer(max_output_bytes)
    err = _CappedBuffer(max_output_bytes)
    lines = _LineSplitter(on_stdout_line) if on_stdout_line is not None else None
    deadline = started + timeout_s
    timed_out = cancelled = False
    kill_at: float | None = None  # SIGKILL time once SIGTERM was sent
    exited_at: float | None = None

    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None  # old kernel: poll the child instead
    selector = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)
    if cancel is not None:
        selector.register(cancel.fileno(), selectors.EVENT_READ)

    def forget(fd: int) -> None:
        if fd in selector.get_map():
            selector.unregister(fd)

    def begin_termination() -> None:
        nonlocal kill_at
        _signal_group(pgid, signal.SIGTERM)
        kill_at = time.monotonic() + kill_grace_s
        if cancel is not None:
            forget(cancel.fileno())  # stays readable once cancelled; it has done its job

    try:
        while True:
            now = time.monotonic()
            if exited_at is None:
                if kill_at is None and now >= deadline:
                    timed_out = True
                    begin_termination()
                elif kill_at is None and cancel is not None and cancel.cancelled:
                    cancelled = True
                    begin_termination()
                if kill_at is not None and now >= kill_at:
                    _signal_group(pgid, signal.SIGKILL)
                    kill_at = float("inf")
                # The child has exited but is not reaped yet: kill what is left of its
                # group while the group id still cannot be reused.
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    _signal_group(pgid, signal.SIGKILL)
                    proc.wait()
                    exited_at = time.monotonic()
                    if pidfd is not None:
                        forget(pidfd)
                    if cancel is not None:
                        forget(cancel.fileno())
            if exited_at is not None and (not streams or now >= exited_at + _POST_EXIT_DRAIN_S):
                break
            wake = exited_at + _POST_EXIT_DRAIN_S if exited_at is not None else (
                deadline if kill_at is None else kill_at
            )
            wait_s = max(0.0, wake - now)
            if pidfd is None and exited_at is None:
                wait_s = min(wait_s, 0.01)
            for key, _ in selector.select(None if wait_s == float("inf") else wait_s):
                fd = key.fd
                if fd not in streams:
                    continue  # pidfd or cancel token: handled at the top of the loop
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(fd)
                    del streams[fd]
                    continue
                streams[fd].add(chunk)
                if lines is not None and fd == proc.stdout.fileno():
                    lines.feed(chunk)
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
    if lines is not None:
        lines.finish()
    returncode = proc.returncode
    return RunResult(
        exit_code=returncode,
        signal=-returncode if returncode < 0 else 0,
        timed_out=timed_out,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        truncated=out.truncated or err.truncated,
        duration_s=time.monotonic() - started,
        cancelled=cancelled,
    )


__all__ = ["CancelToken", "RunResult", "Subprocess", "SpawnError", "resolve_executable"]
