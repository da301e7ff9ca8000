"""Teachers: who answers the tasks (``HEIDI_TEACHER``).

- ``reference``: the task's own canonical solution (no model).
- ``mock``: deterministic model-free answers shaped like a chat model's (prose and a
  code fence). Most are correct; a seeded share (:data:`MOCK_WRONG_RATE`) is
  deliberately wrong, so the test stage has something to reject.
- ``openai``: an OpenAI-compatible chat-completions endpoint through the engine's
  :class:`AsyncCollector` (``HEIDI_TEACHER_BASE_URL``, ``HEIDI_TEACHER_MODEL``,
  ``HEIDI_TEACHER_API_KEY_ENV``, ``HEIDI_TEACHER_CONCURRENCY`` requests at a time).
- ``local``: a transformers model on this machine (``HEIDI_TEACHER_MODEL``, else
  ``BASE_MODEL``), greedy decoding, at most ``min(384, HEIDI_TEACHER_MAX_TOKENS)`` new
  tokens per answer.

Every teacher answers tasks (:meth:`Teacher.answer`, ``samples`` answers per task); all
but ``reference`` also write free text for a prompt (:meth:`Teacher.write`), which the
``llm_gen`` task source uses to have the teacher invent tasks. The model teachers
(``openai``, ``local``) store each answer in the response cache
(:mod:`heidi_engine.teacher_cache`) as it arrives and never ask twice for an answer the
cache holds. Every model teacher sends the same system prompt
(``HEIDI_TEACHER_SYSTEM_PROMPT``, else :data:`~heidi_engine.prompts.SYSTEM_PROMPT`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ._py.config import Config
from .errors import ConfigError
from .prompts import SYSTEM_PROMPT, chat_messages, extract_code, teacher_instruction
from .tasks.model import Task
from .teacher_cache import DEFAULT_RELATIVE_PATH, CachedAnswer, ResponseCache, request_key

TEACHER_MODES = Config.choices("teacher")
MOCK_WRONG_RATE = 0.2
OPENAI_RETRIES = 3
OPENAI_TIMEOUT_S = 120.0
LOCAL_MAX_NEW_TOKENS = 384
JSON_OBJECT = {"type": "json_object"}
# What servers answer when a request field is not accepted (OpenAI, vLLM, llama.cpp, Ollama).
_UNSUPPORTED = re.compile(
    r"unsupported|not supported|unrecognized|unknown (?:parameter|field|argument)|"
    r"extra[ _](?:fields|inputs|forbidden)|not permitted|additional properties",
    re.IGNORECASE,
)


def unsupported_parameter(error: str) -> bool:
    """Whether a request error means "the server does not accept this parameter"."""
    return error.startswith(("http 400", "http 422")) and bool(_UNSUPPORTED.search(error))


@dataclass(frozen=True)
class Request:
    """One prompt for a teacher. ``task`` (a task id or a task-invention slot) and
    ``sample`` (0..HEIDI_TEACHER_SAMPLES-1) are part of the cache key; ``structured``
    asks for one JSON object (``response_format`` where the server supports it)."""

    prompt: str
    task: str = ""
    sample: int = 0
    structured: bool = False


@dataclass(frozen=True)
class Answer:
    """One teacher reply: the raw text and, for a task, the completion read from it.
    ``cached``: taken from the response cache (nothing was paid for it now)."""

    ok: bool
    text: str
    completion: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    sample: int = 0


OnAnswer = Callable[[int, Answer], None]


class Teacher:
    name = ""
    batch_size = 64  # tasks per call, so the generate stage can report progress between calls
    cache: ResponseCache | None = None

    def identity(self) -> dict | None:
        """What besides the request determines an answer (model, settings, seed); None
        for a teacher that costs nothing and is never cached."""
        return None

    def _write(self, requests: Sequence[Request], on_answer: OnAnswer | None) -> list[Answer]:
        """Replies to ``requests`` in order, calling ``on_answer(i, answer)`` as each arrives."""
        raise ConfigError(
            f"HEIDI_TEACHER={self.name} cannot write free text "
            "(needed by HEIDI_TASK_SOURCE=llm_gen "
            "and by revisiting tasks without a procedural family); use openai, local or mock"
        )

    @property
    def writes_text(self) -> bool:
        return type(self)._write is not Teacher._write

    def write(self, requests: Sequence[Request | str]) -> list[Answer]:
        """Free-text replies, in order. With a cache, answers it holds are not asked for
        again, and each new answer is stored durably the moment it arrives."""
        requests = [r if isinstance(r, Request) else Request(r) for r in requests]
        identity = self.identity() if self.cache is not None else None
        if identity is None:
            return self._write(requests, None)
        cache = self.cache
        assert cache is not None
        keys = [request_key(identity, r.task, r.prompt, r.sample) for r in requests]
        results: list[Answer | None] = [None] * len(requests)
        first: dict[str, int] = {}  # a key asked twice in one call is sent once
        send: list[int] = []
        for i, key in enumerate(keys):
            hit = cache.get(key)
            if hit is not None:
                results[i] = Answer(True, hit.text, prompt_tokens=hit.prompt_tokens,
                                    completion_tokens=hit.completion_tokens, cached=True)
            elif key not in first:
                first[key] = i
                send.append(i)

        def store(j: int, answer: Answer) -> None:
            if answer.ok:
                request = requests[send[j]]
                cache.put(keys[send[j]],
                          CachedAnswer(answer.text, answer.prompt_tokens, answer.completion_tokens),
                          task=request.task, sample=request.sample,
                          model=str(identity.get("model", "")))

        for i, answer in zip(send, self._write([requests[i] for i in send], store), strict=True):
            results[i] = answer
        for i, key in enumerate(keys):
            if results[i] is None:
                results[i] = replace(results[first[key]], cached=True)  # type: ignore[arg-type]
        return [r for r in results if r is not None]

    def answer(self, tasks: Sequence[Task], samples: int = 1) -> list[Answer]:
        """``samples`` answers per task (task by task), ``completion`` continuing each
        task's prompt."""
        requests = [Request(teacher_instruction(t), t.task_id, s)
                    for t in tasks for s in range(samples)]
        replies = self.write(requests)
        return [
            replace(reply, sample=request.sample,
                    completion=extract_code(reply.text, task.entry_point, task.prompt))
            if reply.ok
            else replace(reply, sample=request.sample)
            for task, request, reply in zip(
                [t for t in tasks for _ in range(samples)], requests, replies, strict=True
            )
        ]

    def close(self) -> None:
        """Release what the teacher holds (connections, model memory, the cache)."""
        if self.cache is not None:
            self.cache.close()


