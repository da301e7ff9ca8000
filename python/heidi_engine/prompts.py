"""What the teacher and the student are shown, and how answers are read back.

Teacher side
    :func:`teacher_instruction` is the text shown to the teacher (stored as the sample's
    ``instruction``); :func:`chat_messages` wraps it for chat-completions APIs.
    :func:`extract_code` turns a real instruct model's answer (prose, code fences with or
    without a language, a whole function or just its body) into a *completion* that
    continues the task's ``prompt``, so ``prompt + completion`` is the program.

Student side (used by the train and eval stages)
    The student is trained and evaluated as a code-completion model, HumanEval style:

    - :func:`student_prompt` is the task's ``prompt`` (signature plus docstring). When a
      sample has no prompt code, its instruction is written as ``#`` comment lines
      followed by a blank line, and the completion is the whole solution.
    - :func:`format_training_text` is ``student_prompt(sample) + sample["completion"]``,
      with the completion ending in exactly one newline. The loss may be restricted to the
      completion: its character offset is ``len(student_prompt(sample))``.
    - :func:`stop_at_toplevel` cuts a generated continuation where the function ends
      (the first non-indented, non-blank line), the usual HumanEval stop rule.
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings
from collections.abc import Mapping

SYSTEM_PROMPT = (
    "You are an expert Python programmer. You write correct, simple, self-contained "
    "Python 3 code using only the standard library."
)

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def _field(task: object, name: str) -> str:
    if isinstance(task, Mapping):
        return str(task.get(name) or "")
    return str(getattr(task, name, "") or "")


def teacher_instruction(task: object) -> str:
    """The instruction shown to the teacher for a task (a Task or a sample mapping)."""
    prompt = _field(task, "prompt")
    entry_point = _field(task, "entry_point")
    if prompt.strip():
        return (
            f"Complete the following Python function `{entry_point}`. Reply with the complete "
            "function (signature included) in a single ```python code block, without "
            "explanations or example usage.\n\n"
            f"```python\n{prompt.rstrip()}\n```\n"
        )
    metadata = (
        task.get("metadata", {}) if isinstance(task, Mapping) else getattr(task, "metadata", {})
    )
    description = (metadata or {}).get("description") or _field(task, "instruction")
    return (
        f"Write a Python function `{entry_point}` for this task:\n\n{description.strip()}\n\n"
        "Reply with the complete function in a single ```python code block."
    )


def chat_messages(instruction: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat every model teacher is shown (and the export's ``messages`` prompt)."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": instruction},
    ]


# --- parsing answers ----------------------------------------------------------------


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block; an unterminated last fence counts."""
    return [(lang.lower(), code) for lang, code in _FENCE.findall(text)]


def _pick_code(text: str, entry_point: str) -> str:
    text = _THINK.sub("", text)
    head, fence, _ = text.partition("```")
    if fence and re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", head, re.MULTILINE):
        # The answer began inside a code block (a chat template can leave one open) and
        # closes a fence it never opened: the code is what precedes it.
        return head
    blocks = code_blocks(text)
    if not blocks:
        return text
    defining = [
        code for _, code in blocks if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", code)
    ]
    if defining:
        return defining[0]
    python = [code for lang, code in blocks if lang in ("python", "py", "python3", "")]
    return (python or [code for _, code in blocks])[0]


def _is_test_code(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name == "check" or node.name.startswith("test_")
    return False


def _keep_toplevel(node: ast.stmt) -> bool:
    """Definitions and imports are kept; example calls, prints and asserts are not."""
    kept = (
        ast.Import,
        ast.ImportFrom,
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
        ast.Assign,
        ast.AnnAssign,
    )
    return isinstance(node, kept) and not _is_test_code(node)


def _segment(lines: list[str], node: ast.AST) -> str:
    start = node.lineno - 1
    decorators = getattr(node, "decorator_list", [])
    if decorators:
        start = min(d.lineno for d in decorators) - 1
    return "".join(lines[start : node.end_lineno])


def _arg_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = fn.args
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]


