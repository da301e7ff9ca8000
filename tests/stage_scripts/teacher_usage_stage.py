"""A generate stage for server tests: reports teacher usage, then does what the fake
generate stage does (``tests/data/fake_stage.py generate``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

USAGE = {"prompt_tokens": 1200, "completion_tokens": 345, "cost_micros": 6450}

sys.stdout.write("@heidi " + json.dumps({"event_type": "progress", "message": "answered 3/3",
                                         "counters_delta": {"teacher_cache_hits": 2},
                                         "usage_delta": USAGE}) + "\n")
sys.stdout.flush()
fake = Path(__file__).resolve().parents[1] / "data" / "fake_stage.py"
os.execv(sys.executable, [sys.executable, str(fake), "generate", *sys.argv[1:]])
