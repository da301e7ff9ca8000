"""Adapter directories on disk: atomic publication and the ``best_adapter`` link.

``out_lora/round_N`` is assembled in a temporary sibling directory (its name contains
``.tmp``), every file fsynced, then renamed into place, so a reader sees either no
adapter or a complete one. ``best_adapter`` is a relative symlink to
``out_lora/round_K``, replaced by renaming a new link over it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..io import fsync_dir, fsync_enabled, fsync_files

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
_ROUND_DIR = re.compile(r"^round_(\d+)$")


def temp_dir_for(final: Path) -> Path:
    """A fresh temporary directory beside ``final`` for building it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(final)
    tmp = final.with_name(f"{final.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def remove_stale_temp_dirs(final: Path) -> None:
    """Remove ``<name>.tmp.*`` / ``<name>.old.tmp.*`` directories a crash left behind."""
    if not final.parent.is_dir():
        return
    for entry in final.parent.iterdir():
        if entry.name.startswith((f"{final.name}.tmp.", f"{final.name}.old.tmp.")):
            shutil.rmtree(entry, ignore_errors=True)


def publish_dir(tmp: Path, final: Path) -> None:
    """Make the complete directory ``tmp`` appear as ``final`` in one rename.

    An existing ``final`` (a re-run of the stage) is moved aside first and deleted after.
    """
    fsync_files(tmp)
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old.tmp.{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if fsync_enabled():
        fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_adapter_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in ADAPTER_FILES)


def best_adapter_dir(out_dir: Path) -> Path | None:
    """The adapter directory ``best_adapter`` points to, or None when there is none."""
    link = out_dir / "best_adapter"
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    return target if is_adapter_dir(target) else None


def round_of_adapter(path: Path) -> int | None:
    match = _ROUND_DIR.match(path.name)
    return int(match.group(1)) if match else None


def point_best_adapter(out_dir: Path, adapter_dir: Path) -> None:
    """Atomically make ``OUT_DIR/best_adapter`` a relative symlink to ``adapter_dir``."""
    link = out_dir / "best_adapter"
    target = os.path.relpath(adapter_dir, out_dir)
    tmp = out_dir / f"best_adapter.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    if fsync_enabled():
        fsync_dir(out_dir)
