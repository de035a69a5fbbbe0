"""The audit trail: every editor action recorded with who, when and from where."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from digest.extensions import DbSession
from digest.models import AuditEvent, Editor


def record(
    session: DbSession,
    action: str,
    now: dt.datetime,
    *,
    editor: Editor | None = None,
    actor: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Add one audit event to the session (the caller commits with the action itself)."""
    event = AuditEvent(
        created_at=now,
        editor_id=editor.id if editor is not None else None,
        actor=actor if actor is not None else (editor.email if editor is not None else None),
        action=action,
        target=target[:300] if target else None,
        detail=detail,
        ip=ip[:64] if ip else None,
    )
    session.add(event)
    return event


def recent_events(
    session: DbSession, *, action: str | None = None, limit: int = 200, offset: int = 0
) -> Sequence[AuditEvent]:
    """The newest events first, optionally only one kind of action."""
    query = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    return session.scalars(query.limit(limit).offset(offset)).all()


def count_since(
    session: DbSession, action: str, since: dt.datetime, *, ip: str | None = None
) -> int:
    """How many ``action`` events happened after ``since`` (from ``ip`` when given)."""
    query = select(func.count(AuditEvent.id)).where(
        AuditEvent.action == action, AuditEvent.created_at > since
    )
    if ip is not None:
        query = query.where(AuditEvent.ip == ip)
    return session.scalar(query) or 0


def actions(session: DbSession) -> list[str]:
    """Every action name that appears in the trail, for the audit page's filter."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
