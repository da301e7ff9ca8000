"""The in-sandbox half of the sandbox: a warm supervisor that judges programs.

This file runs inside the sandbox, in the sandbox's interpreter (``python -I -S``),
with nothing of the engine importable: it uses the standard library only. The host
passes its source with ``-c`` and talks to it over two pipes (requests in, verdicts
out), one length-prefixed JSON frame per message.

Per program the supervisor forks two processes:

- the **candidate** executes ``prompt + completion`` (untrusted) and then serves
  calls of the entry point over a socket;
- the **judge** executes the task's ``prompt`` and ``test`` (trusted: they come from
  the task) and calls ``check(proxy)``, where ``proxy`` forwards each call to the
  candidate. Arguments and results cross as data only (:func:`encode` /
  :func:`decode`); an exception raised by the candidate comes back as the builtin
  exception class of the same name (the first builtin class in its MRO).

The answer passes only when ``check`` returned in the judge. The judge reports that on
a pipe the candidate never holds; the supervisor and the judge are not dumpable, so a
candidate of the same uid can neither ptrace them nor open their ``/proc`` fds or
memory. Whatever the candidate does — exit with any code, kill itself or the judge,
print markers, patch its builtins — at worst makes the judge fail or time out.
After each program every other process the supervisor can reach is killed and the
scratch directories are wiped, so the next program starts clean.
"""

from __future__ import annotations

# The modules marked F401 are preloaded so that programs using them start fast (the
# forked judge and candidate inherit them).
import builtins
import collections  # noqa: F401
import ctypes
import functools  # noqa: F401
import gc
import itertools  # noqa: F401
import json
import math  # noqa: F401
import os
import random  # noqa: F401
import re  # noqa: F401
import resource
import select
import shutil
import signal
import socket
import string  # noqa: F401
import struct
import sys
import time
import typing  # noqa: F401

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
MAX_FRAME = 64 << 20
REASON_CHARS = 300
_HEADER = struct.Struct(">I")


# ---------------------------------------------------------------------------------------
# Framing


def frame(message: object) -> bytes:
    data = json.dumps(message, ensure_ascii=True).encode("ascii")
    if len(data) > MAX_FRAME:
        raise ValueError("message too large")
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, message: object) -> None:
    view = memoryview(frame(message))
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> object:
    """The next message, or None at end of file. Raises ValueError on a bad frame."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError("message too large")
    data = _read_exact(fd, size)
    if data is None:
        return None
    return json.loads(data)


# ---------------------------------------------------------------------------------------
# The data codec: plain values only, exact types (a subclass with a forged ``__eq__``
# is not encodable). JSON carries ints of any size, floats with nan/inf/-0.0 and
# strings (lone surrogates included); everything else is a tagged list.


class Unsupported(TypeError):
    pass


def encode(value: object, depth: int = 0) -> object:
    if depth > 200:
        raise Unsupported("nesting too deep")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    depth += 1
    if kind is list:
        return ["l", [encode(v, depth) for v in value]]
    if kind is tuple:
        return ["t", [encode(v, depth) for v in value]]
    if kind is dict:
        return ["d", [[encode(k, depth), encode(v, depth)] for k, v in value.items()]]
    if kind is set:
        return ["s", [encode(v, depth) for v in value]]
    if kind is frozenset:
        return ["z", [encode(v, depth) for v in value]]
    if kind is complex:
        return ["c", value.real, value.imag]
    if kind is bytes:
        return ["b", value.decode("latin-1")]
    if kind is bytearray:
        return ["a", value.decode("latin-1")]
    if kind is range:
        return ["r", value.start, value.stop, value.step]
    raise Unsupported(f"a value of type {kind.__name__} cannot cross the sandbox")


def encode_result(value: object) -> object:
    """Like :func:`encode`, but a returned iterator (a generator, ``map`` …) is
    consumed and crosses as an iterator over its items."""
    kind = type(value)
    if kind.__module__ == "builtins" and hasattr(kind, "__next__") and hasattr(kind, "__iter__"):
        return ["g", [encode(v, 1) for v in value]]
    return encode(value)


def decode(data: object, depth: int = 0) -> object:
    if depth > 200:
        raise ValueError("nesting too deep")
    kind = type(data)
    if data is None or kind is bool or kind is int or kind is float or kind is str:
        return data
    if kind is not list or not data or type(data[0]) is not str:
        raise ValueError("malformed value")
    tag, depth = data[0], depth + 1
    if tag in "ltszg" and len(data) == 2 and type(data[1]) is list:
        items = [decode(v, depth) for v in data[1]]
        if tag == "l":
            return items
        if tag == "t":
            return tuple(items)
        if tag == "s":
            return set(items)
        if tag == "z":
            return frozenset(items)
        return iter(items)
    if tag == "d" and len(data) == 2 and type(data[1]) is list:
        out = {}
        for pair in data[1]:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict")
            out[decode(pair[0], depth)] = decode(pair[1], depth)
        return out
    if tag == "c" and len(data) == 3 and all(type(v) in (int, float) for v in data[1:]):
        return complex(data[1], data[2])
    if tag in "ba" and len(data) == 2 and type(data[1]) is str:
        raw = data[1].encode("latin-1")
        return raw if tag == "b" else bytearray(raw)
    if tag == "r" and len(data) == 4 and all(type(v) is int for v in data[1:]):
        return range(data[1], data[2], data[3])
    raise ValueError("malformed value")


def _copy_back(original: object, updated: object) -> None:
    """Mirror an in-place change the candidate made to a mutable argument."""
    if type(original) is not type(updated) or original == updated:
        return
    if type(original) in (list, bytearray):
        original[:] = updated
    elif type(original) in (dict, set):
        original.clear()
        original.update(updated)


def _exception_names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__
            if getattr(builtins, cls.__name__, None) is cls]


def _exception_from(names: object, message: object) -> BaseException:
    for name in names if type(names) is list else ():
        cls = getattr(builtins, name, None) if type(name) is str else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            try:
                return cls(message)
            except Exception:  # an exception class with a different signature
                continue
    return Exception(message)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:REASON_CHARS]
    except Exception:
        return ""


def _describe(exc: BaseException) -> str:
    text = _message(exc)
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "memory limit"
    return (f"{name}: {text}" if text else name)[:REASON_CHARS]


# ---------------------------------------------------------------------------------------
# Processes


_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _isolate_fds(keep: tuple[int, ...]) -> None:
    """stdio on /dev/null, every other descriptor but ``keep`` closed."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if null != fd:
            os.dup2(null, fd)
    start = 3
    for fd in sorted(keep):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 16)


