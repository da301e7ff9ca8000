"""The ``dates`` task families."""

from __future__ import annotations

import datetime

from .common import MONTHS, WEEKDAYS
from .registry import Spec, family


def _iso_plus(iso: str, days: int) -> str:
    return (datetime.date.fromisoformat(iso) + datetime.timedelta(days=days)).isoformat()


@family(
    "dates",
    func=("add_days", "shift_date", "date_after", "move_date"),
    arg=("date_str", "day", "iso_date"),
    unit=("days", "weeks", "business_days"),
    output=("iso", "weekday", "day_of_year", "month_name"),
)
def date_shift(p, rng):
    a = p["arg"]
    unit = {
        "days": "calendar days",
        "weeks": "weeks",
        "business_days": "business days (Monday to Friday; each Saturday and Sunday is skipped)",
    }[p["unit"]]
    out = {
        "iso": ("the resulting date as 'YYYY-MM-DD'", "d.isoformat()", "str"),
        "weekday": (
            "the English weekday name of the resulting date",
            f"{WEEKDAYS!r}[d.weekday()]",
            "str",
        ),
        "day_of_year": (
            "the day of the year (1-366) of the resulting date",
            "d.timetuple().tm_yday",
            "int",
        ),
        "month_name": (
            "the English month name of the resulting date",
            f"{MONTHS!r}[d.month - 1]",
            "str",
        ),
    }
    what, expr, rtype = out[p["output"]]
    desc = (
        f"`{a}` is a date 'YYYY-MM-DD'. Move it forward by `n` {unit} (n >= 0) and return {what}."
    )
    if p["unit"] == "business_days":
        move = (
            "    left = {n}\n    while left > 0:\n        d += timedelta(days=1)\n"
            "        if d.weekday() < 5:\n            left -= 1\n"
        )
    else:
        move = f"    d += timedelta({p['unit']}={{n}})\n"
    template = f"    d = date.fromisoformat({a})\n{move}    return {expr}\n"

    def rand_date() -> str:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    cases = [(rand_date(), rng.randint(1, 400)) for _ in range(3)]
    cases += [("2024-02-28", 1), ("2023-12-29", 0), ("2021-01-01", 3), ("2020-12-31", 60)]
    return Spec.from_template(
        f"def {p['func']}({a}: str, n: int) -> {rtype}:",
        desc, template, cases, n=("n", "n - 1"),
        imports="from datetime import date, timedelta\n\n\n",
    )


@family(
    "dates",
    func=("count_days", "days_between", "date_span_count", "span_days"),
    arg=(("start", "end"), ("begin", "finish"), ("first", "last")),
    what=("all", "business", *WEEKDAYS),
    inclusive=(True, False),
)
def days_between(p, rng):
    s, e = p["arg"]
    what = {"all": "days", "business": "weekdays (Monday to Friday)"}.get(
        p["what"], f"{p['what']}s"
    )
    span = (
        f"from `{s}` up to and including `{e}`"
        if p["inclusive"]
        else f"from `{s}` up to but excluding `{e}`"
    )
    desc = f"`{s}` and `{e}` are dates 'YYYY-MM-DD' with {s} <= {e}. Count the {what} {span}."
    if p["what"] in WEEKDAYS:
        test = f"d.weekday() == {WEEKDAYS.index(p['what'])}"
    else:
        test = "True" if p["what"] == "all" else "d.weekday() < 5"
    template = (
        f"    d = date.fromisoformat({s})\n    stop = date.fromisoformat({e})\n    count = 0\n"
        f"    while d {{cmp}} stop:\n        if {test}:\n            count += 1\n"
        f"        d += timedelta(days=1)\n    return count\n"
    )
    cmp, wrong_cmp = ("<=", "<") if p["inclusive"] else ("<", "<=")

    def rand_date(year: int) -> str:
        return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"

    start = rand_date(rng.randint(2000, 2025))
    cases = [(start, _iso_plus(start, rng.randint(5, 90)))]
    # ends on a day that is counted (2024-01-01 is a Monday), so the end bound matters
    end_weekday = WEEKDAYS.index(p["what"]) if p["what"] in WEEKDAYS else 2
    cases += [
        ("2024-01-01", _iso_plus("2024-01-01", 7 + end_weekday)),
        ("2024-02-26", "2024-03-04"),
        ("2023-06-10", "2023-06-10"),
        ("2021-12-27", "2022-01-09"),
    ]
    return Spec.from_template(
        f"def {p['func']}({s}: str, {e}: str) -> int:",
        desc, template, cases, cmp=(cmp, wrong_cmp),
        imports="from datetime import date, timedelta\n\n\n",
    )