def _words(text: str) -> int:
    return len(text.split())


class ReferenceTeacher(Teacher):
    name = "reference"
    batch_size = 1000

    def answer(self, tasks: Sequence[Task], samples: int = 1) -> list[Answer]:
        return [
            Answer(ok=True, text=t.canonical_solution, completion=t.canonical_solution, sample=s)
            for t in tasks
            for s in range(samples)
        ]


class MockTeacher(Teacher):
    name = "mock"
    batch_size = 1000

    def __init__(self, seed: int, wrong_rate: float = MOCK_WRONG_RATE) -> None:
        self.seed = seed
        self.wrong_rate = wrong_rate

    def _rng(self, key: str) -> random.Random:
        return random.Random(f"heidi-mock:{self.seed}:{key}")

    def is_wrong(self, task: Task, sample: int = 0) -> bool:
        key = task.task_id if sample == 0 else f"{task.task_id}#{sample}"
        return self._rng(key).random() < self.wrong_rate

    def _body(self, task: Task, sample: int) -> str:
        if not self.is_wrong(task, sample):
            return task.canonical_solution
        if task.family:
            from .tasks.procedural import wrong_solution

            return wrong_solution(task)
        return "    return None\n"

    def answer(self, tasks: Sequence[Task], samples: int = 1) -> list[Answer]:
        answers = []
        for task, sample in ((t, s) for t in tasks for s in range(samples)):
            code = task.prompt + self._body(task, sample)
            text = (
                f"Here is an implementation of `{task.entry_point}`:\n\n"
                f"```python\n{code.rstrip()}\n```\n"
            )
            answers.append(
                Answer(
                    ok=True,
                    text=text,
                    completion=extract_code(text, task.entry_point, task.prompt),
                    prompt_tokens=_words(teacher_instruction(task)),
                    completion_tokens=_words(text),
                    sample=sample,
                )
            )
        return answers

    def _write(self, requests: Sequence[Request], on_answer: OnAnswer | None) -> list[Answer]:
        """Invents a task for each prompt: a procedural training task, written as JSON."""
        from .tasks.llm_gen import mock_invention

        replies = []
        for prompt in (r.prompt for r in requests):
            key = hashlib.sha256(prompt.encode()).hexdigest()
            text = mock_invention(
                self._rng(key), wrong=self._rng(key + ":wrong").random() < self.wrong_rate
            )
            replies.append(
                Answer(
                    ok=True, text=text, prompt_tokens=_words(prompt), completion_tokens=_words(text)
                )
            )
        return replies


