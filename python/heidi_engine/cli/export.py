"""``heidi export``: the run's samples as a dataset (JSONL, Parquet, the Hugging Face
datasets layout, chat messages, or preference pairs)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..io import read_jsonl, scrub_values, write_jsonl_atomic, write_text_atomic
from ..run_layout import DATA_DIR, DATA_NAME, data_file, rounds_present
from .client import resolve_out_dir
from .errors import EXIT_OK, CliError

FORMATS = ("jsonl", "parquet", "hf", "messages", "preference")
SOURCES = ("train", "tested", "clean")


def _rounds_with(out_dir: Path, kind: str) -> list[int]:
    return rounds_present(out_dir / DATA_DIR, DATA_NAME, kind=kind)


def export_splits(out_dir: Path, source: str, rounds: Sequence[int] | None) -> dict[str, list[dict]]:
    """Split name -> rows, from ``data/<kind>_round_N.jsonl`` of the chosen rounds."""
    kinds = {"train": ("train", "val"), "tested": ("tested",), "clean": ("clean",)}[source]
    split_names = {"train": "train", "val": "validation", "tested": "train", "clean": "train"}
    splits: dict[str, list[dict]] = {}
    for kind in kinds:
        available = _rounds_with(out_dir, kind)
        chosen = available if rounds is None else [r for r in available if r in rounds]
        rows: list[dict] = []
        for round_no in chosen:
            rows.extend(read_jsonl(out_dir / data_file(kind, round_no)))
        splits[split_names[kind]] = rows
    if not any(splits.values()):
        raise CliError(f"nothing to export: no {'/'.join(kinds)} files in {out_dir / DATA_DIR}"
                       + (f" for rounds {list(rounds)}" if rounds else ""))
    return splits


def _flatten_for_columns(rows: list[dict]) -> list[dict]:
    # `metadata` differs by task source; as JSON text every row shares one column type.
    return [{k: (json.dumps(v, ensure_ascii=False) if k == "metadata" else v) for k, v in row.items()}
            for row in rows]


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_flatten_for_columns(rows)), path)


def answer_code(sample: dict) -> str:
    """The whole program an answer stands for: the task's prompt and the completion."""
    return str(sample.get("prompt", "")) + str(sample.get("completion", ""))


def as_messages(sample: dict) -> dict:
    """A sample as a chat: the system prompt, the instruction, the answer in a code block."""
    from ..prompts import chat_messages

    code = answer_code(sample).rstrip()
    return {"id": sample.get("id"), "task_id": sample.get("task_id"),
            "messages": [*chat_messages(str(sample.get("instruction", ""))),
                         {"role": "assistant", "content": f"```python\n{code}\n```"}]}


def preference_pairs(out_dir: Path, rounds: Sequence[int] | None) -> list[dict]:
    """(prompt, chosen, rejected) from passing (tested) and failing (test_failed with
    reason test_failed) answers to the same task; each failing answer is paired once, with
    the task's passing answers in turn."""
    def rows(kind: str) -> list[dict]:
        chosen = [r for r in _rounds_with(out_dir, kind) if rounds is None or r in rounds]
        return [row for r in chosen for row in read_jsonl(out_dir / data_file(kind, r))]

    passing: dict[str, list[dict]] = {}
    for row in rows("tested"):
        passing.setdefault(str(row.get("task_id")), []).append(row)
    pairs = []
    taken: dict[str, int] = {}
    for row in rows("test_failed"):
        task = str(row.get("task_id"))
        if row.get("reject_reason") != "test_failed" or task not in passing:
            continue
        good = passing[task][taken.get(task, 0) % len(passing[task])]
        taken[task] = taken.get(task, 0) + 1
        pairs.append({"task_id": task, "prompt": str(good.get("instruction", "")),
                      "chosen": answer_code(good), "rejected": answer_code(row),
                      "rejected_test_result": row.get("test_result")})
    if not pairs:
        raise CliError(f"nothing to export: no task in {out_dir / DATA_DIR} has both a passing "
                       "(tested) and a failing (test_failed) answer"
                       + (f" in rounds {list(rounds)}" if rounds else ""))
    return pairs


def cmd_export(args: argparse.Namespace) -> int:
    out_dir = resolve_out_dir(args.out_dir)
    rounds = [int(r) for r in args.rounds.split(",")] if args.rounds else None
    target = Path(args.output)
    if args.format == "preference":
        pairs = preference_pairs(out_dir, rounds)
        target.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(target / "preference.jsonl", pairs)
        print(f"{target / 'preference.jsonl'}: {len(pairs)} rows")
        return EXIT_OK
    splits = export_splits(out_dir, args.source, rounds)
    splits = {split: scrub_values(rows) for split, rows in splits.items()}  # every format
    target.mkdir(parents=True, exist_ok=True)
    written = []
    if args.format == "messages":
        for split, rows in splits.items():
            write_jsonl_atomic(target / f"{split}.jsonl", [as_messages(r) for r in rows])
            written.append((target / f"{split}.jsonl", len(rows)))
    elif args.format == "jsonl":
        for split, rows in splits.items():
            write_jsonl_atomic(target / f"{split}.jsonl", rows)
            written.append((target / f"{split}.jsonl", len(rows)))
    elif args.format == "parquet":
        for split, rows in splits.items():
            _write_parquet(rows, target / f"{split}.parquet")
            written.append((target / f"{split}.parquet", len(rows)))
    else:
        # The Hugging Face Hub dataset layout: `datasets.load_dataset(DIR)` reads it.
        data_dir = target / "data"
        data_dir.mkdir(exist_ok=True)
        files_yaml = []
        for split, rows in splits.items():
            if not rows:
                continue
            path = data_dir / f"{split}-00000-of-00001.parquet"
            _write_parquet(rows, path)
            written.append((path, len(rows)))
            files_yaml.append(f"  - split: {split}\n    path: data/{split}-*.parquet")
        card = ("---\nconfigs:\n- config_name: default\n  data_files:\n" + "\n".join(files_yaml)
                + "\n---\n\n# Heidi Engine dataset\n\nExported by `heidi export` from "
                f"`{args.source}` files of run directory `{out_dir.name}`.\n")
        write_text_atomic(target / "README.md", card)
    for path, count in written:
        print(f"{path}: {count} rows")
    return EXIT_OK
