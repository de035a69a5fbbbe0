"""Editors' accounts: creation, password hashing (argon2), login with lockout, sessions."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select, update

from digest import audit
from digest.extensions import DbSession
from digest.models import AuditEvent, Correction, Delivery, Editor, Subscriber

ROLES: tuple[str, ...] = ("admin", "editor")
MIN_PASSWORD_LENGTH = 10
# Longer inputs only cost hashing time; nobody types a password this long.
MAX_PASSWORD_LENGTH = 1024
# A hash that no password matches: invited editors have it until they choose one.
UNUSABLE_PASSWORD = "!unusable"

_hashers: dict[tuple[int, int, int], tuple[PasswordHasher, str]] = {}


def _hasher() -> tuple[PasswordHasher, str]:
    """The argon2 hasher for the configured cost, with a hash of no one's password.

    The dummy hash is verified when the address is unknown, so a wrong address costs as much
    time as a wrong password and response times do not reveal who has an account.
    """
    config = current_app.config if has_app_context() else {}
    default = PasswordHasher()
    cost = (
        int(config.get("ARGON2_TIME_COST", default.time_cost)),
        int(config.get("ARGON2_MEMORY_KIB", default.memory_cost)),
        int(config.get("ARGON2_PARALLELISM", default.parallelism)),
    )
    if cost not in _hashers:
        hasher = PasswordHasher(time_cost=cost[0], memory_cost=cost[1], parallelism=cost[2])
        _hashers[cost] = (hasher, hasher.hash("not the password of anyone"))
    return _hashers[cost]


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures lock an account or an address, and for how long."""

    account_failures: int = 5
    account_lock: dt.timedelta = dt.timedelta(minutes=15)
    address_failures: int = 20
    address_window: dt.timedelta = dt.timedelta(minutes=15)


class AccountError(Exception):
    """An account operation was refused; the message can be shown to the person."""


class InvalidCredentials(AccountError):
    """Unknown address or wrong password (deliberately not told apart)."""


class AccountLocked(AccountError):
    """Too many failed logins for this account; it opens again at ``until``."""

    def __init__(self, until: dt.datetime) -> None:
        super().__init__("Too many failed attempts: this account is locked for a while.")
        self.until = until


class AddressLocked(AccountError):
    """Too many failed logins from this network address."""

    def __init__(self) -> None:
        super().__init__("Too many failed attempts from your network: try again later.")


class EditorExists(AccountError):
    """An editor with this address already exists."""


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (SQLite hands back naive values for UTC columns)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def normalize_email(email: str) -> str:
    """The address as stored: trimmed, lower case; raises AccountError when malformed."""
    value = (email or "").strip().lower()
    if not _EMAIL.match(value) or len(value) > 320:
        raise AccountError(f"{email!r} is not an email address.")
    return value


def check_password_strength(password: str) -> None:
    """Refuse passwords that are too short or too long to be sensible."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"The password may have at most {MAX_PASSWORD_LENGTH} characters.")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher()[0].hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for unusable hashes)."""
    try:
        return _hasher()[0].verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def find_editor(session: DbSession, email: str) -> Editor | None:
    """The editor with this address, if any."""
    try:
        address = normalize_email(email)
    except AccountError:
        return None
    return session.scalar(select(Editor).where(Editor.email == address))


def create_editor(
    session: DbSession,
    email: str,
    password: str | None,
    role: str = "editor",
    now: dt.datetime | None = None,
) -> Editor:
    """Add an editor (flushed, not committed); ``password=None`` makes an invited account."""
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    address = normalize_email(email)
    if session.scalar(select(func.count(Editor.id)).where(Editor.email == address)):
        raise EditorExists(f"An editor with the address {address} already exists.")
    if password is not None:
        check_password_strength(password)
    editor = Editor(
        email=address,
        password_hash=hash_password(password) if password is not None else UNUSABLE_PASSWORD,
        role=role,
        failed_logins=0,
        session_version=1,
    )
    if now is not None:
        editor.created_at = now
    session.add(editor)
    session.flush()
    return editor