def system_prompt_of(config: Config) -> str:
    """The system prompt every model teacher sends."""
    return config.teacher_system_prompt or SYSTEM_PROMPT


def extra_body_of(config: Config) -> dict:
    text = config.teacher_extra_body
    if not text:
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid value for HEIDI_TEACHER_EXTRA_BODY: {text!r} (not JSON: {exc.msg})"
        ) from None
    if not isinstance(body, dict):
        raise ConfigError(
            f"invalid value for HEIDI_TEACHER_EXTRA_BODY: {text!r} (expected a JSON object)"
        )
    return body


class OpenAITeacher(Teacher):
    name = "openai"

    def __init__(self, config: Config, *, backend: object = None) -> None:
        base_url = config.teacher_base_url
        model = config.teacher_model
        if not base_url:
            raise ConfigError(
                "HEIDI_TEACHER=openai needs HEIDI_TEACHER_BASE_URL (e.g. http://127.0.0.1:8000/v1)"
            )
        if not model:
            raise ConfigError(
                "HEIDI_TEACHER=openai needs HEIDI_TEACHER_MODEL (the served model's name)"
            )
        if backend is None:
            from .backend import load

            backend = load()
        self.model = model
        extra_body = extra_body_of(config)
        self.settings = {
            "max_tokens": config.teacher_max_tokens,
            "token_field": config.teacher_token_field,
            "temperature": config.teacher_temperature,
            "top_p": config.teacher_top_p,
            "system_prompt": system_prompt_of(config),
        }
        self.seed = config.seed
        self.extra_body = extra_body
        self.response_format = config.teacher_response_format
        concurrency = config.teacher_concurrency

        def collector(body: dict) -> object:
            try:
                provider = backend.OpenAIProvider(
                    base_url,
                    model,
                    api_key_env=config.teacher_api_key_env,
                    timeout_s=OPENAI_TIMEOUT_S,
                    extra_body=body or None,
                    **self.settings,
                )
            except ValueError as exc:
                raise ConfigError(
                    f"invalid value for HEIDI_TEACHER_BASE_URL: {base_url!r} ({exc})"
                ) from None
            return backend.AsyncCollector(
                provider, concurrency=concurrency, retries=OPENAI_RETRIES,
                timeout_s=OPENAI_TIMEOUT_S, rpm=config.teacher_rpm, tpm=config.teacher_tpm,
            )

        self.collector = collector(extra_body)
        self.structured_collector = (
            collector({"response_format": JSON_OBJECT, **extra_body})
            if self.response_format != "off" and "response_format" not in extra_body
            else None
        )
        self.batch_size = max(concurrency * 4, 16)

    def identity(self) -> dict:
        return {"teacher": self.name, "model": self.model, **self.settings,
                "extra_body": self.extra_body, "seed": self.seed}

    def _batch(self, collector: object, requests: Sequence[Request], indices: list[int],
               on_answer: OnAnswer | None) -> list[Answer]:
        def convert(result: object) -> Answer:
            return Answer(
                ok=bool(result.ok),  # type: ignore[attr-defined]
                text=result.text if result.ok else "",  # type: ignore[attr-defined]
                error="" if result.ok else (result.error or "request failed"),  # type: ignore[attr-defined]
                prompt_tokens=int(result.prompt_tokens),  # type: ignore[attr-defined]
                completion_tokens=int(result.completion_tokens),  # type: ignore[attr-defined]
            )

        def arrived(j: int, result: object) -> None:
            if on_answer is not None:
                on_answer(indices[j], convert(result))

        results = collector.generate_batch(  # type: ignore[attr-defined]
            [requests[i].prompt for i in indices], on_result=arrived
        )
        return [convert(r) for r in results]

    def _write(self, requests: Sequence[Request], on_answer: OnAnswer | None) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(requests)
        structured = [i for i, r in enumerate(requests)
                      if r.structured and self.structured_collector is not None]
        plain = [i for i in range(len(requests)) if i not in set(structured)]
        if structured:
            replies = self._batch(self.structured_collector, requests, structured, on_answer)
            refused = [i for i, a in zip(structured, replies, strict=True)
                       if not a.ok and unsupported_parameter(a.error)]
            if refused and self.response_format == "auto":
                self.structured_collector = None  # the server has no response_format: ask in prose
                plain = sorted(plain + refused)
            for i, a in zip(structured, replies, strict=True):
                if i not in refused or self.response_format != "auto":
                    answers[i] = a
        if plain:
            for i, a in zip(plain, self._batch(self.collector, requests, plain, on_answer),
                            strict=True):
                answers[i] = a
        final = [a for a in answers if a is not None]
        refusal = next((a.error for a in final if not a.ok and unsupported_parameter(a.error)), "")
        if refusal:
            raise ConfigError(
                "the teacher server refused a request parameter as unsupported "
                f"({refusal}); check HEIDI_TEACHER_TOKEN_FIELD (max_tokens or "
                "max_completion_tokens), HEIDI_TEACHER_TEMPERATURE, HEIDI_TEACHER_TOP_P, "
                "HEIDI_TEACHER_RESPONSE_FORMAT and HEIDI_TEACHER_EXTRA_BODY"
            )
        return final

    def close(self) -> None:
        self.collector.stop()
        if self.structured_collector is not None:
            self.structured_collector.stop()
        super().close()


