"""``heidi serve``: the control API of SPEC §9 in Python, the twin of ``heidid``.

The same parts as ``cpp/daemon``, each usable on its own:

- :mod:`.api` — :class:`Api` turns one request (method, target, headers, body) into a
  :class:`Response`, by the routes of the shared OpenAPI document (:mod:`.openapi`).
- :mod:`.engine_runner` — :class:`EngineRunner` owns the thread that ticks the Core.
- :mod:`.http_server` — :class:`HttpServer` puts the Api behind a threading HTTP server.
- :mod:`.main` — :func:`serve`, the ``heidi serve`` command: token file, discovery file,
  signals.

Beside them what the API answers from: :mod:`.journal_index` (events and the journal's
aggregates), :mod:`.metrics` (``/metrics``) and :mod:`.eval_reports`; and
:mod:`.launcher`, which starts either server as a child process for tests and benchmarks.
"""

from __future__ import annotations

from .api import Api, Response
from .engine_runner import EngineRunner
from .http_server import HttpServer
from .main import ServeOptions, discovery_path, read_token_file, serve, write_token_file

__all__ = [
    "Api",
    "EngineRunner",
    "HttpServer",
    "Response",
    "ServeOptions",
    "discovery_path",
    "read_token_file",
    "serve",
    "write_token_file",
]
