"""Teachers: who answers the tasks (``HEIDI_TEACHER``).

- ``reference``: the task's own canonical solution (no model).
- ``mock``: deterministic model-free answers shaped like a chat model's (prose and a
  code fence). Most are correct; a seeded share (:data:`MOCK_WRONG_RATE`) is
  deliberately wrong, so the test stage has something to reject.
- ``openai``: an OpenAI-compatible chat-completions endpoint through the engine's
  :class:`AsyncCollector` (``HEIDI_TEACHER_BASE_URL``, ``HEIDI_TEACHER_MODEL``,
  ``HEIDI_TEACHER_API_KEY_ENV``, ``HEIDI_TEACHER_CONCURRENCY`` requests at a time).
- ``local``: a transformers model on this machine (``HEIDI_TEACHER_MODEL``, else
  ``BASE_MODEL``), greedy decoding.

Every teacher answers tasks (:meth:`Teacher.answer`); all but ``reference`` also write
free text for a prompt (:meth:`Teacher.write`), which the ``llm_gen`` task source uses
to have the teacher invent tasks.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .errors import ConfigError
from .prompts import chat_messages, extract_code, teacher_instruction
from .tasks.model import Task

TEACHER_MODES = ("reference", "openai", "local", "mock")
MOCK_WRONG_RATE = 0.2
OPENAI_MAX_TOKENS = 1024
OPENAI_RETRIES = 3
OPENAI_TIMEOUT_S = 120.0
LOCAL_MAX_NEW_TOKENS = 384


@dataclass(frozen=True)
class Answer:
    """One teacher reply: the raw text and, for a task, the completion read from it."""

    ok: bool
    text: str
    completion: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Teacher:
    name = ""
    batch_size = 64  # tasks per call, so the generate stage can report progress between calls

    def write(self, prompts: Sequence[str]) -> list[Answer]:
        """Free-text replies to ``prompts``, in order."""
        raise ConfigError(
            f"HEIDI_TEACHER={self.name} cannot write free text "
            "(needed by HEIDI_TASK_SOURCE=llm_gen "
            "and by revisiting tasks without a procedural family); use openai, local or mock"
        )

    @property
    def writes_text(self) -> bool:
        return type(self).write is not Teacher.write

    def answer(self, tasks: Sequence[Task]) -> list[Answer]:
        """Answers to ``tasks`` with ``completion`` continuing each task's prompt."""
        replies = self.write([teacher_instruction(task) for task in tasks])
        return [
            replace(reply, completion=extract_code(reply.text, task.entry_point, task.prompt))
            if reply.ok
            else reply
            for task, reply in zip(tasks, replies, strict=False)
        ]

    def close(self) -> None:
        """Release what the teacher holds (connections, model memory)."""


def _words(text: str) -> int:
    return len(text.split())


class ReferenceTeacher(Teacher):
    name = "reference"
    batch_size = 1000

    def answer(self, tasks: Sequence[Task]) -> list[Answer]:
        return [
            Answer(ok=True, text=t.canonical_solution, completion=t.canonical_solution)
            for t in tasks
        ]


class MockTeacher(Teacher):
    name = "mock"
    batch_size = 1000

    def __init__(self, seed: int, wrong_rate: float = MOCK_WRONG_RATE) -> None:
        self.seed = seed
        self.wrong_rate = wrong_rate

    def _rng(self, key: str) -> random.Random:
        return random.Random(f"heidi-mock:{self.seed}:{key}")

    def is_wrong(self, task: Task) -> bool:
        return self._rng(task.task_id).random() < self.wrong_rate

    def _body(self, task: Task) -> str:
        if not self.is_wrong(task):
            return task.canonical_solution
        if task.family:
            from .tasks.procedural import wrong_solution

            return wrong_solution(task)
        return "    return None\n"

    def answer(self, tasks: Sequence[Task]) -> list[Answer]:
        answers = []
        for task in tasks:
            code = task.prompt + self._body(task)
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
                )
            )
        return answers

    def write(self, prompts: Sequence[str]) -> list[Answer]:
        """Invents a task for each prompt: a procedural training task, written as JSON."""
        from .tasks.llm_gen import mock_invention

        replies = []
        for prompt in prompts:
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


