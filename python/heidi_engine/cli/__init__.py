"""``heidi``, the command line (SPEC §10): run and steer the loop from a terminal.

- :mod:`.parser` — the subcommands and their options; :func:`main` is the entry point.
- :mod:`.run` — ``heidi run``, on the engine runner of the Python server.
- :mod:`.client` — the commands that steer and read a run, through its server or files.
- :mod:`.export`, :mod:`.doctor` — ``heidi export`` and ``heidi doctor``.

Heavy modules (the engine backends, pyarrow, torch) are imported only by the commands
that need them.
"""

from __future__ import annotations

from .parser import main

__all__ = ["main"]
