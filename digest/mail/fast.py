"""Fast assembly: a digest variant encoded once, then only the personal pieces per subscriber.

``build_message`` (digest.mail.message) is the reference: it fills the slots and lets
``EmailMessage`` fold headers and quoted-printable-encode both parts, which costs
milliseconds per reader. Here each variant is split at its slots and every static piece is
encoded once. Quoted-printable is line based, so every piece is made to end with a soft line
break (``=`` CRLF): the piece after it then starts at column 0 whatever was inserted before,
and a reader's decoder drops the soft breaks, giving back exactly the same text. Per message
only the slot values, ``To``, ``Date``, ``Message-ID`` and ``List-Unsubscribe`` are encoded.
Tests parse both outputs with the stdlib parser and compare headers and decoded parts.
"""

from __future__ import annotations

import binascii
import datetime as dt
import html
import re
import secrets
from collections.abc import Mapping
from email import policy
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr
from typing import Any

from digest.mail.transports import NoLeadingDots
from digest.render import RenderedVariant, brand_name

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
_SLOT = re.compile(r"\{\{ digest_slot:([a-z_]+) \}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Display names made only of these need no quoting or encoding in a header.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 '-]*")
_WIRE = policy.SMTP


class AssemblyError(ValueError):
    """The message cannot be assembled (unusable address, missing slot value)."""


