"""An edition's message exactly as sent, taken apart for the preview page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from digest.models import Edition, Subscriber


@dataclass(frozen=True)
class Preview:
    """The parts of one built message an editor inspects."""

    message: EmailMessage
    subject: str
    headers: str
    html: str
    text: str
    language: str
    categories: tuple[str, ...]
    recipient: str


def _raw_headers(message: EmailMessage) -> str:
    """The header block as it goes on the wire (folded and encoded)."""
    raw = message.as_bytes()
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = raw.partition(separator)
        if found:
            return head.decode("ascii", "replace").replace("\r\n", "\n")
    return raw.decode("ascii", "replace")


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


def build_preview(
    edition: Edition,
    *,
    language: str,
    categories: Sequence[str],
    recipient: Subscriber,
    config: Mapping[str, Any],
    subject_prefix: str = "",
) -> Preview:
    """Render ``edition`` for one variant and build the message ``recipient`` would get.

    The same two calls as the real send (``render_variant`` then ``build_message``), so what
    the editor sees is what subscribers get.
    """
    from digest.mail.message import build_message, personal_links
    from digest.render import render_variant

    rendered = render_variant(edition, language, list(categories))
    if subject_prefix:
        rendered = _with_subject(rendered, subject_prefix + rendered.subject)
    personal = personal_links(recipient, edition)
    message = build_message(rendered, recipient.email, personal, config)
    return Preview(
        message=message,
        subject=str(message["Subject"] or rendered.subject),
        headers=_raw_headers(message),
        html=_part(message, "html"),
        text=_part(message, "plain"),
        language=language,
        categories=tuple(categories),
        recipient=recipient.email,
    )


def _with_subject(rendered: Any, subject: str) -> Any:
    """A copy of a rendered variant with another subject (it is a frozen dataclass)."""
    import dataclasses

    return dataclasses.replace(rendered, subject=subject)
