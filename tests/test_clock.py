"""Clock, FakeClock and RunId: both backends format time the same way."""

from __future__ import annotations

import re
import time

import pytest


def test_fake_clock_formats_and_stands_still(backend):
    clock = backend.FakeClock("2026-01-01T00:00:00.000Z")
    assert clock.now_iso() == "2026-01-01T00:00:00.000Z"
    assert clock.now_iso() == "2026-01-01T00:00:00.000Z"
    assert clock.monotonic() == 1767225600.0
    assert repr(clock) == "FakeClock('2026-01-01T00:00:00.000Z')"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0015, "2026-01-01T00:00:00.001Z"),  # 1500 us: milliseconds are truncated
        (0.9999, "2026-01-01T00:00:00.999Z"),
        (59.25, "2026-01-01T00:00:59.250Z"),
        (86400 * 59 + 3600.5, "2026-03-01T01:00:00.500Z"),  # through February 2026
        (86400 * 365 * 4, "2029-12-31T00:00:00.000Z"),  # 2028 is a leap year
    ],
)
def test_fake_clock_advance(backend, seconds, expected):
    clock = backend.FakeClock("2026-01-01T00:00:00.000Z")
    clock.advance(seconds)
    assert clock.now_iso() == expected


def test_fake_clock_accumulates_microseconds(backend):
    clock = backend.FakeClock("2026-01-01T00:00:00.000Z")
    for _ in range(1000):
        clock.advance(0.000001)
    assert clock.now_iso() == "2026-01-01T00:00:00.001Z"
    assert clock.now_us() == 1767225600_001000


@pytest.mark.parametrize(
    "bad",
    [
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.000",
        "2026-02-30T00:00:00.000Z",
        "2026-13-01T00:00:00.000Z",
        "2026-01-01T24:00:00.000Z",
        "2026-01-01T00:60:00.000Z",
        "0000-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.000Z ",
        "2026-01-01t00:00:00.000Z",
        "２026-01-01T00:00:00.000Z",
    ],
)
def test_fake_clock_rejects_bad_timestamps(backend, bad):
    with pytest.raises(ValueError) as info:
        backend.FakeClock(bad)
    assert str(info.value) == f"invalid timestamp '{bad}' (expected YYYY-MM-DDTHH:MM:SS.mmmZ)"


def test_fake_clock_leap_day_and_old_dates(backend):
    assert backend.FakeClock("2024-02-29T23:59:59.999Z").now_iso() == "2024-02-29T23:59:59.999Z"
    assert backend.FakeClock("0001-01-01T00:00:00.000Z").now_iso() == "0001-01-01T00:00:00.000Z"
    assert backend.FakeClock("1969-12-31T23:59:59.999Z").now_iso() == "1969-12-31T23:59:59.999Z"


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_fake_clock_rejects_bad_advance(backend, seconds):
    clock = backend.FakeClock("2026-01-01T00:00:00.000Z")
    with pytest.raises(ValueError) as info:
        clock.advance(seconds)
    assert str(info.value) == f"advance needs a finite number of seconds >= 0, got {seconds!r}"
    assert clock.now_iso() == "2026-01-01T00:00:00.000Z"


def test_run_id_from_fake_clock(backend):
    clock = backend.FakeClock("2026-07-04T13:05:09.999Z")
    assert backend.RunId.generate(clock) == "run_20260704_130509"


def test_system_clock(backend):
    clock = backend.SystemClock()
    before = time.time()
    iso = clock.now_iso()
    after = time.time()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso)
    now = backend.FakeClock(iso).now_us() / 1e6
    assert before - 0.001 <= now <= after
    first = clock.monotonic()
    assert clock.monotonic() >= first
    assert re.fullmatch(r"run_\d{8}_\d{6}", backend.RunId.generate(clock))