def _clean(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


def _qp(data: str) -> bytes:
    """Quoted-printable with CRLF hard breaks, lines of at most 76 characters, and no line
    starting with "." (see ``_escape_leading_dots``)."""
    encoded = binascii.b2a_qp(data.encode("utf-8"), istext=True).replace(b"\n", CRLF)
    if encoded.startswith(b".") or b"\n." in encoded:
        return _escape_leading_dots(encoded)
    return encoded


def _escape_leading_dots(encoded: bytes) -> bytes:
    """Write a "." that starts a quoted-printable line as "=2E" (the same character).

    Every piece starts at column 0, so once no line of any piece starts with a dot, no line
    of the message does, and the SMTP transport can skip dot-stuffing, a scan of the whole
    message per reader. A line made longer than 76 characters is split with a soft break
    (never inside an "=XX" escape); a part that then starts with a dot is escaped in turn.
    """
    lines: list[bytes] = []
    for line in encoded.split(CRLF):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= 76:
                break
            cut = 75
            if line[cut - 1 : cut] == b"=":
                cut -= 1
            elif line[cut - 2 : cut - 1] == b"=":
                cut -= 2
            lines.append(line[:cut] + b"=")
            line = line[cut:]
        lines.append(line)
    return CRLF.join(lines)


def _header(name: str, value: Any) -> bytes:
    """One header line exactly as EmailMessage would fold it on the wire."""
    return _WIRE.fold_binary(name, _WIRE.header_factory(name, value))


def _normalize_lines(text: str) -> str:
    """What ``EmailMessage.set_content`` does to text: one newline style, final newline."""
    return "\n".join(text.splitlines()) + "\n"


class _Part:
    """One MIME part split at its slots: encoded static pieces and slot names between them."""

    def __init__(self, template: str, subtype: str, escape: bool) -> None:
        self.escape = escape
        self.head = (
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode("ascii")
        self.pieces: list[bytes] = []
        self.slots: list[str] = []
        position = 0
        for match in _SLOT.finditer(template):
            self.pieces.append(self._static(template[position : match.start()]))
            self.slots.append(match.group(1))
            position = match.end()
        self.pieces.append(_qp(template[position:]))

    @staticmethod
    def _static(text: str) -> bytes:
        encoded = _qp(text)
        # End at column 0 so the slot value can be encoded on its own.
        return encoded if encoded.endswith(CRLF) or not encoded else encoded + SOFT_BREAK

    def render(self, out: list[bytes], personal: Mapping[str, str]) -> None:
        out.append(self.head)
        pieces = self.pieces
        for index, name in enumerate(self.slots):
            out.append(pieces[index])
            try:
                value = str(personal[name])
            except KeyError as error:
                raise AssemblyError(f"no value for the personal slot {name!r}") from error
            if self.escape:
                value = html.escape(value, quote=True)
            if value:
                out.append(_qp(value))
                out.append(SOFT_BREAK)
        out.append(pieces[-1])


class PreparedVariant:
    """A rendered variant with everything that is the same for all its readers pre-encoded."""

    def __init__(self, rendered: RenderedVariant, config: Mapping[str, Any]) -> None:
        sender_name, sender_addr = parseaddr(str(config["MAIL_FROM"]))
        if "@" not in sender_addr:
            raise AssemblyError(f"MAIL_FROM={config['MAIL_FROM']!r} has no usable address")
        self.domain = str(config.get("MAIL_DOMAIN") or sender_addr.rsplit("@", 1)[1])
        self.mailto = config.get("UNSUBSCRIBE_MAILTO")
        self.from_header = _header(
            "From", Address(display_name=sender_name or brand_name(config), addr_spec=sender_addr)
        )
        self.subject_header = _header("Subject", _clean(rendered.subject))
        reply_to = config.get("MAIL_REPLY_TO")
        self.reply_to_header = _header("Reply-To", _clean(str(reply_to))) if reply_to else b""
        self.list_id_header = _header(
            "List-Id", f"{_clean(brand_name(config))} <daily.{self.domain}>"
        )
        self.boundary = f"=_digest_{secrets.token_hex(12)}"
        marker = self.boundary.encode("ascii")
        self.top_type = (
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="' + marker + b'"\r\n\r\n'
        )
        self.delimiter = b"--" + marker + CRLF
        # The CRLF before a boundary belongs to the boundary, not to the part: each part's
        # own final line break needs one more in front of the next delimiter.
        self.next_delimiter = CRLF + self.delimiter
        self.closing = CRLF + b"--" + marker + b"--" + CRLF
        self.text = _Part(_normalize_lines(rendered.text), "plain", escape=False)
        self.html = _Part(_normalize_lines(rendered.html), "html", escape=True)
        self._date_cache: tuple[int, bytes] = (-1, b"")

    def _date(self, now: dt.datetime) -> bytes:
        second = int(now.timestamp())
        if self._date_cache[0] != second:
            self._date_cache = (second, b"Date: " + format_datetime(now).encode("ascii") + CRLF)
        return self._date_cache[1]

    def _to(self, email: str, name: str) -> bytes:
        email = email.strip()
        if _CONTROL.search(email) or email.count("@") != 1 or not email.isascii():
            raise AssemblyError(f"{email!r} is not a deliverable address")
        name = _clean(name)
        local, _, domain = email.partition("@")
        if not name and local and domain and " " not in email and "<" not in email:
            return b"To: " + email.encode("ascii") + CRLF
        if _PLAIN_NAME.fullmatch(name) and len(name) + len(email) < 60:
            return f"To: {name} <{email}>\r\n".encode("ascii")
        try:
            return _header("To", Address(display_name=name, addr_spec=email))
        except (ValueError, IndexError) as error:
            raise AssemblyError(f"{email!r} is not a deliverable address") from error

    def assemble(
        self,
        recipient_email: str,
        personal: Mapping[str, str],
        now: dt.datetime,
        message_id: str,
    ) -> bytes:
        """The complete message (CRLF line ends) for one reader."""
        unsubscribe_url = personal.get("unsubscribe_url")
        if not unsubscribe_url:
            raise AssemblyError("a digest needs an unsubscribe_url (List-Unsubscribe)")
        targets = f"<{_clean(unsubscribe_url)}>"
        if self.mailto:
            targets += f", <mailto:{_clean(str(self.mailto))}?subject=unsubscribe>"
        out: list[bytes] = [
            self.from_header,
            self._to(recipient_email, personal.get("name", "")),
            self._date(now),
            b"Message-ID: " + message_id.encode("ascii") + CRLF,
            self.subject_header,
            self.reply_to_header,
            self.list_id_header,
            _list_header("List-Unsubscribe", targets),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ]
        if personal.get("web_url"):
            out.append(_list_header("List-Archive", f"<{_clean(personal['web_url'])}>"))
        out.append(self.top_type)
        out.append(self.delimiter)
        self.text.render(out, personal)
        out.append(self.next_delimiter)
        self.html.render(out, personal)
        out.append(self.closing)
        # Headers fold with leading white space, boundaries start with "--", and every
        # quoted-printable piece went through _qp: no line starts with a dot.
        return NoLeadingDots(b"".join(out))


def _list_header(name: str, value: str) -> bytes:
    """URL headers on one line: a URL cannot be folded, and RFC 5322 allows 998 octets."""
    line = f"{name}: {value}\r\n"
    if len(line) <= 998 and line.isascii():
        return line.encode("ascii")
    return _header(name, value)
