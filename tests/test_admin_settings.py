"""Admins change settings at run time: validated, audited, and used by the code that reads them."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from digest.extensions import db
from digest.jobs import run_daily, run_daily_recorded, waiting_is_over
from digest.mail.delivery import deliver_pending
from digest.mail.transports import app_transport, memory_outbox
from digest.models import AuditEvent, Edition, Setting, Subscriber
from digest.scheduler import approval_deadline_job, build_scheduler
from tests.admin_fixtures import DAY, NOON, add_article, logged_in_client

ZONE = ZoneInfo("Africa/Casablanca")
# Config defaults as the test app has them; the admin form starts from these.
DEFAULTS = {
    "approval_deadline": "09:00",
    "approval_fallback": "hold",
    "mail_from_name": "Le Digest",
    "mail_from_address": "digest@digest.test",
    "mail_reply_to": "",
    "postal_address": "Le Digest, Casablanca, Maroc",
    "category_flag_below": "0.5",
}


def _post(client: FlaskClient, **changes: str) -> Any:
    return client.post("/admin/settings", data={**DEFAULTS, **changes})


def _rows() -> dict[str, Any]:
    db.session.expire_all()
    return {row.key: row.value for row in db.session.scalars(db.select(Setting))}


def _changes() -> list[AuditEvent]:
    return list(
        db.session.scalars(
            db.select(AuditEvent)
            .where(AuditEvent.action == "settings.change")
            .order_by(AuditEvent.id)
        )
    )


def _readers(count: int = 2) -> None:
    for number in range(count):
        db.session.add(Subscriber(email=f"r{number}@example.org", language="fr", status="active"))
    db.session.commit()


def _local(day: dt.date, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE).astimezone(dt.UTC)


def test_only_admins_see_and_change_settings(app: Flask) -> None:
    editor = logged_in_client(app, "editor")
    assert editor.get("/admin/settings").status_code == 403
    assert _post(editor, approval_required="on").status_code == 403
    assert "/admin/settings" not in editor.get("/admin/").get_data(as_text=True)
    assert _rows() == {} and _changes() == []
    admin = logged_in_client(app, "admin")
    page = admin.get("/admin/settings")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'value="digest@digest.test"' in text and 'value="09:00"' in text
    assert "/admin/settings" in admin.get("/admin/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("approval_deadline", "9h", "HH:MM"),
        ("approval_deadline", "24:00", "HH:MM"),
        ("approval_deadline", "06:30", "after the send time (07:00)"),
        ("approval_fallback", "maybe", '"send" or "hold"'),
        ("approval_required", "maybe", "Tick the box"),
        ("mail_from_name", "", "needed"),
        ("mail_from_name", "Le Digest\r\nBcc: victim@example.org", "one line"),
        ("mail_from_name", "x" * 79, "at most 78"),
        ("mail_from_address", "not-an-address", "not an email address"),
        ("mail_from_address", "a b@digest.test", "not an email address"),
        ("mail_from_address", "news@elsewhere.example", "must be at digest.test"),
        ("mail_reply_to", "replies@", "not an email address"),
        ("mail_reply_to", "x@example.org\nBcc: y@example.org", "not an email address"),
        ("postal_address", "   ", "postal address"),
        ("postal_address", "1 rue\x00 Foo", "one line"),
        ("category_flag_below", "1.5", "from 0 to 1"),
        ("category_flag_below", "-0.1", "from 0 to 1"),
        ("category_flag_below", "nan", "from 0 to 1"),
        ("category_flag_below", "inf", "from 0 to 1"),
        ("category_flag_below", "half", "from 0 to 1"),
    ],
)
def test_an_unusable_value_is_shown_beside_its_field_and_nothing_is_saved(
    app: Flask, field: str, value: str, message: str
) -> None:
    admin = logged_in_client(app, "admin")
    # A good change posted with the bad one is not saved either.
    good = {"approval_required": "on"} if field != "approval_required" else {}
    response = _post(admin, **good, **{field: value})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', page)
    assert error is not None, page
    assert message in html_lib.unescape(error.group(1))
    assert f'aria-describedby="{field}-error"' in page
    assert "Nothing was saved" in page
    assert _rows() == {} and _changes() == []


def test_a_change_is_stored_audited_old_to_new_and_reverting_follows_config_again(
    app: Flask,
) -> None:
    admin = logged_in_client(app, "admin")
    saved = _post(
        admin,
        approval_required="on",
        approval_deadline="8:30",
        mail_from_name="La Matinale",
        mail_from_address="Matin@Digest.test",
        mail_reply_to="redaction@example.org",
        category_flag_below="0,7",
    )
    assert saved.status_code == 303
    assert _rows() == {
        "APPROVAL_REQUIRED": True,
        "APPROVAL_DEADLINE": "08:30",
        "MAIL_FROM": "La Matinale <Matin@digest.test>",
        "MAIL_REPLY_TO": "redaction@example.org",
        "CATEGORY_FLAG_BELOW": 0.7,
    }
    events = {event.target: event for event in _changes()}
    assert events["APPROVAL_REQUIRED"].detail == {"from": "off", "to": "on"}
    assert events["APPROVAL_DEADLINE"].detail == {"from": "09:00", "to": "08:30"}
    assert events["MAIL_REPLY_TO"].detail == {"from": "(unset)", "to": "redaction@example.org"}
    assert {event.actor for event in events.values()} == {"admin@digest.test"}
    page = admin.get("/admin/settings").get_data(as_text=True)
    assert 'value="La Matinale"' in page and 'value="08:30"' in page and "changed here" in page
    assert "Saved: Approval mode, Approval deadline" in page
    audit_page = admin.get("/admin/audit?action=settings.change").get_data(as_text=True)
    assert "MAIL_FROM" in audit_page

    # The same values again change nothing; the configured values again remove the rows.
    _post(
        admin,
        approval_required="on",
        approval_deadline="08:30",
        mail_from_name="La Matinale",
        mail_from_address="Matin@digest.test",
        mail_reply_to="redaction@example.org",
        category_flag_below="0.7",
    )
    assert len(_changes()) == 5
    assert _post(admin).status_code == 303
    assert _rows() == {}
    assert len(_changes()) == 10
    assert "changed here" not in admin.get("/admin/settings").get_data(as_text=True)


def test_turning_approval_on_makes_the_daily_run_wait_and_off_lets_it_go(app: Flask) -> None:
    _readers()
    admin = logged_in_client(app, "admin")
    assert _post(admin, approval_required="on").status_code == 303
    assert app.config["APPROVAL_REQUIRED"] is False  # the config is untouched: the row decides
    report = run_daily(db.session, day=DAY, now=_local(DAY, "07:00"), transport=app_transport(app))
    assert report.gate == "wait"
    assert memory_outbox(app) == []
    # The editor takes no action; the admin turns approval off again.
    assert _post(admin).status_code == 303
    assert (
        run_daily(db.session, day=DAY, now=_local(DAY, "07:30"), transport=app_transport(app)).gate
        == "send"
    )
    assert sorted(m["To"] for m in memory_outbox(app)) == ["r0@example.org", "r1@example.org"]


def test_the_deadline_check_follows_the_settings_without_a_restart(app: Flask) -> None:
    """The scheduler's minutely check reads the deadline in force, not the one at start."""
    _readers()
    today = dt.date(2026, 11, 27)
    jobs = {job.id: job for job in build_scheduler(app, blocking=False, deliver=False).get_jobs()}
    # Present even though approval mode is off in the config: an admin may turn it on.
    assert jobs["approval-deadline"].func is approval_deadline_job
    admin = logged_in_client(app, "admin")
    _post(admin, approval_required="on", approval_deadline="08:00", approval_fallback="send")
    transport = app_transport(app)
    run = run_daily_recorded(db.session, day=today, now=_local(today, "07:00"), transport=transport)
    assert run.outcome == "wait"
    assert not waiting_is_over(db.session, today, _local(today, "07:59"))
    assert waiting_is_over(db.session, today, _local(today, "08:01"))
    # Pushed back to 10:00: at 08:01 the edition still waits.
    _post(admin, approval_required="on", approval_deadline="10:00", approval_fallback="send")
    assert not waiting_is_over(db.session, today, _local(today, "08:01"))
    assert waiting_is_over(db.session, today, _local(today, "10:00"))
    late = run_daily_recorded(
        db.session, day=today, now=_local(today, "10:00"), transport=transport
    )
    assert late.outcome == "sent"
    assert len(memory_outbox(app)) == 2
    # Done: later checks find nothing waiting, and the other day's edition is not touched.
    assert not waiting_is_over(db.session, today, _local(today, "10:01"))
    assert not waiting_is_over(db.session, DAY, _local(today, "10:01"))


