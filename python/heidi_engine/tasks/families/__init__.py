"""The procedural task families, one module per category; importing the package
registers every family in :data:`FAMILIES` (:mod:`.registry`).

Every family takes ``func`` (and usually ``arg``) naming choices plus semantic choices
(constants, operations, options). ``build`` returns the reference body, a plausible
buggy body used to check that the tests discriminate, and test inputs that include edge
cases (empty inputs, zero, boundaries).
"""

from . import (  # noqa: F401  (each module registers its families)
    bits,
    dates,
    dicts,
    lists,
    maths,
    matrix,
    parsing,
    recursion,
    sorting,
    strings,
)
from .registry import FAMILIES, Family, Spec, family

__all__ = ["FAMILIES", "Family", "Spec", "family"]