def _apply_limits(limits: dict) -> None:
    cpu = int(limits["timeout_s"]) + 1
    for res, value in ((resource.RLIMIT_CPU, cpu),
                       (resource.RLIMIT_AS, limits["memory_mb"] << 20),
                       (resource.RLIMIT_NPROC, limits["max_processes"]),
                       (resource.RLIMIT_FSIZE, limits["max_file_mb"] << 20),
                       (resource.RLIMIT_NOFILE, limits["max_open_files"])):
        resource.setrlimit(res, (value, value))


def _candidate(sock: socket.socket, request: dict, limits: dict) -> None:
    fd = sock.fileno()
    try:
        source = request["prompt"] + request["completion"]
        namespace: dict = {}
        try:
            _apply_limits(limits)
            exec(compile(source, "<candidate>", "exec"), namespace)
            function = namespace[request["entry_point"]]
        except BaseException as exc:  # noqa: B036 - every failure is a verdict
            write_frame(fd, {"exc": _exception_names(exc), "msg": _describe(exc)})
            return
        write_frame(fd, {"ready": True})
        while True:
            call = read_frame(fd)
            if call is None:
                return
            args, kwargs = decode(call["args"]), decode(call["kwargs"])
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:  # noqa: B036
                write_frame(fd, {"exc": _exception_names(exc), "msg": _message(exc)})
                continue
            try:
                reply = {"ok": encode_result(result), "args": encode(args)}
            except Unsupported as exc:
                reply = {"bad": str(exc)}
            write_frame(fd, reply)
    finally:
        os._exit(0)


class _Judge:
    def __init__(self, sock_fd: int, verdict_fd: int) -> None:
        self.sock_fd = sock_fd
        self.verdict_fd = verdict_fd

    def finish(self, passed: bool, reason: str) -> None:
        write_frame(self.verdict_fd, {"passed": passed, "reason": reason[:REASON_CHARS]})
        os._exit(0)

    def receive(self) -> dict:
        try:
            message = read_frame(self.sock_fd)
        except (ValueError, OSError):
            message = None
        if type(message) is not dict:
            self.finish(False, "failed: the program under test exited or broke its channel")
        return message

    def proxy(self):
        judge = self

        def candidate(*args, **kwargs):
            try:
                write_frame(judge.sock_fd, {"args": encode(list(args)), "kwargs": encode(kwargs)})
            except Unsupported as exc:
                judge.finish(False, f"failed: test argument: {exc}")
            except OSError:
                judge.finish(False, "failed: the program under test exited or broke its channel")
            reply = judge.receive()
            if "exc" in reply:
                raise _exception_from(reply.get("exc"), reply.get("msg"))
            if "bad" in reply:
                judge.finish(False, f"failed: returned {reply['bad']}"[:REASON_CHARS])
            try:
                result = decode(reply.get("ok"))
                for original, updated in zip(args, decode(reply.get("args"))):
                    _copy_back(original, updated)
            except (ValueError, TypeError, RecursionError):
                judge.finish(False, "failed: malformed reply from the program under test")
            return result

        return candidate