def _edition_for_preview() -> Edition:
    from digest.compose import compose_edition

    add_article("Le parlement adopte la loi", category="politics", category_confidence=0.9)
    db.session.commit()
    return compose_edition(db.session, DAY, NOON)


def test_a_new_sender_shows_in_the_preview_headers_and_in_the_mail_sent(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    _edition_for_preview()
    _readers(1)
    before = admin.get(f"/admin/editions/{DAY.isoformat()}").get_data(as_text=True)
    assert "From: Le Digest &lt;digest@digest.test&gt;" in before
    assert "Reply-To" not in before
    _post(
        admin,
        mail_from_name="La Matinale",
        mail_from_address="matin@digest.test",
        mail_reply_to="redaction@example.org",
        postal_address="12 rue Exemple, Rabat",
    )
    page = admin.get(f"/admin/editions/{DAY.isoformat()}").get_data(as_text=True)
    headers = html_lib.unescape(page[page.index('class="headers"') :])
    assert "From: La Matinale <matin@digest.test>" in headers
    assert "Reply-To: redaction@example.org" in headers
    assert "12 rue Exemple, Rabat" in html_lib.unescape(page)
    # The worker builds the same headers, envelope sender included.
    admin.post(f"/admin/editions/{DAY.isoformat()}/send")
    deliver_pending(db.session, app_transport(app), NOON)
    [sent] = memory_outbox(app)
    assert sent["From"] == "La Matinale <matin@digest.test>"
    assert sent["Reply-To"] == "redaction@example.org"
    assert sent.envelope_from == "matin@digest.test"
    assert "12 rue Exemple, Rabat" in sent.get_body(("plain",)).get_content()
    # Public pages carry the new footer too.
    assert "12 rue Exemple, Rabat" in app.test_client().get("/").get_data(as_text=True)


def test_the_flag_threshold_changes_what_the_desk_flags(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    add_article("Un titre incertain", category="economy", category_confidence=0.6)
    db.session.commit()
    desk = f"/admin/?date={DAY.isoformat()}"
    assert 'class="item flagged"' not in admin.get(desk).get_data(as_text=True)
    _post(admin, category_flag_below="0.75")
    assert 'class="item flagged"' in admin.get(desk).get_data(as_text=True)


def test_saving_settings_needs_the_csrf_token(app: Flask) -> None:
    admin = logged_in_client(app, "admin")
    app.config["WTF_CSRF_ENABLED"] = True
    assert _post(admin, approval_required="on").status_code == 400
    page = admin.get("/admin/settings").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert _rows() == {}
    assert _post(admin, approval_required="on", csrf_token=token).status_code == 303
    assert _rows() == {"APPROVAL_REQUIRED": True}


def test_clearing_a_configured_reply_to_removes_the_header(app: Flask) -> None:
    """An admin's "unset" wins over a value from the configuration."""
    app.config["MAIL_REPLY_TO"] = "courrier@example.org"
    admin = logged_in_client(app, "admin")
    _edition_for_preview()
    page = admin.get(f"/admin/editions/{DAY.isoformat()}").get_data(as_text=True)
    assert "Reply-To: courrier@example.org" in page
    assert _post(admin, mail_reply_to="").status_code == 303
    assert _rows() == {"MAIL_REPLY_TO": None}
    [event] = _changes()
    assert event.detail == {"from": "courrier@example.org", "to": "(unset)"}
    page = admin.get(f"/admin/editions/{DAY.isoformat()}").get_data(as_text=True)
    assert "Reply-To:" not in page[page.index('class="headers"') :]
    # Typing the configured value again follows the configuration again.
    assert _post(admin, mail_reply_to="courrier@example.org").status_code == 303
    assert _rows() == {}
