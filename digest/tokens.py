"""Signed links for subscribers: bound to a purpose and to the subscriber's token version.

A token carries the subscriber id, the token version current when it was made, its
purpose and when it was issued, signed with the app's SECRET_KEY (itsdangerous). Bumping
``Subscriber.token_version`` revokes every link already sent to that subscriber.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hmac
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_decode

from digest.extensions import DbSession
from digest.models import Subscriber

PURPOSES: tuple[str, ...] = ("confirm", "manage", "unsubscribe", "email")
# The page of the public site that honours each purpose's link (digest.web.public).
LINK_PATHS: dict[str, str] = {
    "confirm": "/confirm/",
    "manage": "/manage/",
    "unsubscribe": "/unsubscribe/",
    "email": "/email/",
}
# The salt separates these signatures from anything else signed with the same SECRET_KEY.
_SALT = "digest.subscriber-link"


class TokenError(Exception):
    """A link that cannot be honoured; ``reason`` names which kind for pages and logs."""

    reason = "invalid"


class Invalid(TokenError):
    """Tampered, truncated or signed with another key."""

    reason = "invalid"


class Expired(TokenError):
    """Older than the purpose allows (confirmation links expire)."""

    reason = "expired"


class Revoked(TokenError):
    """The subscriber no longer exists or their links were revoked (token version bumped)."""

    reason = "revoked"


class WrongPurpose(TokenError):
    """A genuine link, used for something else than it was made for."""

    reason = "wrong_purpose"


# Longer names for readers who expect them; the short ones are the contract.
InvalidToken = Invalid
ExpiredToken = Expired
RevokedToken = Revoked


def _serializer() -> URLSafeSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=4)
def _serializer_for(secret_key: str | bytes) -> URLSafeSerializer:
    # Kept per key rather than built per link: a sign-up signs one on every request.
    return URLSafeSerializer(secret_key, salt=_SALT)


def link_signer() -> LinkSigner:
    """A ``LinkSigner`` for the app's SECRET_KEY, kept between requests (its key derivation
    is what costs): web requests that mail a link (sign-up) sign it in microseconds."""
    return _link_signer_for(current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=4)
def _link_signer_for(secret_key: str | bytes) -> LinkSigner:
    return LinkSigner(secret_key)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkOwner(Protocol):
    """What a link is made from: a stored ``Subscriber``, or a plain copy of its id and version."""

    @property
    def id(self) -> int | None: ...

    @property
    def token_version(self) -> int | None: ...


def make_token(
    subscriber: LinkOwner,
    purpose: str,
    now: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A URL-safe signed token for ``subscriber`` usable only for ``purpose``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")
    if subscriber.id is None:
        raise ValueError("the subscriber must be flushed (have an id) before making a token")
    issued = now or _utcnow()
    payload: dict[str, Any] = {
        "s": subscriber.id,
        "v": subscriber.token_version or 1,
        "p": purpose,
        "t": int(issued.timestamp()),
    }
    if extra:
        payload["x"] = extra
    return str(_serializer().dumps(payload))


class LinkSigner:
    """``make_token`` for many subscribers in a row (a digest run): the same tokens, made in
    a few microseconds instead of tens, because the signing key is derived once and the
    small payload is written directly. Tests check it matches ``make_token`` exactly, and
    that ``read`` (every link a request checks) accepts and refuses what the serializer does."""

    def __init__(self, secret_key: str | bytes) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=_SALT)
        signer = self._serializer.make_signer()
        self._separator: bytes = signer.sep
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)

    def make(self, subscriber_id: int, token_version: int | None, purpose: str, issued: int) -> str:
        """The token ``make_token`` gives for this subscriber and purpose at ``issued`` (epoch)."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")
        # Compact JSON, keys in make_token's order; the values are ints and a known word.
        payload = (
            f'{{"s":{int(subscriber_id)},"v":{int(token_version or 1)},'
            f'"p":"{purpose}","t":{int(issued)}}}'
        ).encode("ascii")
        if len(zlib.compress(payload)) < len(payload) - 1:
            # The serializer would send this one compressed: let it.
            return str(
                self._serializer.dumps(
                    {"s": subscriber_id, "v": token_version or 1, "p": purpose, "t": issued}
                )
            )
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        mac = self._mac.copy()
        mac.update(body)
        signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")
        return (body + self._separator + signature).decode("ascii")

    def read(self, token: str) -> Any:
        """The payload of a token signed with this key, as the serializer's ``loads`` reads
        it (``BadSignature`` the same way), without deriving the key again on every call."""
        signed = token.encode("utf-8")
        if self._separator not in signed:
            raise BadSignature("the link has no signature")
        body, signature = signed.rsplit(self._separator, 1)
        try:
            given = base64_decode(signature)
        except Exception as error:  # any undecodable signature is a bad one, as in itsdangerous
            raise BadSignature("the link's signature is damaged") from error
        mac = self._mac.copy()
        mac.update(body)
        if not hmac.compare_digest(given, mac.digest()):
            raise BadSignature("the link's signature does not match")
        return self._serializer.load_payload(body)