class OpenAITeacher(Teacher):
    name = "openai"

    def __init__(self, config: object, *, backend: object = None) -> None:
        base_url = getattr(config, "teacher_base_url", "")
        model = getattr(config, "teacher_model", "")
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
        try:
            provider = backend.OpenAIProvider(
                base_url,
                model,
                api_key_env=getattr(config, "teacher_api_key_env", "OPENAI_API_KEY"),
                timeout_s=OPENAI_TIMEOUT_S,
                max_tokens=OPENAI_MAX_TOKENS,
                temperature=0.0,
            )
        except ValueError as exc:
            raise ConfigError(
                f"invalid value for HEIDI_TEACHER_BASE_URL: {base_url!r} ({exc})"
            ) from None
        concurrency = int(getattr(config, "teacher_concurrency", 8))
        self.collector = backend.AsyncCollector(
            provider, concurrency=concurrency, retries=OPENAI_RETRIES, timeout_s=OPENAI_TIMEOUT_S
        )
        self.batch_size = max(concurrency * 4, 16)

    def write(self, prompts: Sequence[str]) -> list[Answer]:
        results = self.collector.generate_batch(list(prompts))
        return [
            Answer(
                ok=bool(r.ok),
                text=r.text if r.ok else "",
                error="" if r.ok else (r.error or "request failed"),
                prompt_tokens=int(r.prompt_tokens),
                completion_tokens=int(r.completion_tokens),
            )
            for r in results
        ]

    def close(self) -> None:
        self.collector.stop()


class LocalTeacher(Teacher):
    """A transformers model on this machine; torch is imported only when it is used."""

    name = "local"
    batch_size = 8

    def __init__(self, config: object) -> None:
        self.model_name = getattr(config, "teacher_model", "") or getattr(config, "base_model", "")
        if not self.model_name:
            raise ConfigError("HEIDI_TEACHER=local needs HEIDI_TEACHER_MODEL or BASE_MODEL")
        self.seed = int(getattr(config, "seed", 42))
        self._loaded: tuple | None = None

    def _model(self) -> tuple:
        if self._loaded is None:
            from . import ml

            self._loaded = ml.load_model(self.model_name, seed=self.seed)
        return self._loaded

    def _render(self, tokenizer: object, prompt: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(  # type: ignore[attr-defined]
                chat_messages(prompt), tokenize=False, add_generation_prompt=True
            )
        return prompt + "\n"

    def write(self, prompts: Sequence[str]) -> list[Answer]:
        from . import ml

        model, tokenizer = self._model()
        rendered = [self._render(tokenizer, p) for p in prompts]
        texts = ml.generate(model, tokenizer, rendered, LOCAL_MAX_NEW_TOKENS)

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

        return [
            Answer(ok=True, text=text, prompt_tokens=count(r), completion_tokens=count(text))
            for r, text in zip(rendered, texts, strict=False)
        ]

    def close(self) -> None:
        self._loaded = None


def check_teacher_mode(mode: str) -> str:
    if mode not in TEACHER_MODES:
        raise ConfigError(
            f"invalid value for HEIDI_TEACHER: {mode!r} (valid: {', '.join(TEACHER_MODES)})"
        )
    return mode


def make_teacher(config: object, *, backend: object = None) -> Teacher:
    """The teacher ``config.teacher`` names; unknown modes fail listing the valid ones."""
    mode = check_teacher_mode(getattr(config, "teacher", "reference"))
    if mode == "reference":
        return ReferenceTeacher()
    if mode == "mock":
        return MockTeacher(int(getattr(config, "seed", 42)))
    if mode == "openai":
        return OpenAITeacher(config, backend=backend)
    return LocalTeacher(config)
