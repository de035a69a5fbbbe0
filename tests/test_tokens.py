"""Signed subscriber links: right purpose, right subscriber, revocable, confirmations expire."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from itsdangerous import BadSignature, URLSafeSerializer

from digest import tokens
from digest.extensions import db
from digest.models import Subscriber

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _subscriber(email: str = "reader@example.org") -> Subscriber:
    subscriber = Subscriber(email=email, language="fr")
    db.session.add(subscriber)
    db.session.flush()
    return subscriber


@pytest.mark.parametrize("purpose", ["confirm", "manage", "unsubscribe"])
def test_a_token_leads_back_to_its_subscriber(app: Flask, purpose: str) -> None:
    reader = _subscriber()
    other = _subscriber("other@example.org")
    token = tokens.make_token(reader, purpose, now=NOW)
    assert tokens.read_token(db.session, token, purpose, now=NOW) is reader
    assert tokens.read_token(db.session, tokens.make_token(other, purpose), purpose) is other


def test_a_token_is_refused_for_another_purpose(app: Flask) -> None:
    token = tokens.make_token(_subscriber(), "manage", now=NOW)
    with pytest.raises(tokens.WrongPurpose):
        tokens.read_token(db.session, token, "unsubscribe", now=NOW)
    with pytest.raises(tokens.TokenError):
        tokens.read_token(db.session, token, "confirm", now=NOW)


def test_a_changed_character_makes_the_token_invalid(app: Flask) -> None:
    token = tokens.make_token(_subscriber(), "manage", now=NOW)
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for bad in (tampered, "", "not-a-token", token + "x", token.replace(".", "", 1)):
        with pytest.raises(tokens.Invalid):
            tokens.read_token(db.session, bad, "manage", now=NOW)


def test_a_token_signed_with_another_key_is_invalid(app: Flask) -> None:
    token = tokens.make_token(_subscriber(), "manage", now=NOW)
    app.config["SECRET_KEY"] = "rotated"
    with pytest.raises(tokens.Invalid):
        tokens.read_token(db.session, token, "manage", now=NOW)


def test_confirmation_links_expire_after_the_configured_days(app: Flask) -> None:
    app.config["CONFIRM_MAX_AGE_DAYS"] = 7
    reader = _subscriber()
    token = tokens.make_token(reader, "confirm", now=NOW)
    just_in_time = NOW + dt.timedelta(days=7)
    assert tokens.read_token(db.session, token, "confirm", now=just_in_time) is reader
    with pytest.raises(tokens.Expired):
        tokens.read_token(db.session, token, "confirm", now=just_in_time + dt.timedelta(minutes=1))
    # An explicit max_age overrides the default.
    with pytest.raises(tokens.Expired):
        tokens.read_token(db.session, token, "confirm", max_age=60, now=NOW + dt.timedelta(hours=1))


def test_manage_and_unsubscribe_links_do_not_expire(app: Flask) -> None:
    reader = _subscriber()
    much_later = NOW + dt.timedelta(days=3650)
    for purpose in ("manage", "unsubscribe"):
        token = tokens.make_token(reader, purpose, now=NOW)
        assert tokens.read_token(db.session, token, purpose, now=much_later) is reader


def test_bumping_the_token_version_revokes_every_link(app: Flask) -> None:
    reader = _subscriber()
    old = tokens.make_token(reader, "manage", now=NOW)
    tokens.revoke_links(reader)
    db.session.flush()
    with pytest.raises(tokens.Revoked):
        tokens.read_token(db.session, old, "manage", now=NOW)
    fresh = tokens.make_token(reader, "manage", now=NOW)
    assert tokens.read_token(db.session, fresh, "manage", now=NOW) is reader


def test_a_deleted_subscribers_link_is_revoked(app: Flask) -> None:
    reader = _subscriber()
    token = tokens.make_token(reader, "unsubscribe", now=NOW)
    db.session.delete(reader)
    db.session.flush()
    with pytest.raises(tokens.Revoked):
        tokens.read_token(db.session, token, "unsubscribe", now=NOW)


def test_extra_data_travels_signed(app: Flask) -> None:
    reader = _subscriber()
    token = tokens.make_token(reader, "email", now=NOW, extra={"email": "new@example.org"})
    found, extra = tokens.read_token_payload(db.session, token, "email", now=NOW)
    assert found is reader
    assert extra == {"email": "new@example.org"}


def test_unknown_purposes_and_unsaved_subscribers_are_programming_errors(app: Flask) -> None:
    with pytest.raises(ValueError, match="purpose"):
        tokens.make_token(_subscriber(), "everything")
    with pytest.raises(ValueError, match="flushed"):
        tokens.make_token(Subscriber(email="x@example.org"), "manage")


def test_the_run_signer_makes_exactly_make_tokens_tokens(app: Flask) -> None:
    signer = tokens.LinkSigner(app.config["SECRET_KEY"])
    reader = _subscriber()
    for version in (None, 1, 9):
        reader.token_version = version
        for purpose in tokens.PURPOSES:
            for when in (NOW, NOW + dt.timedelta(days=400), dt.datetime(1970, 1, 1, tzinfo=dt.UTC)):
                made = signer.make(reader.id, version, purpose, int(when.timestamp()))
                assert made == tokens.make_token(reader, purpose, now=when)
    reader.token_version = 1
    made = signer.make(reader.id, 1, "manage", int(NOW.timestamp()))
    assert tokens.read_token(db.session, made, "manage", now=NOW) is reader
    with pytest.raises(ValueError):
        signer.make(reader.id, 1, "anything", 0)
    # Another key's tokens are not this site's.
    foreign = tokens.LinkSigner("another key").make(reader.id, 1, "manage", 0)
    with pytest.raises(tokens.Invalid):
        tokens.read_token(db.session, foreign, "manage", now=NOW)


def test_the_run_signer_reads_what_the_serializer_reads(app: Flask) -> None:
    serializer = URLSafeSerializer(app.config["SECRET_KEY"], salt="digest.subscriber-link")
    signer = tokens.LinkSigner(app.config["SECRET_KEY"])
    reader = _subscriber()
    plain = tokens.make_token(reader, "unsubscribe", now=NOW)
    # Long extra data is sent compressed (the payload then starts with a dot).
    packed = tokens.make_token(reader, "email", now=NOW, extra={"note": "abc" * 200})
    assert packed.startswith(".")
    body, signature = plain.rsplit(".", 1)
    candidates = [
        plain,
        packed,
        body + "." + signature[:-1],
        body + "." + signature + "A",
        body[:-1] + "." + signature,
        body + "." + signature[:5] + "!" + signature[5:],  # a stray character
        body + "." + "*" * len(signature),
        body + ".",
        body,
        "." + plain,
        tokens.LinkSigner("another key").make(reader.id, 1, "manage", 0),
        "",
        "é.é",
    ]

    def outcome(read: Callable[[str], Any], token: str) -> Any:
        try:
            return read(token)
        except BadSignature as error:
            return type(error)

    for token in candidates:
        assert outcome(signer.read, token) == outcome(serializer.loads, token), token
    assert signer.read(plain)["p"] == "unsubscribe"
    assert signer.read(packed)["x"] == {"note": "abc" * 200}