def link_url(
    subscriber: LinkOwner, purpose: str, now: dt.datetime, extra: dict[str, Any] | None = None
) -> str:
    """The absolute link to ``purpose``'s page for ``subscriber``, issued at ``now``.

    Mail signs its links when it is sent (``digest.mail.assembly``), with the token version
    the subscriber has then. ``extra`` is signed into the link too (a change of address
    names the subscription it moves), as ``make_token`` does.
    """
    if purpose not in LINK_PATHS:
        raise ValueError(f"no page takes {purpose!r} links; expected one of {tuple(LINK_PATHS)}")
    if subscriber.id is None:
        raise ValueError("the subscriber must be flushed (have an id) before making a token")
    if extra:
        # Rare (a change of address) and never in a web request: the serializer does it.
        token = make_token(subscriber, purpose, now=now, extra=extra)
    else:
        token = link_signer().make(
            subscriber.id, subscriber.token_version, purpose, int(now.timestamp())
        )
    return f"{current_app.config['PUBLIC_URL']}{LINK_PATHS[purpose]}{token}"


def default_max_age(purpose: str) -> dt.timedelta | None:
    """How long a link for ``purpose`` stays valid: confirmations expire, the rest don't."""
    if purpose in ("confirm", "email"):
        return dt.timedelta(days=int(current_app.config.get("CONFIRM_MAX_AGE_DAYS", 7)))
    return None


@dataclass(frozen=True)
class LinkClaim:
    """What a genuine link says: whose it is, at which token version, and any extra data."""

    subscriber_id: int
    token_version: int
    extra: dict[str, Any]


def check_link(
    token: str,
    purpose: str,
    max_age: dt.timedelta | int | None = None,
    now: dt.datetime | None = None,
) -> LinkClaim:
    """Check ``token``'s signature, purpose and age, without the database.

    Raises ``Invalid``, ``WrongPurpose`` or ``Expired``; whether its subscriber still exists
    at its token version (else ``Revoked``) is for the caller to check.
    """
    try:
        payload = link_signer().read(token)
    except BadSignature as error:
        raise Invalid("the link is damaged or was not made by this site") from error
    if not isinstance(payload, dict) or not {"s", "v", "p", "t"} <= payload.keys():
        raise Invalid("the link is damaged or was not made by this site")
    if payload["p"] != purpose:
        raise WrongPurpose(f"this link is for {payload['p']!r}, not {purpose!r}")
    limit = default_max_age(purpose) if max_age is None else max_age
    if isinstance(limit, int):
        limit = dt.timedelta(seconds=limit)
    if limit is not None:
        issued = dt.datetime.fromtimestamp(int(payload["t"]), dt.UTC)
        if (now or _utcnow()) - issued > limit:
            raise Expired("the link has expired")
    extra = payload.get("x") or {}
    return LinkClaim(int(payload["s"]), int(payload["v"]), extra if isinstance(extra, dict) else {})


def read_token_payload(
    session: DbSession,
    token: str,
    purpose: str,
    max_age: dt.timedelta | int | None = None,
    now: dt.datetime | None = None,
) -> tuple[Subscriber, dict[str, Any]]:
    """Check ``token`` for ``purpose`` and return its subscriber and any extra data."""
    claim = check_link(token, purpose, max_age=max_age, now=now)
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or subscriber.token_version != claim.token_version:
        raise Revoked("the link no longer works")
    return subscriber, claim.extra


def read_token(
    session: DbSession,
    token: str,
    purpose: str,
    max_age: dt.timedelta | int | None = None,
    now: dt.datetime | None = None,
) -> Subscriber:
    """The subscriber ``token`` was made for; raises a ``TokenError`` subclass otherwise."""
    subscriber, _extra = read_token_payload(session, token, purpose, max_age=max_age, now=now)
    return subscriber


def revoke_links(subscriber: Subscriber) -> None:
    """Make every link already sent to ``subscriber`` stop working."""
    subscriber.token_version = (subscriber.token_version or 1) + 1
