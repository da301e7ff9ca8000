"""The process runner (SPEC §7, Runner), over both backends."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from heidi_engine.errors import SpawnError


def process_gone(pid: int) -> bool:
    """True when pid no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)


def test_captures_output_and_exit_code(backend):
    result = backend.Subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    assert result.exit_code == 3 and result.signal == 0
    assert not result.timed_out and not result.truncated and not result.ok
    assert 0 < result.duration_s < 5
    assert backend.Subprocess.run(["true"], 10).ok


def test_signal_death_is_reported(backend):
    result = backend.Subprocess.run(["sh", "-c", "kill -KILL $$"], 10)
    assert result.signal == signal.SIGKILL
    assert result.exit_code == -signal.SIGKILL
    assert not result.ok


def test_deadline_holds_when_child_closes_its_pipes(backend):
    started = time.monotonic()
    result = backend.Subprocess.run(
        ["sh", "-c", "exec >&- 2>&-; sleep 30"], 0.5, kill_grace_s=0.5
    )
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.ok
    assert elapsed < 0.5 + 0.5 + 0.2
    assert result.signal == signal.SIGTERM


def test_child_ignoring_sigterm_is_killed_after_grace(backend):
    started = time.monotonic()
    result = backend.Subprocess.run(
        ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"],
        0.3,
        kill_grace_s=0.4,
    )
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert 0.65 <= elapsed < 0.3 + 0.4 + 0.2


def test_clean_exit_on_sigterm_still_counts_as_timeout(backend):
    script = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
    result = backend.Subprocess.run(["sh", "-c", script], 0.3, kill_grace_s=2.0)
    assert result.timed_out
    assert result.exit_code == 0
    assert not result.ok


def test_grandchildren_die_with_the_group_on_timeout(backend):
    result = backend.Subprocess.run(
        ["sh", "-c", "sleep 60 & echo $!; sleep 60 & echo $!; wait"], 0.5, kill_grace_s=0.5
    )
    assert result.timed_out
    pids = [int(line) for line in result.stdout.split()]
    assert len(pids) == 2
    assert all(wait_gone(pid) for pid in pids)


def test_leftover_group_members_are_killed_when_child_exits(backend):
    started = time.monotonic()
    result = backend.Subprocess.run(["sh", "-c", "sleep 60 & echo $!"], 10)
    assert result.ok
    assert time.monotonic() - started < 2  # the background sleep holding stdout is no obstacle
    assert wait_gone(int(result.stdout))


def test_child_is_reaped(backend):
    result = backend.Subprocess.run(["sh", "-c", "echo $$"], 10)
    pid = int(result.stdout)
    assert not Path(f"/proc/{pid}").exists() or process_gone(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # not ours to reap any more: it already was


def test_missing_binary_is_a_spawn_error(backend, tmp_path):
    with pytest.raises(SpawnError) as info:
        backend.Subprocess.run([str(tmp_path / "no-such-program")], 5)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, OSError)
    assert "No such file or directory" in str(info.value)
    with pytest.raises(SpawnError) as info:
        backend.Subprocess.run(["heidi-no-such-program-on-path"], 5)
    assert info.value.errno == errno.ENOENT


