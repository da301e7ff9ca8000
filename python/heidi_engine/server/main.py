"""``heidi serve``: options -> config -> engine -> API -> server -> signals -> shutdown
(the twin of ``cpp/daemon/main.cpp``).

It writes a fresh token to a 0600 file and a discovery file (``state/daemon.json``) that
tells ``heidi`` where the server is, serves until SIGINT/SIGTERM and then cancels a
running stage, as ``heidid`` does.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TransitionError
from ..process import StopSignals
from ..run_layout import DISCOVERY_FILE, TOKEN_FILE
from .api import Api
from .engine_runner import EngineRunner
from .http_server import HttpServer


def is_loopback(host: str) -> bool:
    """The rule heidid warns by: localhost, ::1 and 127.0.0.0/8."""
    return host in ("localhost", "::1") or host.startswith("127.")


def write_token_file(path: Path) -> str:
    """A fresh random token in a file only the owner can read (0600)."""
    token = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token


def read_token_file(path: str | os.PathLike) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def discovery_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / DISCOVERY_FILE


def write_discovery(out_dir: Path, *, server: str, url: str, host: str, port: int,
                    token_file: Path, backend: str) -> None:
    from ..io import write_json_atomic

    write_json_atomic(discovery_path(out_dir), {
        "server": server, "pid": os.getpid(), "host": host, "port": port, "url": url,
        "token_file": str(token_file), "backend": backend,
    })


def remove_discovery(out_dir: Path) -> None:
    """Remove the discovery file if it is still this process's."""
    path = discovery_path(out_dir)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


@dataclass
class ServeOptions:
    out_dir: Path
    host: str = "127.0.0.1"
    port: int = 7779
    token_file: Path | None = None
    mode: str | None = None
    start: bool = True
    config_file: str | None = None
    log_requests: bool = False


def _report_engine_failure(exc: BaseException) -> None:
    # The server keeps serving status; the exit code says it failed.
    print(f"heidi serve: engine thread failed: {exc}", file=sys.stderr, flush=True)


def serve(options: ServeOptions) -> int:
    """Run the Python server in the foreground until SIGINT/SIGTERM; returns the exit code."""
    from .. import backend as backend_mod

    engine = backend_mod.load()
    overrides: dict[str, Any] = {"out_dir": str(options.out_dir)}
    if options.mode is not None:
        overrides["pipeline_mode"] = options.mode
    if options.config_file is not None:
        overrides["config_file"] = options.config_file
    config = engine.Config.from_env(**overrides)
    out_dir = Path(config.out_dir)
    core = engine.Core(config)
    runner = EngineRunner(core, on_failure=_report_engine_failure)
    token_file = options.token_file or out_dir / TOKEN_FILE
    token = write_token_file(token_file)
    api_obj = Api(core, out_dir, token, config.pipeline_mode, runner)
    httpd = HttpServer(api_obj, options.host, options.port, options.log_requests)

    with StopSignals() as signals:
        try:
            if options.start:
                _auto_start(core, config.pipeline_mode)
            runner.start()
            httpd.start()
            write_discovery(out_dir, server="heidi serve", url=httpd.base_url, host=options.host,
                            port=httpd.port, token_file=token_file, backend=engine.name)
            if not is_loopback(options.host):
                print(f"heidi serve: warning: listening on {options.host}, which is not a "
                      "loopback address; anyone who can reach it and has the token can steer "
                      "the run", file=sys.stderr, flush=True)
            print(f"heidi serve listening on {httpd.base_url}#token={token}", flush=True)
            while not signals.requested.wait(0.5):
                pass
            print("heidi serve: shutting down", file=sys.stderr, flush=True)
        finally:
            remove_discovery(out_dir)
            runner.shutdown()
            httpd.stop()
    return 1 if runner.failure is not None else 0


def _auto_start(core: Any, mode: str) -> None:
    """Start or resume the run; a finished or waiting run is left as it is."""
    try:
        core.start(mode)
    except TransitionError as exc:
        print(f"heidi serve: not starting the run: {exc}", file=sys.stderr, flush=True)


__all__ = [
    "ServeOptions",
    "discovery_path",
    "is_loopback",
    "read_token_file",
    "remove_discovery",
    "serve",
    "write_discovery",
    "write_token_file",
]
