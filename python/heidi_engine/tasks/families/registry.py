"""The registry of procedural task families.

A family declares a parameter space (each parameter's finite list of choices) and a
``build(params, rng)`` function that turns one choice of parameters into a :class:`Spec`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spec:
    signature: str  # "def name(arg: type) -> type:"
    description: str  # docstring text, without examples
    body: str  # reference implementation, indented four spaces
    wrong: str  # a plausible but buggy implementation of the same signature
    cases: list[tuple]  # argument tuples; the first ``n_examples`` go in the docstring
    imports: str = ""
    n_examples: int = 2

    @property
    def entry_point(self) -> str:
        return self.signature.split("def ", 1)[1].split("(", 1)[0].strip()

    @classmethod
    def from_template(
        cls, signature: str, description: str, template: str, cases: list[tuple], *,
        imports: str = "", **hole: tuple[object, object],
    ) -> Spec:
        """A spec whose reference and buggy bodies are one ``template`` with its one hole,
        ``hole`` (``name=(reference value, buggy value)``), filled in two ways."""
        ((name, (right, wrong)),) = hole.items()
        return cls(signature, description, template.format(**{name: right}),
                   template.format(**{name: wrong}), cases, imports)


@dataclass(frozen=True)
class Family:
    name: str
    category: str
    space: dict[str, tuple]
    build: Callable[[dict, random.Random], Spec] = field(repr=False)

    @property
    def size(self) -> int:
        return math.prod(len(choices) for choices in self.space.values())


FAMILIES: dict[str, Family] = {}


def family(category: str, **space: Sequence) -> Callable:
    """Register ``build(params, rng) -> Spec`` as a task family with the given space."""

    def register(build: Callable[[dict, random.Random], Spec]) -> Callable:
        if "func" not in space:
            raise ValueError(f"family {build.__name__} needs a 'func' parameter")
        FAMILIES[build.__name__] = Family(
            build.__name__, category, {key: tuple(values) for key, values in space.items()}, build
        )
        return build

    return register
