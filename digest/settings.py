"""Settings admins change at run time: a row in ``settings`` wins over config.py's value.

Only settings that every process re-reads when it acts are offered here (the daily run, each
delivery run, each preview and desk page read them afresh), so a change takes effect without
a restart on every web process, worker and scheduler. Settings read once at start (SEND_AT,
TIMEZONE, the database and mail URLs) stay in config.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import Flask, current_app, has_request_context, request
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from digest import audit
from digest.calendar import parse_send_at
from digest.extensions import DbSession
from digest.models import Editor, Setting

log = logging.getLogger(__name__)

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
# Any control character would let a value break a header line or a page's layout.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_NAME = 78
MAX_POSTAL = 300


class SettingError(ValueError):
    """A typed value is unusable; the message is shown beside its field."""


def _text(form: Mapping[str, str], field: str) -> str:
    return str(form.get(field, "") or "").strip()


def _plain_line(value: str, what: str, limit: int) -> str:
    if _CONTROL.search(value):
        raise SettingError(f"The {what} must be one line of text.")
    if len(value) > limit:
        raise SettingError(f"The {what} may have at most {limit} characters.")
    return value


def _address(value: str, *, any_domain: bool = False) -> str:
    """An ASCII mail address in its normalized form (no DNS lookup).

    ``any_domain`` also accepts special-use domains (.test, .local): for the sender, whose
    domain is pinned to the configured one anyway.
    """
    if len(value) > 320 or _CONTROL.search(value) or " " in value:
        raise SettingError("This is not an email address.")
    try:
        info = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            test_environment=any_domain,
        )
    except EmailNotValidError as error:
        raise SettingError(f"This is not an email address ({error}).") from error
    return info.normalized


def _domain_of(mail_from: str) -> str:
    return parseaddr(mail_from)[1].rpartition("@")[2].lower()


@dataclass(frozen=True)
class Field:
    """One input on the settings page."""

    name: str
    label: str
    kind: str  # "checkbox", "time", "choice", "text", "email", "number", "textarea"
    choices: tuple[tuple[str, str], ...] = ()
    required: bool = False


@dataclass(frozen=True)
class SettingSpec:
    """One overridable config setting: its page fields, how to read and show them."""

    key: str
    title: str
    help: str
    fields: tuple[Field, ...]
    # (the posted form, config.py's values) -> the value; SettingError(field, message) if bad.
    read: Callable[[Mapping[str, str], Mapping[str, Any]], Any]
    # value -> {field name: text to put in the input}
    show: Callable[[Any], dict[str, str]]
    # value -> how it reads in the audit trail and beside the field
    describe: Callable[[Any], str] = lambda value: "(unset)" if value is None else str(value)


class FieldError(SettingError):
    """A SettingError that names the form field it belongs beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _on(field: str) -> Callable[[Mapping[str, str], Mapping[str, Any]], bool]:
    def read(form: Mapping[str, str], base: Mapping[str, Any]) -> bool:
        value = _text(form, field)
        if value in ("", "off", "0"):
            return False
        if value in ("on", "1", "true"):
            return True
        raise FieldError(field, "Tick the box or leave it empty.")

    return read


def _read_deadline(form: Mapping[str, str], base: Mapping[str, Any]) -> str:
    value = _text(form, "approval_deadline")
    match = _HHMM.match(value)
    if not match:
        raise FieldError("approval_deadline", "Write a time of day as HH:MM, e.g. 09:00.")
    hour, minute = int(match.group(1)), int(match.group(2))
    send_hour, send_minute = parse_send_at(str(base.get("SEND_AT", "07:00")))
    if (hour, minute) <= (send_hour, send_minute):
        raise FieldError(
            "approval_deadline",
            f"The deadline must come after the send time ({send_hour:02d}:{send_minute:02d}): "
            "editors need time to approve.",
        )
    return f"{hour:02d}:{minute:02d}"


def _read_fallback(form: Mapping[str, str], base: Mapping[str, Any]) -> str:
    value = _text(form, "approval_fallback")
    if value not in ("send", "hold"):
        raise FieldError("approval_fallback", 'Choose "send" or "hold".')
    return value


