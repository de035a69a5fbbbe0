"""The address checked and normalised, and the other fields of a form cleaned before storing."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from email_validator import (
    EmailNotValidError,
    EmailUndeliverableError,
    ValidatedEmail,
    caching_resolver,
    validate_email,
)
from flask import current_app
from flask_babel import gettext
from sqlalchemy import select

from config import split_host_port
from digest.extensions import DbSession
from digest.models import CATEGORIES, LANGUAGES, Subscriber

if TYPE_CHECKING:
    from dns.resolver import Resolver


# Separators accepted between list items (categories in CSV, domains in config).
_SPLIT = re.compile(r"[;|,\s]+")


class InvalidEmail(ValueError):
    """The address cannot receive the digest; ``str(error)`` is a message for the reader."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        # The validator's own (English) explanation, for logs and the import report.
        self.detail = detail


class BlockedDomain(InvalidEmail):
    """The address belongs to a domain this site refuses (config BLOCKED_EMAIL_DOMAINS)."""


class EmailTaken(Exception):
    """Another subscriber already uses the address asked for."""


def normalize_email(raw: str, check_deliverability: bool | None = None) -> str:
    """The canonical form of an address (lower case, ASCII domain), or ``InvalidEmail``."""
    if check_deliverability is None:
        check_deliverability = bool(current_app.config.get("EMAIL_CHECK_DELIVERABILITY", False))
    text = (raw or "").strip()
    if not text:
        raise InvalidEmail(gettext("Enter your email address."))
    if len(text) > 320:
        raise InvalidEmail(gettext("This email address is too long."))
    try:
        if check_deliverability:
            info = validate_email(text, check_deliverability=True, dns_resolver=_dns_resolver())
            address = _canonical(info)
        else:
            address = _checked_syntax(text)
    except EmailUndeliverableError as error:
        raise InvalidEmail(
            gettext("No mail can be delivered to this domain: check the part after the @."),
            detail=str(error),
        ) from error
    except EmailNotValidError as error:
        raise InvalidEmail(
            gettext("This is not a valid email address."), detail=str(error)
        ) from error
    domain = address.rsplit("@", 1)[1]
    for blocked in blocked_domains():
        if domain == blocked or domain.endswith("." + blocked):
            raise BlockedDomain(gettext("Addresses at this domain cannot subscribe."))
    return address


# A plain local part: letters, digits and _ % + -, with single dots between them. Each one
# passes RFC 5322's dot-atom rule as it stands, which is all the validator asks of an ASCII
# local part; what remains to check for such an address is its domain.
_PLAIN_LOCAL_PART = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*")
# RFC 5321's limit on a path (256) less its angle brackets, as the validator counts it.
_ADDRESS_MAX_LENGTH = 254


@functools.lru_cache(maxsize=64)
def _checked_syntax(text: str) -> str:
    """The canonical form of ``text`` if its syntax is valid (no DNS), else the validator's error.

    Cached for the last few addresses: with rate limits on, a sign-up checks its address
    twice in one request (the per-address limit's key, then the sign-up itself), and the
    check is pure. Refused addresses raise, so they are not kept.

    Most addresses are plain ASCII (``ana.diaz+news@example.org``): for those the domain is
    checked once per domain (``_checked_domain``), which is most of the validator's work,
    and gives the answer the validator gives for the whole address. Any other address
    (quoted, international, longer than the limit) goes to the validator as it stands.
    """
    local_part, at, domain = text.rpartition("@")
    if (
        at
        and len(text) <= _ADDRESS_MAX_LENGTH
        and text.isascii()
        and _PLAIN_LOCAL_PART.fullmatch(local_part)
    ):
        return f"{local_part}@{_checked_domain(domain)}".lower()
    return _canonical(validate_email(text, check_deliverability=False))


@functools.lru_cache(maxsize=256)
def _checked_domain(domain: str) -> str:
    """The ASCII form of an address's ``domain``, or the validator's error for it.

    The domain rules (labels, IDNA, special-use names) do not depend on the local part, so
    the shortest one stands in for it: the validator's length limit on the whole address
    then refuses nothing here that it would accept with the real one. Refused domains raise
    and are not kept.
    """
    return validate_email(f"a@{domain}", check_deliverability=False).ascii_domain


def _canonical(info: ValidatedEmail) -> str:
    # Mailboxes are case-insensitive in practice, and one reader must map to one row.
    return (info.ascii_email or info.normalized).lower()


def _dns_resolver() -> Resolver:
    """The resolver for deliverability checks, from EMAIL_DNS_SERVERS and EMAIL_DNS_TIMEOUT."""
    value = current_app.config.get("EMAIL_DNS_SERVERS") or ()
    servers = _SPLIT.split(value) if isinstance(value, str) else [str(v) for v in value]
    timeout = float(current_app.config.get("EMAIL_DNS_TIMEOUT", 5.0))
    return _cached_resolver(tuple(s.strip() for s in servers if s.strip()), timeout)


@functools.cache
def _cached_resolver(servers: tuple[str, ...], timeout: float) -> Resolver:
    # One per process and setting: its answer cache spares a burst of sign-ups from one
    # domain a lookup each. dnspython is imported here: it is slow to import, and most
    # sites never turn the check on.
    from dns.nameserver import Do53Nameserver
    from dns.resolver import Resolver

    resolver = Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [Do53Nameserver(*split_host_port(s, 53)) for s in servers]
    return caching_resolver(timeout=timeout, dns_resolver=resolver)  # type: ignore[arg-type]


def blocked_domains() -> list[str]:
    """BLOCKED_EMAIL_DOMAINS as a list, whether configured as a list or a comma-separated string."""
    value = current_app.config.get("BLOCKED_EMAIL_DOMAINS") or ()
    items = _SPLIT.split(value) if isinstance(value, str) else [str(v) for v in value]
    return [d.strip().lower().lstrip("@") for d in items if d.strip()]


def clean_categories(categories: Iterable[str] | None) -> list[str]:
    """Known categories in the site's order; an empty or unknown choice means all of them."""
    chosen = {c for c in (categories or ()) if c in CATEGORIES}
    return [c for c in CATEGORIES if c in chosen] or list(CATEGORIES)


def clean_language(language: str | None) -> str:
    """A supported language, or the site's default."""
    if language in LANGUAGES:
        return str(language)
    return str(current_app.config.get("DEFAULT_LANGUAGE", "fr"))


def consent_ip(ip: str | None) -> str | None:
    """The IP as stored in the consent record: keyed hash when CONSENT_HASH_IP is set."""
    if not ip:
        return None
    if not current_app.config.get("CONSENT_HASH_IP", False):
        return ip[:64]
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()


def find_by_email(session: DbSession, email: str) -> Subscriber | None:
    """The subscriber with this (already normalized) address, if any."""
    return session.scalar(select(Subscriber).where(Subscriber.email == email))
