"""The ``matrix`` task families."""

from __future__ import annotations

from .registry import Spec, family

MATRIX_OPS = {
    "rotate_cw": ("rotate it 90 degrees clockwise", "[list(row) for row in zip(*m[::-1])]"),
    "rotate_ccw": (
        "rotate it 90 degrees counter-clockwise",
        "[list(row) for row in zip(*m)][::-1]",
    ),
    "transpose": ("transpose it", "[list(row) for row in zip(*m)]"),
    "flip_h": ("mirror it left to right", "[row[::-1] for row in m]"),
    "flip_v": ("mirror it top to bottom", "m[::-1]"),
}


@family(
    "matrix",
    func=("transform_grid", "apply_matrix_op", "grid_transform", "matrix_steps"),
    arg=("grid", "matrix", "m"),
    op=tuple(MATRIX_OPS),
    times=(1, 2, 3),
)
def matrix_transform(p, rng):
    a, t = p["arg"], p["times"]
    what, expr = MATRIX_OPS[p["op"]]
    desc = (
        f"`{a}` is a rectangular matrix given as a list of rows. {what.capitalize()}, "
        f"{'once' if t == 1 else f'{t} times in a row'}, and return the new matrix as a list "
        "of lists (an empty matrix stays empty)."
    )
    template = (
        f"    m = [list(row) for row in {a}]\n    if not m:\n        return []\n"
        f"    for _ in range({{t}}):\n        m = {expr}\n    return m\n"
    )

    def matrix(r: int, c: int) -> list[list[int]]:
        return [[rng.randint(0, 9) for _ in range(c)] for _ in range(r)]

    cases = [(matrix(rng.randint(2, 4), rng.randint(2, 4)),) for _ in range(2)]
    cases += [([],), ([[1, 2, 3]],), ([[1, 2], [3, 4], [5, 6]],)]
    return Spec.from_template(
        f"def {p['func']}({a}: list[list[int]]) -> list[list[int]]:",
        desc, template, cases, t=(t, t - 1 if t > 1 else 2),
    )
