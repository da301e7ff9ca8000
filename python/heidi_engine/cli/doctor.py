"""``heidi doctor``: which backend, model libraries, accelerators and sandbox isolation
this machine has."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import HeidiError
from .errors import EXIT_OK


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def doctor_report() -> dict[str, Any]:
    from .. import backend as backend_mod
    from ..server.launcher import find_heidid

    native_error = backend_mod.native_import_error()
    try:
        selected = backend_mod.load().name
    except (ImportError, HeidiError) as exc:
        selected = f"unavailable: {exc}"
    report: dict[str, Any] = {
        "backend": selected,
        "heidi_backend_env": os.environ.get("HEIDI_BACKEND", "auto"),
        "heidi_cpp": "importable" if native_error is None else f"not importable: {native_error}",
        "heidid": find_heidid(),
        "python": sys.version.split()[0],
        "packages": {name: _package_version(name) for name in (
            "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "tensorboard",
            "safetensors", "gguf", "datasketch", "pyarrow")},
    }
    cuda: dict[str, Any] = {"available": False}
    if report["packages"]["torch"]:
        try:
            import torch

            cuda["available"] = bool(torch.cuda.is_available())
            if cuda["available"]:
                cuda["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception as exc:  # a broken torch install is worth reporting, not crashing on
            cuda["error"] = f"{type(exc).__name__}: {exc}"
    report["cuda"] = cuda
    report["qlora"] = bool(cuda["available"] and report["packages"]["bitsandbytes"])
    try:
        from ..ml.trainer import training_paths

        report["training"] = training_paths()
    except Exception as exc:
        report["training"] = {"error": {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}}
    try:
        from .. import sandbox

        report["sandbox"] = sandbox.describe()
    except Exception as exc:
        report["sandbox"] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"backend        {report['backend']} (HEIDI_BACKEND={report['heidi_backend_env']})")
    print(f"heidi_cpp      {report['heidi_cpp']}")
    print(f"heidid         {report['heidid'] or 'not found (HEIDID, beside heidi_cpp, the scripts directory, PATH)'}")
    print(f"python         {report['python']}")
    for name, version in report["packages"].items():
        print(f"{name:<14} {version or 'not installed'}")
    cuda = report["cuda"]
    print(f"cuda           {'available: ' + ', '.join(cuda.get('devices', [])) if cuda['available'] else 'not available'}"
          + (f" ({cuda['error']})" if "error" in cuda else ""))
    print(f"qlora (4-bit)  {'yes' if report['qlora'] else 'no (needs CUDA and bitsandbytes; LoRA is used)'}")
    for name, path in report["training"].items():
        print(f"train {name:<10}{'yes' if path['ok'] else 'no '} {path['detail']}")
    sandbox = report["sandbox"]
    if sandbox.get("isolation") is None:
        print(f"sandbox        REFUSES to run tests ({sandbox.get('error', 'unknown')})")
    else:
        print(f"sandbox        {sandbox['isolation']} (HEIDI_SANDBOX={sandbox['level']}), network "
              f"isolated: {'yes' if sandbox['network_isolated'] else 'no'}, filesystem: "
              f"{sandbox['filesystem']}, runs as {sandbox['runs_as']}")
    return EXIT_OK
