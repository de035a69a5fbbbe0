"""DKIM signing (dkimpy) of finished messages, when a selector and a key are configured."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import dkim

# What the signature covers: the headers a reader sees and the list headers that let a
# mailbox provider trust the one-click unsubscribe (RFC 8058 asks for them to be signed).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


class SigningError(ValueError):
    """The DKIM configuration cannot sign (missing or unreadable key)."""


class DkimSigner:
    """Signs messages for the domain of MAIL_FROM with one selector and private key."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.private_key = private_key

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DkimSigner | None:
        """A signer when DKIM_SELECTOR and DKIM_KEY_FILE are set, else None."""
        selector, key_file = config.get("DKIM_SELECTOR"), config.get("DKIM_KEY_FILE")
        if not selector and not key_file:
            return None
        if not (selector and key_file):
            raise SigningError("DKIM needs both DKIM_SELECTOR and DKIM_KEY_FILE")
        try:
            key = Path(key_file).read_bytes()
        except OSError as error:
            raise SigningError(f"cannot read DKIM_KEY_FILE {key_file}: {error}") from error
        domain = str(
            config.get("DKIM_DOMAIN") or parseaddr(str(config["MAIL_FROM"]))[1].rpartition("@")[2]
        )
        signer = cls(str(selector), domain, key)
        # Fail at start-up, not on the first message, when the key is not a usable RSA key.
        signer.sign(b"From: check@" + domain.encode() + b"\r\n\r\ncheck\r\n")
        return signer

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.private_key,
                include_headers=list(SIGNED_HEADERS),
            )
        except Exception as error:
            # dkimpy reports a bad key as DKIMException, binascii.Error or ValueError
            # depending on where parsing fails; all mean "this key cannot sign".
            raise SigningError(f"DKIM signing failed ({type(error).__name__}: {error})") from error
        return signature + message