def set_password(editor: Editor, password: str) -> None:
    """Give ``editor`` a new password; every other session of theirs ends."""
    check_password_strength(password)
    editor.password_hash = hash_password(password)
    editor.failed_logins = 0
    editor.locked_until = None
    log_out_everywhere(editor)


def log_out_everywhere(editor: Editor) -> None:
    """End every session of ``editor`` (their session id no longer matches)."""
    editor.session_version = (editor.session_version or 1) + 1


def load_editor(session: DbSession, user_id: str) -> Editor | None:
    """The editor behind a session id ``"id:session_version"``, or None when stale or bogus."""
    number, _, version = (user_id or "").partition(":")
    if not (number.isdigit() and version.isdigit()) or len(user_id) > 40:
        return None
    editor = session.get(Editor, int(number))
    if editor is None or editor.session_version != int(version):
        return None
    return editor


def authenticate(
    session: DbSession,
    email: str,
    password: str,
    ip: str | None,
    now: dt.datetime,
    policy: LockoutPolicy | None = None,
) -> Editor:
    """The editor with these credentials, recording the attempt; raises AccountError otherwise.

    Locked accounts and addresses are refused before the password is checked, so guessing
    continues to fail even with the right password until the lock ends. The caller commits.
    """
    policy = policy or LockoutPolicy()
    now = as_utc(now)
    typed = (email or "").strip()[:320]
    if ip is not None and policy.address_failures > 0:
        failures = audit.count_since(session, "login.failed", now - policy.address_window, ip=ip)
        if failures >= policy.address_failures:
            audit.record(
                session,
                "login.refused",
                now,
                actor=typed,
                ip=ip,
                detail={"reason": "address locked"},
            )
            raise AddressLocked()
    editor = find_editor(session, email)
    if editor is not None and editor.locked_until and as_utc(editor.locked_until) > now:
        audit.record(
            session, "login.refused", now, editor=editor, ip=ip, detail={"reason": "account locked"}
        )
        raise AccountLocked(as_utc(editor.locked_until))
    password = (password or "")[:MAX_PASSWORD_LENGTH]
    if editor is None:
        verify_password(_hasher()[1], password)
        audit.record(
            session, "login.failed", now, actor=typed, ip=ip, detail={"reason": "unknown address"}
        )
        raise InvalidCredentials("Wrong email or password.")
    if not verify_password(editor.password_hash, password):
        editor.failed_logins = (editor.failed_logins or 0) + 1
        detail: dict[str, object] = {"reason": "wrong password"}
        if editor.failed_logins >= policy.account_failures:
            editor.locked_until = now + policy.account_lock
            editor.failed_logins = 0
            detail["locked_until"] = editor.locked_until.isoformat()
        audit.record(session, "login.failed", now, editor=editor, ip=ip, detail=detail)
        raise InvalidCredentials("Wrong email or password.")
    if _hasher()[0].check_needs_rehash(editor.password_hash):
        editor.password_hash = hash_password(password)
    editor.failed_logins = 0
    editor.locked_until = None
    audit.record(session, "login", now, editor=editor, ip=ip)
    return editor


def list_editors(session: DbSession) -> Sequence[Editor]:
    """Every editor, admins first, then by address."""
    return session.scalars(select(Editor).order_by(Editor.role, Editor.email)).all()


def admins_count(session: DbSession) -> int:
    """How many editors have the admin role (the last one may not be demoted or removed)."""
    return session.scalar(select(func.count(Editor.id)).where(Editor.role == "admin")) or 0


INVITE_SALT = "digest.editor-invite"
_BROKEN_INVITE = (
    "This invitation link is not valid: open the whole link from the email (some mail "
    "programs cut long links), or ask an admin for a new invitation."
)
INVITE_MAX_AGE = dt.timedelta(days=7)


