"""Words and random inputs the task families share."""

from __future__ import annotations

import random

WORDS = (
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "piano",
    "lemon",
    "orbit",
    "maple",
    "ember",
    "frost",
    "delta",
    "quartz",
    "nova",
    "pixel",
    "harbor",
    "violet",
    "cedar",
    "falcon",
    "meadow",
    "sun",
    "sky",
    "ox",
    "a",
    "io",
    "tree",
    "banana",
    "level",
    "noon",
    "radar",
)
NAMES3 = ("items", "values", "xs")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def random_ints(rng: random.Random, n: int, lo: int = -20, hi: int = 50) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def random_text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def random_sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))
