"""``llm_gen``: the teacher invents new tasks with their tests (self-instruct style).

The teacher is asked for one JSON object (``entry_point``, ``description``,
``solution``, ``tests``). Replies are parsed leniently: the JSON may sit in a fence or
in prose, key names may vary a little, and a reply with fenced code blocks instead of
JSON (a solution block and a ``check`` block) is understood too. The invented solution
is the teacher's answer; the test stage then decides whether it passes the invented
tests.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
import textwrap

from ..prompts import _THINK, code_blocks, extract_code, top_level_function
from .model import Task

TOPICS = (
    "string manipulation",
    "list processing",
    "dictionaries and counting",
    "integer arithmetic",
    "parsing a small text format",
    "recursion",
    "sorting with a custom rule",
    "calendar dates",
    "bit manipulation",
    "matrices as lists of lists",
    "searching in sequences",
    "sets",
    "simple simulations",
    "number theory",
    "intervals and ranges",
    "text formatting",
)

_KEYS = {
    "entry_point": ("entry_point", "function_name", "name", "function"),
    "description": ("description", "task", "problem", "instruction", "prompt"),
    "solution": ("solution", "code", "implementation", "reference_solution"),
    "tests": ("tests", "test", "check", "unit_tests", "test_code"),
}


class InventionError(ValueError):
    """A teacher's reply does not contain a usable task."""


def invention_prompt(topic: str, *, example: Task | None = None) -> str:
    """The self-instruct request for one new task about ``topic``."""
    if example is not None:
        intro = (
            "Here is a Python programming task a student failed:\n\n"
            f"```python\n{example.prompt.rstrip()}\n```\n\n"
            "Invent a NEW task that practises the same skill but differs in its details "
            "(other constants, operation or data)."
        )
    else:
        intro = f"Invent a new, self-contained Python programming task about {topic}."
    return (
        f"{intro} The task asks for one function that uses only the standard library, "
        "with no input/output or randomness.\n\n"
        "Reply with a single JSON object in a ```json code block with these keys:\n"
        '- "entry_point": the function name\n'
        '- "description": what the function must do, precisely, in one paragraph\n'
        '- "solution": the complete, correct function (signature, docstring with an '
        "example, body)\n"
        '- "tests": Python code defining `def check(candidate):` with at least 5 assert '
        "statements calling candidate(...), including edge cases\n"
    )


def _lookup(obj: dict, role: str) -> str:
    for key in _KEYS[role]:
        value = obj.get(key)
        if isinstance(value, list):
            value = "\n".join(str(v) for v in value)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _json_object(text: str) -> dict | None:
    # A structured reply (response_format json_object) is the object itself.
    candidates = [text.strip()] if text.lstrip().startswith("{") else []
    candidates += [code for lang, code in code_blocks(text) if lang in ("json", "")]
    if "{" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for candidate in candidates:
        try:
            obj = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _from_blocks(text: str) -> dict:
    blocks = [code for lang, code in code_blocks(text) if lang != "json"]
    tests = next((code for code in blocks if "def check(" in code), "")
    solution = next((code for code in blocks if "def " in code and code is not tests), "")
    if not tests:  # bare asserts in a block of their own
        tests = next((code for code in blocks if "assert " in code and code is not solution), "")
    prose = re.sub(r"```.*?(```|\Z)", "", text, flags=re.DOTALL).strip()
    return {
        "solution": solution,
        "tests": tests,
        "description": prose.split("\n\n")[0] if prose else "",
    }


def _tests_as_check(tests: str, entry_point: str) -> str:
    """``tests`` as a ``check(candidate)`` function (bare asserts are wrapped in one)."""
    tests = textwrap.dedent(tests).strip("\n") + "\n"
    if "def check(" in tests:
        return tests
    asserts = [line for line in tests.splitlines() if line.strip().startswith("assert ")]
    if not asserts:
        return ""
    body = "".join(
        "    " + re.sub(rf"\b{re.escape(entry_point)}\(", "candidate(", line.strip()) + "\n"
        for line in asserts
    )
    return "def check(candidate):\n" + body


def parse_invented_task(text: str, *, topic: str = "") -> tuple[Task, str]:
    """``(task, completion)`` from a teacher's reply; :class:`InventionError` if unusable."""
    text = _THINK.sub("", text)
    obj = _json_object(text) or _from_blocks(text)
    solution = textwrap.dedent(_lookup(obj, "solution")).strip("\n") + "\n"
    if not solution.strip():
        raise InventionError("no solution code in the reply")
    entry_point = _lookup(obj, "entry_point").strip().split("(")[0].strip()
    named = top_level_function(solution, entry_point) if entry_point not in ("", "check") else None
    function = named or top_level_function(solution)
    if function is None:
        raise InventionError("the solution does not define a function that parses")
    entry_point = function.name
    tests = _tests_as_check(_lookup(obj, "tests"), entry_point)
    if "assert" not in tests:
        raise InventionError("no tests (check(candidate) with asserts) in the reply")
    try:
        ast.parse(tests)
    except SyntaxError as exc:
        raise InventionError(f"the tests do not parse: {exc.msg}") from None
    description = " ".join(_lookup(obj, "description").split())

    lines = solution.splitlines(keepends=True)
    first = function.body[0]
    has_doc = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    start = function.lineno - 1
    if has_doc:
        prompt = "".join(lines[start : first.end_lineno])
    else:
        header = "".join(lines[start : function.body[0].lineno - 1])
        doc = textwrap.indent(textwrap.fill(description or f"Implement {entry_point}.", 84), "    ")
        prompt = header + f'    """\n{doc.replace(chr(92), chr(92) * 2)}\n    """\n'
    imports = "".join(
        "".join(lines[n.lineno - 1 : n.end_lineno])
        for n in ast.parse(solution).body
        if isinstance(n, (ast.Import, ast.ImportFrom))
    )
    prompt = (imports + "\n\n" if imports else "") + prompt
    completion = extract_code(f"```python\n{solution}```", entry_point, prompt)
    digest = hashlib.sha256((prompt + "\0" + tests).encode()).hexdigest()[:16]
    task = Task(
        task_id=f"llm/{digest}",
        prompt=prompt,
        canonical_solution=completion,
        test=tests,
        entry_point=entry_point,
        metadata={"source": "llm_gen", "description": description, "topic": topic},
    )
    return task, completion


def mock_invention(rng: random.Random, *, wrong: bool) -> str:
    """A model-free stand-in for a teacher's invention reply (used by the mock teacher)."""
    from . import procedural

    task = procedural.generate(rng.randrange(1 << 30), 1, "train")[0]
    body = procedural.wrong_solution(task) if wrong else task.canonical_solution
    reply = {
        "entry_point": task.entry_point,
        "description": task.metadata["family"].replace("_", " "),
        "solution": task.prompt + body,
        "tests": task.test,
    }
    return "Here is a new task:\n\n```json\n" + json.dumps(reply, indent=2) + "\n```\n"