def _judge(sock: socket.socket, verdict_fd: int, request: dict, limits: dict) -> None:
    judge = _Judge(sock.fileno(), verdict_fd)
    try:
        _apply_limits(limits)
        namespace: dict = {}
        try:
            prompt = compile(request["prompt"], "<prompt>", "exec")
        except SyntaxError:  # a prompt that stops inside a block: give it a body
            prompt = compile(request["prompt"] + "\n    pass\n", "<prompt>", "exec")
        exec(prompt, namespace)
        test = compile(request["test"], "<test>", "exec")
        ready = judge.receive()
        if "exc" in ready:
            judge.finish(False, f"failed: {ready.get('msg')}")
        exec(test, namespace)
        proxy = judge.proxy()
        namespace[request["entry_point"]] = proxy
        namespace["check"](proxy)
    except BaseException as exc:  # noqa: B036 - anything but a return of check fails
        judge.finish(False, f"failed: {_describe(exc)}")
    judge.finish(True, "passed")


def _fork(child) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            child()
        finally:
            os._exit(0)
    return pid


class Supervisor:
    def __init__(self, config: dict) -> None:
        self.limits = config["limits"]
        self.scratch = config["scratch"]  # directories wiped after every program
        self.work = config["work"]
        self.kill_all = config["kill_all"]  # alone in a pid namespace or uid: kill(-1)
        self.pid = os.getpid()
        self._children: tuple[int, ...] = ()

    def run(self, request: dict) -> dict:
        os.makedirs(self.work, mode=0o700, exist_ok=True)
        os.chdir(self.work)
        started = time.monotonic()
        ours, theirs = socket.socketpair()
        read_end, write_end = os.pipe()
        # The judge first (it has more to do before the first call). The candidate is
        # forked once our copies of the judge's ends are closed and keeps only its own
        # socket: it never holds either end of the verdict pipe.
        judge = _fork(lambda: self._child(
            (ours.fileno(), write_end),
            lambda: _judge(ours, write_end, request, self.limits)))
        ours.close()
        os.close(write_end)
        candidate = _fork(lambda: self._child(
            (theirs.fileno(),), lambda: _candidate(theirs, request, self.limits)))
        theirs.close()
        try:
            return self._await(read_end, started + self.limits["timeout_s"])
        finally:
            os.close(read_end)
            self._children = (candidate, judge)

    def clean_up(self) -> None:
        """Kill everything the last program left and wipe the scratch directories (after
        its verdict went out: the next program starts only once this is done)."""
        self._kill_everything(self._children)
        self._wipe()

    def _child(self, keep: tuple[int, ...], body) -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _isolate_fds(keep)
        os.chdir(self.work)
        body()

    def _await(self, fd: int, deadline: float) -> dict:
        """The judge's verdict: read as soon as its frame is complete (not at end of file,
        which comes only once the judge's exit has torn down its memory)."""
        buffer = b""
        while len(buffer) < _HEADER.size or len(buffer) < _HEADER.size + _HEADER.unpack(
                buffer[:_HEADER.size])[0]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return {"passed": False, "reason": "timeout"}
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"passed": False, "reason": "failed: the judge was killed"}
            buffer += chunk
        try:
            (size,) = _HEADER.unpack(buffer[:_HEADER.size])
            verdict = json.loads(buffer[_HEADER.size:_HEADER.size + size])
            if type(verdict.get("passed")) is bool and type(verdict.get("reason")) is str:
                return verdict
        except (ValueError, AttributeError):
            pass
        return {"passed": False, "reason": "failed: the judge was killed"}

    def _descendants(self) -> list[int]:
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat", "rb") as fh:
                        line = fh.read()
                    parents[int(name)] = int(line[line.rindex(b")") + 2:].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        found, frontier = [], [self.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            found += children
            frontier += children
        return found

    def _kill_everything(self, children) -> None:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.kill_all:
            # Alone with our descendants (a pid namespace or a uid of our own):
            # kill(-1) reaches them all at once (forks cannot race it), and every
            # orphan is reparented to us, so reaping until none is left ends it.
            while True:
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    return
        for _ in range(1000):
            for pid in self._descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            while True:  # reap (orphans come to us: we are a subreaper)
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    break
            time.sleep(0.001)

    def _wipe(self) -> None:
        for directory in self.scratch:
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            for entry in entries:
                path = os.path.join(directory, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass


def main() -> None:
    config = json.loads(sys.argv[1])
    requests, verdicts = config["requests_fd"], config["verdicts_fd"]
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if config.get("die_with_parent"):
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(0o077)
    supervisor = Supervisor(config)
    gc.collect()
    gc.freeze()  # forked children then copy fewer pages on write
    write_frame(verdicts, {"ready": True})
    while True:
        request = read_frame(requests)
        if request is None:
            return
        write_frame(verdicts, supervisor.run(request))
        supervisor.clean_up()


if __name__ == "__main__":
    main()
