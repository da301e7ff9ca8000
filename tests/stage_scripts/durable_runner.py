"""A runner process for the durability suite: open the run in OUT_DIR and drive it to the end.

    durable_runner.py --backend native|python --out-dir DIR

What ``heidi run`` does, without its progress display: open the Core (resuming whatever
the directory holds), start it unless the run is complete, tick until IDLE or ERROR.
The configuration comes from the environment (the test sets the stage commands, ROUNDS,
SAMPLES_PER_ROUND and, for fault runs, HEIDI_FAULT_POINT). Exit codes: 0 run complete,
1 ERROR (the cause on stderr), 3 the run lock is held by another runner.
"""

from __future__ import annotations

import argparse
import json
import sys

from heidi_engine import backend as backend_mod
from heidi_engine.errors import RunLockedError, TransitionError

EXIT_COMPLETE, EXIT_ERROR, EXIT_LOCKED = 0, 1, 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("native", "python"), required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    engine = backend_mod.load(args.backend)
    config = engine.Config.from_env(out_dir=args.out_dir)
    try:
        core = engine.Core(config)
    except RunLockedError as exc:
        print(f"locked: {exc}", file=sys.stderr, flush=True)
        return EXIT_LOCKED
    print("opened", flush=True)
    try:
        try:
            core.start()
        except TransitionError as exc:
            if str(exc).startswith("run complete"):
                return EXIT_COMPLETE
            raise
        final = core.run_until_idle()
        if final != "IDLE":
            status = json.loads(core.get_status_json())
            print(f"ended in {final}: {status['last_error']}", file=sys.stderr, flush=True)
            return EXIT_ERROR
        return EXIT_COMPLETE
    finally:
        core.shutdown()


if __name__ == "__main__":
    sys.exit(main())