INVITE_KIND = "invite"
# Consent source of the pending ledger row an invitation is mailed to (never sent digests).
INVITE_SOURCE = "editor-invite"


def is_invited(editor: Editor) -> bool:
    """Invited and not yet joined: no password chosen."""
    return editor.password_hash == UNUSABLE_PASSWORD


def queue_invitation(
    session: DbSession, editor: Editor, link_for: Callable[[str], str], now: dt.datetime
) -> Delivery:
    """Mail ``editor`` a link to choose a password, through the delivery ledger; caller commits.

    Each invitation withdraws the earlier ones (their links stop working), so only the
    newest mail counts. ``link_for`` turns the token into the absolute link.
    """
    from flask import render_template

    from digest.mail.delivery import enqueue_message, staff_mailbox
    from digest.render import brand_name
    from digest.settings import in_force

    if not is_invited(editor):
        raise AccountError(f"{editor.email} has already joined the desk.")
    log_out_everywhere(editor)
    token = make_invite_token(editor, current_app.config["SECRET_KEY"])
    mailbox = staff_mailbox(session, editor.email, INVITE_SOURCE, "en", now)
    context = {
        "link": link_for(token),
        "brand": brand_name(in_force()),
        "role": editor.role,
        "days": INVITE_MAX_AGE.days,
        "subscriber": mailbox,
    }
    return enqueue_message(
        session,
        mailbox,
        INVITE_KIND,
        render_template("web/mail/invite.subject.txt", **context).strip(),
        render_template("web/mail/invite.txt", **context),
        render_template("web/mail/invite.html", **context),
        now,
    )


def invitation_mails(session: DbSession) -> dict[str, Delivery]:
    """The newest invitation mail to each address, to show how its delivery went."""
    rows = session.execute(
        select(Subscriber.email, Delivery)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.kind == INVITE_KIND)
        .order_by(Delivery.id)
    ).all()
    return {email: delivery for email, delivery in rows}


def make_invite_token(editor: Editor, secret_key: str) -> str:
    """A signed token letting ``editor`` choose a password; using it bumps the version."""
    serializer = URLSafeTimedSerializer(secret_key, salt=INVITE_SALT)
    return serializer.dumps({"id": editor.id, "v": editor.session_version})


def read_invite_token(
    session: DbSession, token: str, secret_key: str, max_age: dt.timedelta = INVITE_MAX_AGE
) -> Editor:
    """The editor an invitation is for; AccountError when forged, expired or already used."""
    serializer = URLSafeTimedSerializer(secret_key, salt=INVITE_SALT)
    try:
        data = serializer.loads(token, max_age=int(max_age.total_seconds()))
    except SignatureExpired as error:
        raise AccountError("This invitation has expired: ask an admin for a new one.") from error
    except BadSignature as error:
        raise AccountError(_BROKEN_INVITE) from error
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        raise AccountError(_BROKEN_INVITE)
    editor = session.get(Editor, data["id"])
    if editor is None or editor.session_version != data.get("v"):
        raise AccountError("This invitation has already been used or was withdrawn.")
    return editor


def change_role(session: DbSession, editor: Editor, role: str) -> None:
    """Give ``editor`` another role; the last admin keeps theirs."""
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    if editor.role == "admin" and role != "admin" and admins_count(session) <= 1:
        raise AccountError("The last admin cannot stop being one: make someone else admin first.")
    editor.role = role


def remove_editor(session: DbSession, editor: Editor) -> None:
    """Delete an editor (their audit events stay, with the address they had)."""
    if editor.role == "admin" and admins_count(session) <= 1:
        raise AccountError("The last admin cannot be removed.")
    # Said explicitly because SQLite only honours ON DELETE SET NULL with foreign keys on.
    for model in (AuditEvent, Correction):
        session.execute(update(model).where(model.editor_id == editor.id).values(editor_id=None))
    session.delete(editor)


def unlock(editor: Editor) -> None:
    """Lift an account lockout before it ends by itself."""
    editor.failed_logins = 0
    editor.locked_until = None
