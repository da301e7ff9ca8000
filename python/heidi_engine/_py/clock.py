"""Wall-clock time for timestamps and run ids, and a fake clock for tests.

Timestamps are UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (milliseconds, truncated).
``HEIDI_FAKE_TIME`` makes the Core use a :class:`FakeClock`, so runs are byte-identical.
"""

from __future__ import annotations

import math
import re
import threading
import time
from datetime import datetime, timedelta, timezone

_ISO_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def _invalid(iso: object) -> ValueError:
    return ValueError(f"invalid timestamp '{iso}' (expected YYYY-MM-DDTHH:MM:SS.mmmZ)")


def parse_iso_ms(iso: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` -> milliseconds since the epoch (strict)."""
    match = _ISO_RE.fullmatch(iso) if isinstance(iso, str) else None
    if match is None:
        raise _invalid(iso)
    year, month, day, hour, minute, second, milli = (int(part) for part in match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise _invalid(iso) from None
    return (moment - _EPOCH) // _MS + milli


def is_iso_ms(iso: str) -> bool:
    try:
        parse_iso_ms(iso)
    except ValueError:
        return False
    return True


def format_iso_ms(unix_ms: int) -> str:
    """Milliseconds since the epoch -> ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    seconds, milli = divmod(unix_ms, 1000)
    m = _EPOCH + timedelta(seconds=seconds)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{milli:03d}Z"
    )


class SystemClock:
    """The real time."""

    def now_us(self) -> int:
        return time.time_ns() // 1000

    def now_iso(self) -> str:
        return format_iso_ms(time.time_ns() // 1_000_000)

    def monotonic(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that stands still until :meth:`advance` moves it. Thread-safe."""

    def __init__(self, iso_ts: str) -> None:
        self._now_us = parse_iso_ms(iso_ts) * 1000
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return self._now_us

    def now_iso(self) -> str:
        return format_iso_ms(self._now_us // 1000)

    def monotonic(self) -> float:
        return self._now_us / 1e6

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (finite, >= 0), rounded to the microsecond."""
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"advance needs a finite number of seconds >= 0, got {seconds!r}")
        with self._lock:
            self._now_us += math.floor(seconds * 1e6 + 0.5)

    def __repr__(self) -> str:
        return f"FakeClock('{self.now_iso()}')"


class RunId:
    @staticmethod
    def generate(clock: SystemClock | FakeClock) -> str:
        """``run_YYYYMMDD_HHMMSS`` of the clock's time (UTC)."""
        iso = clock.now_iso()
        return f"run_{iso[0:4]}{iso[5:7]}{iso[8:10]}_{iso[11:13]}{iso[14:16]}{iso[17:19]}"


__all__ = ["FakeClock", "RunId", "SystemClock", "format_iso_ms", "is_iso_ms", "parse_iso_ms"]
