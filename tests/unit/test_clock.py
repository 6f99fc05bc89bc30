from datetime import UTC, datetime, timedelta

import pytest

from verifyfeed.clock import CHINA_TZ, Blackout, FixedClock, OffsetClock, clock_from_setting


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("instant", "blacked_out"),
    [
        ("2026-12-26T23:59:59+08:00", False),
        ("2026-12-27T00:00:00+08:00", True),
        # 16:00 UTC on the 26th is already 00:00 on the 27th in China: a UTC clock must not be read naively
        ("2026-12-26T16:00:00+00:00", True),
        ("2026-12-26T15:59:59+00:00", False),
        ("2026-12-31T23:59:59+08:00", True),
        ("2027-01-01T00:00:00+08:00", False),
        ("2026-12-31T16:00:00+00:00", False),
        ("2027-02-27T00:00:00+08:00", True),
        ("2027-02-28T23:59:59+08:00", True),
        ("2027-03-01T00:00:00+08:00", False),
        ("2026-11-25T12:00:00+08:00", False),
    ],
)
def test_blackout_window_in_china_time(instant: str, blacked_out: bool) -> None:
    assert Blackout().is_blacked_out(at(instant)) is blacked_out


def test_blackout_resumes_on_the_first_of_next_month_china_time() -> None:
    resumes = Blackout().resumes_at(at("2026-12-28T10:00:00+08:00"))
    assert resumes == datetime(2027, 1, 1, tzinfo=CHINA_TZ)
    assert Blackout().resumes_at(at("2026-12-20T10:00:00+08:00")) is None


def test_configurable_days() -> None:
    blackout = Blackout(start_day=25, resume_day=3)
    assert blackout.is_blacked_out(at("2026-12-25T00:00:00+08:00"))
    assert blackout.is_blacked_out(at("2027-01-02T23:59:59+08:00"))
    assert not blackout.is_blacked_out(at("2027-01-03T00:00:00+08:00"))


def test_start_day_beyond_month_length_means_no_blackout_that_month() -> None:
    assert not Blackout(start_day=31).is_blacked_out(at("2027-02-28T12:00:00+08:00"))
    assert Blackout(start_day=31).is_blacked_out(at("2027-03-31T12:00:00+08:00"))


def test_offset_clock_starts_at_the_setting_and_runs_on() -> None:
    clock = clock_from_setting("2026-12-27T01:00:00+08:00")
    assert isinstance(clock, OffsetClock)
    first = clock.now()
    assert first.tzinfo is not None
    assert abs(first - datetime(2026, 12, 26, 17, 0, tzinfo=UTC)) < timedelta(seconds=5)
    assert clock.now() >= first


def test_offset_clock_needs_an_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        OffsetClock(datetime(2026, 12, 27))


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(at("2026-12-27T00:00:00+08:00"))
    assert clock.now() == clock.now()
    clock.move_to(at("2027-01-01T00:00:00+08:00"))
    assert clock.now() == datetime(2026, 12, 31, 16, tzinfo=UTC)