class LocalTeacher(Teacher):
    """A transformers model on this machine; torch is imported only when it is used."""

    name = "local"
    batch_size = 8

    def __init__(self, config: Config) -> None:
        self.model_name = config.teacher_model or config.base_model
        if not self.model_name:
            raise ConfigError("HEIDI_TEACHER=local needs HEIDI_TEACHER_MODEL or BASE_MODEL")
        self.seed = config.seed
        self.system_prompt = system_prompt_of(config)
        self.temperature = config.teacher_temperature
        self.top_p = config.teacher_top_p
        self.max_new_tokens = min(LOCAL_MAX_NEW_TOKENS, config.teacher_max_tokens)
        self._loaded: tuple | None = None

    def identity(self) -> dict:
        decoding = ("greedy" if self.temperature == 0
                    else {"temperature": self.temperature, "top_p": self.top_p})
        return {"teacher": self.name, "model": self.model_name, "system_prompt": self.system_prompt,
                "max_new_tokens": self.max_new_tokens, "decoding": decoding, "seed": self.seed}

    def _model(self) -> tuple:
        if self._loaded is None:
            from . import ml

            self._loaded = ml.load_model(self.model_name, seed=self.seed)
        return self._loaded

    def _render(self, tokenizer: object, prompt: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(  # type: ignore[attr-defined]
                chat_messages(prompt, self.system_prompt), tokenize=False,
                add_generation_prompt=True
            )
        return prompt + "\n"

    def _write(self, requests: Sequence[Request], on_answer: OnAnswer | None) -> list[Answer]:
        from . import ml

        model, tokenizer = self._model()
        rendered = [self._render(tokenizer, r.prompt) for r in requests]
        if self.temperature == 0:
            texts = ml.generate(model, tokenizer, rendered, self.max_new_tokens)
        else:
            # Sampled: each sample index draws from its own seeded generator, so sample k of
            # a prompt is reproducible and differs from sample j.
            texts = [""] * len(requests)
            for sample in sorted({r.sample for r in requests}):
                rows = [i for i, r in enumerate(requests) if r.sample == sample]
                drawn = ml.generate(model, tokenizer, [rendered[i] for i in rows],
                                    self.max_new_tokens, temperature=self.temperature,
                                    top_p=self.top_p, seed=self.seed * 1000 + sample)
                for i, text in zip(rows, drawn, strict=True):
                    texts[i] = text

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

        answers = [
            Answer(ok=True, text=text, prompt_tokens=count(r), completion_tokens=count(text))
            for r, text in zip(rendered, texts, strict=False)
        ]
        for i, answer in enumerate(answers):
            if on_answer is not None:
                on_answer(i, answer)
        return answers

    def close(self) -> None:
        self._loaded = None
        super().close()


def make_teacher(config: Config, *, backend: object = None) -> Teacher:
    """The teacher ``config.teacher`` names."""
    mode = config.teacher
    if mode == "reference":
        return ReferenceTeacher()
    if mode == "mock":
        return MockTeacher(config.seed)
    teacher: Teacher = (
        OpenAITeacher(config, backend=backend) if mode == "openai" else LocalTeacher(config)
    )
    if config.teacher_cache:
        try:
            teacher.cache = ResponseCache(cache_path(config))
        except BaseException:
            teacher.close()
            raise
    return teacher


def cache_path(config: Config) -> Path:
    """``HEIDI_TEACHER_CACHE_FILE``, else ``OUT_DIR/cache/teacher_responses.jsonl``."""
    if config.teacher_cache_file:
        return Path(config.teacher_cache_file)
    return Path(config.out_dir) / DEFAULT_RELATIVE_PATH