def _read_mail_from(form: Mapping[str, str], base: Mapping[str, Any]) -> str:
    name = _text(form, "mail_from_name")
    if not name:
        raise FieldError("mail_from_name", "Readers see this name as the sender: it is needed.")
    try:
        _plain_line(name, "sender name", MAX_NAME)
    except SettingError as error:
        raise FieldError("mail_from_name", str(error)) from error
    try:
        address = _address(_text(form, "mail_from_address"), any_domain=True)
    except SettingError as error:
        raise FieldError("mail_from_address", str(error)) from error
    # SPF, DKIM and DMARC are set up in DNS for the configured domain; another domain would
    # send the whole list to spam folders, so moving domains stays an operator's change.
    domain = _domain_of(str(base["MAIL_FROM"]))
    if address.rpartition("@")[2].lower() != domain:
        raise FieldError(
            "mail_from_address",
            f"The address must be at {domain}, the domain set up for sending "
            "(changing domain is done in the server's configuration, DIGEST_MAIL_FROM).",
        )
    return str(Address(display_name=name, addr_spec=address))


def _show_mail_from(value: Any) -> dict[str, str]:
    name, address = parseaddr(str(value or ""))
    return {"mail_from_name": name, "mail_from_address": address}


def _read_reply_to(form: Mapping[str, str], base: Mapping[str, Any]) -> str | None:
    value = _text(form, "mail_reply_to")
    if not value:
        return None
    try:
        return _address(value)
    except SettingError as error:
        raise FieldError("mail_reply_to", str(error)) from error


def _read_postal(form: Mapping[str, str], base: Mapping[str, Any]) -> str:
    value = _text(form, "postal_address")
    if not value:
        raise FieldError("postal_address", "Bulk mail must carry the sender's postal address.")
    try:
        return _plain_line(value, "postal address", MAX_POSTAL)
    except SettingError as error:
        raise FieldError("postal_address", str(error)) from error


def _read_flag_below(form: Mapping[str, str], base: Mapping[str, Any]) -> float:
    text = _text(form, "category_flag_below").replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= 1 or len(text) > 10:
        raise FieldError("category_flag_below", "Give a number from 0 to 1, e.g. 0.5.")
    return round(value, 3)


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "APPROVAL_REQUIRED",
        "Approval mode",
        "The scheduled edition waits for an editor's approval. Turning it off sends an edition "
        "that is waiting within a minute.",
        (Field("approval_required", "Editions wait for approval", "checkbox"),),
        _on("approval_required"),
        lambda value: {"approval_required": "on" if value else ""},
        lambda value: "on" if value else "off",
    ),
    SettingSpec(
        "APPROVAL_DEADLINE",
        "Approval deadline",
        "Local time after which an unapproved edition is sent or held (below).",
        (Field("approval_deadline", "Deadline (HH:MM)", "time", required=True),),
        _read_deadline,
        lambda value: {"approval_deadline": str(value or "")},
    ),
    SettingSpec(
        "APPROVAL_FALLBACK",
        "At the deadline",
        "What happens to an edition nobody approved in time.",
        (
            Field(
                "approval_fallback",
                "Unapproved at the deadline",
                "choice",
                (("hold", "hold it until an editor sends it"), ("send", "send it anyway")),
            ),
        ),
        _read_fallback,
        lambda value: {"approval_fallback": str(value or "hold")},
    ),
    SettingSpec(
        "MAIL_FROM",
        "Sender",
        "The name and address readers see in From; the name is also the newsletter's name.",
        (
            Field("mail_from_name", "Sender name", "text", required=True),
            Field("mail_from_address", "Sender address", "email", required=True),
        ),
        _read_mail_from,
        _show_mail_from,
    ),
    SettingSpec(
        "MAIL_REPLY_TO",
        "Reply-To",
        "Where readers' replies go (a newsroom mailbox); empty: to the sender address.",
        (Field("mail_reply_to", "Reply-To address", "email"),),
        _read_reply_to,
        lambda value: {"mail_reply_to": str(value or "")},
    ),
    SettingSpec(
        "POSTAL_ADDRESS",
        "Postal address",
        "Printed in every edition's footer, as bulk-mail law requires.",
        (Field("postal_address", "Postal address (footer)", "text", required=True),),
        _read_postal,
        lambda value: {"postal_address": str(value or "")},
    ),
    SettingSpec(
        "CATEGORY_FLAG_BELOW",
        "Low-confidence flag",
        "The desk flags a headline whose category the categorizer is less sure of than this.",
        (Field("category_flag_below", "Flag below (0 to 1)", "number", required=True),),
        _read_flag_below,
        lambda value: {"category_flag_below": f"{float(value):g}" if value is not None else ""},
    ),
)
BY_KEY: dict[str, SettingSpec] = {spec.key: spec for spec in SPECS}


