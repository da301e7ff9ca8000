"""Start ``heidid`` or ``heidi serve`` as a child process and wait until it listens.

Used by the test suite and the HTTP benchmark, which drive both servers the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

LISTENING = re.compile(r"listening on (http://\S+?)/#token=([0-9a-f]+)")
SERVER_KINDS = ("heidid", "python")


def find_heidid() -> str | None:
    """$HEIDID, else heidid beside heidi_cpp, in the scripts directory, or on PATH."""
    explicit = os.environ.get("HEIDID")
    if explicit:
        return explicit
    try:
        import heidi_cpp

        beside = Path(heidi_cpp.__file__).resolve().parent / "heidid"
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    except ImportError:
        pass
    # pip installs heidid into the environment's scripts directory, which need not be on PATH.
    installed = Path(sysconfig.get_path("scripts")) / "heidid"
    if installed.is_file() and os.access(installed, os.X_OK):
        return str(installed)
    return shutil.which("heidid")


class ServerProcess:
    """One server process; ``base_url`` and ``token`` are known once it listens."""

    def __init__(self, kind: str, out_dir: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, heidid: str | None = None,
                 startup_timeout_s: float = 30.0) -> None:
        if kind not in SERVER_KINDS:
            raise ValueError(f"invalid server kind {kind!r} (valid: {', '.join(SERVER_KINDS)})")
        if kind == "heidid":
            binary = heidid or find_heidid()
            if binary is None:
                raise FileNotFoundError("heidid not found (set HEIDID or build it)")
            argv = [binary]
        else:
            argv = [sys.executable, "-m", "heidi_engine.cli", "serve"]
        argv += ["--out-dir", str(out_dir), "--port", "0", *args]
        self.kind = kind
        self.out_dir = out_dir
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(env) if env is not None else None, text=True)
        self.stderr_lines: list[str] = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        line = self._read_listening_line(startup_timeout_s)
        match = LISTENING.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"{kind} did not start: {line!r}; stderr: {self.stderr}")
        self.base_url, self.token = match.group(1), match.group(2)
        self.port = int(self.base_url.rsplit(":", 1)[1])
        self.host = self.base_url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
        self.stdout_line = line

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _read_listening_line(self, timeout_s: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout_s)
        return result[0] if result else ""

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr_thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


__all__ = ["LISTENING", "SERVER_KINDS", "ServerProcess", "find_heidid"]