def test_not_executable_is_a_spawn_error(backend, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(SpawnError) as info:
        backend.Subprocess.run([str(script)], 5)
    assert info.value.errno == errno.EACCES
    with pytest.raises(SpawnError) as info:
        backend.Subprocess.run([str(tmp_path)], 5)
    assert info.value.errno == errno.EACCES


def test_an_executable_without_interpreter_line_is_enoexec(backend, tmp_path):
    # execvp would run it with /bin/sh; both runners exec it as it is.
    marker = tmp_path / "ran"
    script = tmp_path / "no-shebang"
    script.write_text(f"touch {marker}\n")
    script.chmod(0o755)
    with pytest.raises(SpawnError) as info:
        backend.Subprocess.run([str(script)], 5)
    assert info.value.errno == errno.ENOEXEC
    assert info.value.filename == str(script)
    assert not marker.exists()


def test_the_child_environment_is_exactly_the_one_given(backend):
    result = backend.Subprocess.run(["/usr/bin/env"], 5, env={"LC_ALL": "", "A": "b=c"})
    assert sorted(result.stdout.splitlines()) == [b"A=b=c", b"LC_ALL="]


def test_exit_127_is_not_a_spawn_error(backend):
    result = backend.Subprocess.run(["sh", "-c", "exit 127"], 5)
    assert result.exit_code == 127 and not result.ok


def test_bad_arguments_are_rejected(backend):
    with pytest.raises(ValueError, match="argv must not be empty"):
        backend.Subprocess.run([], 5)
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        backend.Subprocess.run(["true"], 0)


def test_huge_output_is_capped_without_deadlock(backend):
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = backend.Subprocess.run(
        ["sh", "-c", "head -c 200000000 /dev/zero; head -c 200000000 /dev/zero >&2"],
        60,
        max_output_bytes=1 << 20,
    )
    assert time.monotonic() - started < 30
    assert result.ok and result.truncated
    assert len(result.stdout) == 1 << 20 and len(result.stderr) == 1 << 20
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
    assert grown_mb < 64


def test_env_and_cwd_are_honoured(backend, tmp_path):
    result = backend.Subprocess.run(["/usr/bin/env"], 5, env={})
    assert result.ok and result.stdout == b""
    result = backend.Subprocess.run(["/usr/bin/env"], 5, env={"HEIDI_X": "1 2"})
    assert result.stdout == b"HEIDI_X=1 2\n"
    result = backend.Subprocess.run(["pwd"], 5, cwd=tmp_path)
    assert result.stdout.decode().strip() == str(tmp_path)


def test_path_lookup_uses_the_child_env(backend, tmp_path):
    program = tmp_path / "heidi-hello"
    program.write_text("#!/bin/sh\necho hello\n")
    program.chmod(0o755)
    result = backend.Subprocess.run(["heidi-hello"], 5, env={"PATH": str(tmp_path)})
    assert result.stdout == b"hello\n"


def test_many_threads_run_processes_at_once(backend):
    failures: list[str] = []

    def worker(n: int) -> None:
        for k in range(8):
            tag = f"{n}-{k}"
            result = backend.Subprocess.run(["sh", "-c", 'echo "$0"', tag], 20)
            if result.stdout != f"{tag}\n".encode() or not result.ok:
                failures.append(f"{tag}: {result!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_stdout_lines_arrive_while_the_child_runs(backend):
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    result = backend.Subprocess.run(
        ["sh", "-c", "echo first; sleep 0.6; printf 'second\\nthird'"],
        10,
        on_stdout_line=lambda line: seen.append((time.monotonic() - started, line)),
    )
    assert [line for _, line in seen] == ["first", "second", "third"]
    assert seen[0][0] < 0.4  # delivered live, not at the end
    assert result.stdout == b"first\nsecond\nthird"


def test_a_failing_line_callback_kills_the_child(backend):
    def explode(line: str) -> None:
        raise RuntimeError(f"bad line {line}")

    with pytest.raises(RuntimeError, match="bad line"):
        backend.Subprocess.run(["sh", "-c", "echo $$; exec sleep 60"], 30, on_stdout_line=explode)


def test_cancel_from_another_thread(backend):
    token = backend.CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    result = backend.Subprocess.run(["sleep", "60"], 30, kill_grace_s=0.5, cancel=token)
    assert result.cancelled and not result.timed_out and not result.ok
    assert time.monotonic() - started < 0.3 + 0.5 + 0.3
    assert token.cancelled


def test_cancelled_token_does_not_spawn(backend, tmp_path):
    token = backend.CancelToken()
    token.cancel()
    marker = tmp_path / "ran"
    result = backend.Subprocess.run(["touch", str(marker)], 5, cancel=token)
    assert result.cancelled and not result.ok
    assert not marker.exists()


RUNNER_SCRIPT = textwrap.dedent(
    """
    import sys
    from heidi_engine import backend
    runner = backend.load(sys.argv[1]).Subprocess
    runner.run(["sh", "-c", "echo $$; exec sleep 60"], 60,
               on_stdout_line=lambda line: print(line, flush=True))
    """
)


def test_children_die_when_the_runner_is_killed(backend):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER_SCRIPT, backend.name],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        child_pid = int(runner.stdout.readline())
        assert not process_gone(child_pid)
        runner.kill()
        runner.wait()
        assert wait_gone(child_pid, within_s=3.0)
    finally:
        runner.kill()
        runner.wait()
        runner.stdout.close()


def test_python_runner_refuses_to_start_a_child_it_cannot_bind(pure, tmp_path, monkeypatch):
    """No death binding is possible (here: the helper's interpreter has no ctypes): a clear
    SpawnError, and the program never runs."""
    from heidi_engine._py import subprocess_runner

    no_ctypes = tmp_path / "python-without-ctypes"
    no_ctypes.write_text(
        "#!/bin/sh\n"  # argv: -I -S -c CODE args...: CODE runs with ctypes unimportable
        'code="$4"; shift 4\n'
        f'exec {sys.executable} -I -S -c "import sys; sys.modules[\'ctypes\'] = None; '
        'exec(sys.argv.pop(1))" "$code" "$@"\n')
    no_ctypes.chmod(0o755)
    monkeypatch.setattr(subprocess_runner, "_helper_python", lambda: str(no_ctypes))
    marker = tmp_path / "ran"
    with pytest.raises(SpawnError) as info:
        pure.Subprocess.run(["/usr/bin/touch", str(marker)], 5)
    assert info.value.errno == errno.ENOSYS
    assert "cannot bind the child's death to the runner" in str(info.value)
    assert not marker.exists()