def top_level_function(source: str, name: str | None = None) -> ast.FunctionDef | None:
    """The first top-level ``def`` of ``source`` called ``name`` (when None: called anything
    but ``check``, the tests' name); None when there is none or ``source`` does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and (
            node.name == name if name is not None else node.name != "check"
        ):
            return node
    return None


def extract_code(text: str, entry_point: str, prompt: str = "") -> str:
    """The completion continuing ``prompt`` that a model's answer ``text`` stands for.

    - A body continuation (indented or not) is returned indented under the prompt.
    - A full definition of ``entry_point`` whose parameters match the prompt's becomes
      its body (docstring dropped), followed by the answer's other definitions and
      imports (module globals resolve at call time, so their order does not matter).
    - A definition with different parameters is kept whole after the prompt; it
      redefines the function, which the prompt already made valid with its docstring.
    - With an empty prompt the cleaned definitions themselves are the completion.
    Example calls, prints, asserts and ``check`` functions in the answer are dropped.
    Unparseable code is returned as found, for the test stage to reject.
    """
    code = textwrap.dedent(_pick_code(text, entry_point)).strip("\n") + "\n"
    if prompt and code.startswith(prompt.strip("\n")):
        code = code[len(prompt.strip("\n")) :].lstrip("\n") or "\n"
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return _as_body(code, prompt)
    target = next(
        (
            n
            for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point
        ),
        None,
    )
    if target is None:
        return _as_body(code, prompt)
    lines = code.splitlines(keepends=True)
    others = "".join(
        _segment(lines, n) + "\n" for n in tree.body if n is not target and _keep_toplevel(n)
    )
    if not prompt.strip():
        return _join(others, _segment(lines, target))
    reference = top_level_function(prompt, entry_point)
    if reference is None or _arg_names(reference) != _arg_names(target):
        return "\n" + _join(others, _segment(lines, target))
    statements = target.body
    if (
        statements
        and isinstance(statements[0], ast.Expr)
        and isinstance(statements[0].value, ast.Constant)
        and isinstance(statements[0].value.value, str)
        and len(statements) > 1
    ):
        statements = statements[1:]
    first = statements[0].lineno - 1
    body = textwrap.indent(textwrap.dedent("".join(lines[first : target.end_lineno])), "    ")
    return body + ("\n\n" + others.rstrip("\n") + "\n" if others else "")


def _join(*parts: str) -> str:
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p.strip())


def _as_body(code: str, prompt: str) -> str:
    """Code with no definition of the entry point: a body continuing ``prompt``."""
    if not prompt.strip():
        return code
    for candidate in (code, textwrap.indent(code, "    ")):
        if _compiles(prompt + candidate):
            return candidate
    return code


def _compiles(source: str) -> bool:
    # compile(), not ast.parse(): a module-level ``return`` only fails at compile time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(source, "<answer>", "exec")
        except (SyntaxError, ValueError):
            return False
    return True


# --- student format -----------------------------------------------------------------


def student_prompt(task: object) -> str:
    """The text the student continues (see the module docstring)."""
    prompt = _field(task, "prompt")
    if prompt.strip():
        return prompt
    instruction = (
        _field(task, "instruction").strip() or f"Write the function {_field(task, 'entry_point')}."
    )
    return "".join(f"# {line}".rstrip() + "\n" for line in instruction.splitlines()) + "\n"


def format_training_text(sample: Mapping) -> str:
    """One training example: student prompt followed by the completion."""
    return student_prompt(sample) + str(sample.get("completion", "")).rstrip("\n") + "\n"


_CODE_START = re.compile(r"(?:async\s+def|def|class|import|from)\b|@|#")


def opens_with_body(text: str) -> bool:
    """Whether a reply's first non-blank line is indented: it continues a function."""
    for line in text.splitlines():
        if line.strip():
            return line[0].isspace()
    return False


def leading_code(text: str) -> tuple[str, bool]:
    """The code a reply writes out without a fence, and whether it has ended.

    The code starts at the first top-level definition, import or decorator and runs
    through indented and blank lines and further top-level definitions, imports,
    decorators and comments, up to the first top-level line of anything else (prose, an
    example call), which is left out; only a complete such line means the code has ended
    (a partial last line could still turn into code).
    """
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        top_level = bool(line.strip()) and not line[0].isspace()
        if not out and not (top_level and _CODE_START.match(line)):
            continue
        if top_level and not _CODE_START.match(line):
            return "".join(out), line.endswith("\n")
        out.append(line)
    return "".join(out), False


def stop_at_toplevel(generated: str, prompt: str = "") -> str:
    """Cut a generated continuation where the function ends.

    With a prompt (a signature and docstring), the body ends at the first non-blank line
    that is not indented. Without one the student writes the whole function, so the cut
    comes at the first non-indented line after some indented line.
    """
    seen_body = bool(prompt.strip())
    out = []
    for line in generated.splitlines(keepends=True):
        if line.strip():
            if not line[0].isspace() and seen_body:
                break
            seen_body = seen_body or line[0].isspace()
        out.append(line)
    return "".join(out)
