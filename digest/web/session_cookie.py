"""Flask's signed-cookie session, with its signing serializer kept instead of rebuilt.

Flask builds a new ``URLSafeTimedSerializer`` each time it opens or saves a session, that is
on every request, even one that sends no cookie and stores nothing (a sign-up POST). The
serializer depends only on the secret key, its fallbacks and the class settings, so it is
kept per key set; changing SECRET_KEY (or the fallbacks) simply makes a new one.
"""

from __future__ import annotations

import functools

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class KeptSerializerSessionInterface(SecureCookieSessionInterface):
    """The default cookie session; only the serializer is built once per key set."""

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        fallbacks = tuple(app.config["SECRET_KEY_FALLBACKS"] or ())
        return self._serializer_for(app.secret_key, fallbacks)

    @functools.lru_cache(maxsize=4)  # noqa: B019  (one interface per app, kept for its life)
    def _serializer_for(
        self, secret_key: str | bytes, fallbacks: tuple[str | bytes, ...]
    ) -> URLSafeTimedSerializer:
        # itsdangerous signs with the last key and accepts all: the current key goes last.
        return URLSafeTimedSerializer(
            [*fallbacks, secret_key],
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )
