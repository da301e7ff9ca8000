"""What every stage program shares: its command line, configuration and file names.

A stage is run as ``python -m heidi_engine.stages.<name> --round N --out-dir DIR``; it
reads its configuration from the environment like the Core (SPEC §7-§8) and needs
nothing else in ``OUT_DIR`` but the previous stage's file.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import run_layout
from .._py.config import Config
from ..errors import ConfigError
from ..io import JsonlError, read_jsonl, write_jsonl_atomic
from ..telemetry import emit_event


@dataclass(frozen=True)
class RoundPaths:
    """The files of one round in ``out_dir`` (names from :mod:`heidi_engine.run_layout`)."""

    out_dir: Path
    round: int

    def data(self, kind: str, round: int | None = None) -> Path:
        return self.out_dir / run_layout.data_file(kind, self.round if round is None else round)

    @property
    def raw(self) -> Path:
        return self.data("raw")

    @property
    def clean(self) -> Path:
        return self.data("clean")

    @property
    def rejected(self) -> Path:
        return self.data("rejected")

    @property
    def tested(self) -> Path:
        return self.data("tested")

    @property
    def test_failed(self) -> Path:
        return self.data("test_failed")

    @property
    def train(self) -> Path:
        return self.data("train")

    @property
    def val(self) -> Path:
        return self.data("val")

    @property
    def lora_dir(self) -> Path:
        return self.lora_dir_of(self.round)

    def lora_dir_of(self, round: int) -> Path:
        return self.out_dir / run_layout.adapter_dir(round)

    @property
    def eval_report(self) -> Path:
        return self.eval_report_of(self.round)

    def eval_report_of(self, round: int) -> Path:
        return self.out_dir / run_layout.eval_report(round)

    @property
    def best_adapter(self) -> Path:
        return self.out_dir / run_layout.BEST_ADAPTER

    @property
    def state_dir(self) -> Path:
        """Stage-private persistent state (e.g. the near-duplicate index)."""
        return self.out_dir / run_layout.STATE_DIR


@dataclass(frozen=True)
class StageContext:
    name: str
    paths: RoundPaths
    config: Config

    @property
    def round(self) -> int:
        return self.paths.round


def parse_args(stage: str, argv: Sequence[str] | None = None) -> StageContext:
    parser = argparse.ArgumentParser(prog=f"python -m heidi_engine.stages.{stage}")
    parser.add_argument("--round", type=int, required=True, help="round number (>= 1)")
    parser.add_argument("--out-dir", required=True, help="run directory (OUT_DIR)")
    args = parser.parse_args(argv)
    if args.round < 1:
        parser.error(f"--round must be >= 1, got {args.round}")
    config = Config.from_env(out_dir=args.out_dir)
    return StageContext(stage, RoundPaths(Path(args.out_dir), args.round), config)


def run_stage(
    stage: str,
    body: Callable[[StageContext], int | None],
    argv: Sequence[str] | None = None,
    *,
    config_errors: tuple[type[BaseException], ...] = (),
    input_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run a stage with the exit convention of every stage: 0 done, 2 a configuration
    error, 1 unusable input. The error is printed and reported as a progress event, so
    the Core's journal says why the stage failed."""
    try:
        return body(parse_args(stage, argv)) or 0
    except (ConfigError, *config_errors) as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        emit_event("progress", f"configuration error: {exc}", level="error")
        return 2
    except (FileNotFoundError, JsonlError, *input_errors) as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        emit_event("progress", f"failed: {exc}", level="error")
        return 1


def split_train_val(samples: list[dict], val_ratio: float, seed: int, round: int) -> tuple[list, list]:
    """Seeded train/val split (SPEC §4): the same inputs always give the same split.

    At least one sample goes to training; validation gets round(n * val_ratio) samples,
    and at least one when val_ratio > 0 and there are two or more samples.
    """
    order = list(range(len(samples)))
    random.Random(f"{seed}:split:{round}").shuffle(order)
    n = len(samples)
    n_val = round_half_up(n * val_ratio)
    if val_ratio > 0 and n >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, max(n - 1, 0))
    val_idx = set(order[:n_val])
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def round_half_up(x: float) -> int:
    return int(x + 0.5)


def write_split(paths: RoundPaths, samples: list[dict], val_ratio: float, seed: int) -> tuple[int, int]:
    train, val = split_train_val(samples, val_ratio, seed, paths.round)
    write_jsonl_atomic(paths.train, train)
    write_jsonl_atomic(paths.val, val)
    return len(train), len(val)


def require_input(path: Path) -> Path:
    """``path``, or the FileNotFoundError (an input error) that names it."""
    if not path.exists():
        raise FileNotFoundError(f"input file missing: {path} (run the previous stage first)")
    return path


def read_samples(path: Path) -> list[dict]:
    return read_jsonl(require_input(path))
