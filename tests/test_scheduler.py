"""The daily job fires at SEND_AT in the newsroom's time zone; bad settings stop the start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from digest import ConfigError, create_app
from digest.calendar import newsroom_today, parse_day
from digest.cli import cli
from digest.extensions import db
from digest.models import ScheduledRun
from digest.scheduler import build_scheduler, daily_trigger

CASABLANCA = ZoneInfo("Africa/Casablanca")


def test_daily_run_fires_at_send_at_in_the_newsroom_time_zone() -> None:
    trigger = daily_trigger("07:00", "Africa/Casablanca")
    # 06:30 UTC on 28 November is 07:30 in Casablanca (UTC+1): today's run has passed.
    now = dt.datetime(2026, 11, 28, 6, 30, tzinfo=dt.UTC)
    fire = trigger.get_next_fire_time(None, now)
    assert fire == dt.datetime(2026, 11, 29, 7, 0, tzinfo=CASABLANCA)


def test_daily_run_later_the_same_morning_when_send_at_is_still_ahead() -> None:
    trigger = daily_trigger("9:15", "Europe/Madrid")
    now = dt.datetime(2026, 11, 28, 5, 0, tzinfo=dt.UTC)
    fire = trigger.get_next_fire_time(None, now)
    assert fire == dt.datetime(2026, 11, 28, 9, 15, tzinfo=ZoneInfo("Europe/Madrid"))


def test_the_newsroom_day_follows_its_time_zone_not_utc() -> None:
    late_evening_utc = dt.datetime(2026, 11, 28, 23, 30, tzinfo=dt.UTC)
    assert newsroom_today("Africa/Casablanca", late_evening_utc) == dt.date(2026, 11, 29)
    assert newsroom_today("America/New_York", late_evening_utc) == dt.date(2026, 11, 28)


@pytest.mark.parametrize(
    ("setting", "value", "hint"),
    [
        ("SEND_AT", "7h", "HH:MM"),
        ("SEND_AT", "24:00", "HH:MM"),
        ("TIMEZONE", "Mars/Olympus", "IANA"),
    ],
)
def test_unusable_schedule_settings_are_refused_at_start(
    tmp_path: Path, setting: str, value: str, hint: str
) -> None:
    with pytest.raises(ConfigError, match=hint):
        create_app({"ENV_NAME": "testing", "INSTANCE_PATH": str(tmp_path), setting: value})


def test_bad_settings_from_the_environment_give_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.cli import main

    monkeypatch.setenv("DIGEST_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DIGEST_SEND_AT", "midi")
    monkeypatch.setattr("sys.argv", ["digest", "init"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2


def test_the_scheduler_has_the_daily_job_and_delivers_only_when_asked(tmp_path: Path) -> None:
    app = create_app({"ENV_NAME": "testing", "INSTANCE_PATH": str(tmp_path), "SEND_AT": "06:45"})
    embedded = build_scheduler(app, blocking=False, deliver=True)
    alone = build_scheduler(app, blocking=True, deliver=False)
    assert {job.id for job in embedded.get_jobs()} == {
        "daily",
        "approval-deadline",
        "deliver",
        "heartbeat",
    }
    assert {job.id for job in alone.get_jobs()} == {"daily", "approval-deadline", "heartbeat"}
    daily = alone.get_job("daily")
    midnight = dt.datetime(2026, 11, 28, 0, 0, tzinfo=dt.UTC)
    fire = daily.trigger.get_next_fire_time(None, midnight)
    assert fire == dt.datetime(2026, 11, 28, 6, 45, tzinfo=CASABLANCA)


def test_dates_on_the_command_line_must_be_iso() -> None:
    assert parse_day("2026-11-28") == dt.date(2026, 11, 28)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_day("28/11/2026")


def test_serve_rejects_a_port_out_of_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_INSTANCE_PATH", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--port", "70000"])
    assert result.exit_code == 2
    assert "70000" in result.output


def test_the_heartbeat_job_records_that_the_scheduler_is_alive(app: Flask) -> None:
    from sqlalchemy import select

    from digest.extensions import db
    from digest.models import Heartbeat
    from digest.scheduler import beat_job

    beat_job(app)
    beat = db.session.scalars(select(Heartbeat).where(Heartbeat.name == "scheduler")).one()
    assert beat.beat_at is not None


def test_a_failing_daily_run_is_logged_and_the_scheduler_lives_on(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from digest import jobs
    from digest.scheduler import run_daily_job

    def broken_morning(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the relay is down")

    monkeypatch.setattr(jobs, "run_daily", broken_morning)
    run_daily_job(app)  # returns: a scheduled job that raised would only be logged by APScheduler
    assert "daily run for" in caplog.text and "the relay is down" in caplog.text
    # The failed run is recorded with its reason, for the editors' list of runs.
    run = db.session.scalars(select(ScheduledRun)).one()
    assert (run.outcome, run.detail) == ("failed", "RuntimeError: the relay is down")
    assert run.finished_at is not None


def _fires(send_at: str, zone: str, start: dt.datetime, count: int) -> list[dt.datetime]:
    trigger = daily_trigger(send_at, zone)
    fires: list[dt.datetime] = []
    previous = None
    now = start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        fires.append(fire.astimezone(dt.UTC))
        previous, now = fire, fire + dt.timedelta(seconds=1)
    return fires


def test_paris_daylight_saving_keeps_the_local_send_time() -> None:
    # Clocks go forward on 29 March 2026 and back on 25 October 2026.
    spring = _fires("07:00", "Europe/Paris", dt.datetime(2026, 3, 28, tzinfo=dt.UTC), 2)
    assert [f.hour for f in spring] == [6, 5]  # 07:00 CET, then 07:00 CEST
    autumn = _fires("07:00", "Europe/Paris", dt.datetime(2026, 10, 24, tzinfo=dt.UTC), 2)
    assert [f.hour for f in autumn] == [5, 6]


def test_casablanca_ramadan_clock_change_keeps_the_local_send_time() -> None:
    # Morocco leaves UTC+1 for UTC+0 during Ramadan: 15 February to 22 March in 2026.
    around_start = _fires("07:00", "Africa/Casablanca", dt.datetime(2026, 2, 14, tzinfo=dt.UTC), 2)
    assert around_start == [
        dt.datetime(2026, 2, 14, 6, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 2, 15, 7, 0, tzinfo=dt.UTC),
    ]
    around_end = _fires("07:00", "Africa/Casablanca", dt.datetime(2026, 3, 21, tzinfo=dt.UTC), 2)
    assert around_end == [
        dt.datetime(2026, 3, 21, 7, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 22, 6, 0, tzinfo=dt.UTC),
    ]


def test_a_send_time_inside_the_skipped_hour_still_sends_that_day() -> None:
    # 02:30 does not exist in Paris on 29 March 2026; the edition must not skip the day.
    fires = _fires("02:30", "Europe/Paris", dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 2)
    assert [f.date() for f in fires] == [dt.date(2026, 3, 29), dt.date(2026, 3, 30)]