def overrides(session: DbSession) -> dict[str, Any]:
    """The values admins set, by config key (keys no longer offered are ignored)."""
    rows = session.execute(select(Setting.key, Setting.value)).all()
    return {key: value for key, value in rows if key in BY_KEY}


def effective_config(session: DbSession, base: Mapping[str, Any]) -> Mapping[str, Any]:
    """``base`` (the app's config) with the admins' values on top, read now."""
    return ChainMap(overrides(session), base)  # type: ignore[arg-type]


_REQUEST_KEY = "digest.settings_in_force"


def in_force() -> Mapping[str, Any]:
    """The app's configuration with the admins' values, read once per request."""
    from digest.extensions import db

    if not has_request_context():
        return effective_config(db.session, current_app.config)
    # Kept on the request (not on g, which tests share across requests in one app context).
    cached = request.environ.get(_REQUEST_KEY)
    if cached is None:
        cached = request.environ[_REQUEST_KEY] = effective_config(db.session, current_app.config)
    return cached


def init_app(app: Flask) -> None:
    """Templates' ``config`` shows the admins' values (the footer's postal address, say)."""

    @app.context_processor
    def _config_in_force() -> dict[str, Any]:
        from digest.extensions import db

        try:
            return {"config": in_force()}
        except SQLAlchemyError:
            # The page that says the database is unreachable must still render.
            db.session.rollback()
            log.warning("settings unreadable; pages show config.py's values", exc_info=True)
            return {}


@dataclass
class Change:
    """One setting an admin changed: config key, old and new value."""

    key: str
    old: Any
    new: Any


def read_form(
    form: Mapping[str, str], base: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every setting's value from the posted form, and the errors by field name."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in SPECS:
        try:
            values[spec.key] = spec.read(form, base)
        except FieldError as error:
            errors[error.field] = str(error)
    return values, errors


def save(
    session: DbSession,
    values: Mapping[str, Any],
    base: Mapping[str, Any],
    editor: Editor,
    now: dt.datetime,
    ip: str | None = None,
) -> list[Change]:
    """Store what differs from what is in force, audit each change; the caller commits.

    A value equal to config.py's is stored as no row at all, so it follows config.py again.
    """
    current = effective_config(session, base)
    changes: list[Change] = []
    for spec in SPECS:
        if spec.key not in values:
            continue
        new, old = values[spec.key], current.get(spec.key)
        if new == old:
            continue
        if new == base.get(spec.key):
            session.execute(delete(Setting).where(Setting.key == spec.key))
        else:
            _upsert(session, spec.key, new, now, editor.email)
        audit.record(
            session,
            "settings.change",
            now,
            editor=editor,
            target=spec.key,
            detail={"from": spec.describe(old), "to": spec.describe(new)},
            ip=ip,
        )
        changes.append(Change(spec.key, old, new))
    session.flush()
    return changes


def _upsert(session: DbSession, key: str, value: Any, now: dt.datetime, by: str) -> None:
    """Insert or replace one row; two admins saving at once cannot collide on the key."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    fields = {"value": value, "updated_at": now, "updated_by": by}
    session.execute(
        insert(Setting)
        .values(key=key, **fields)
        .on_conflict_do_update(index_elements=["key"], set_=fields)
    )


def form_values(config: Mapping[str, Any]) -> dict[str, str]:
    """What each input shows for the settings in force."""
    shown: dict[str, str] = {}
    for spec in SPECS:
        shown.update(spec.show(config.get(spec.key)))
    return shown
