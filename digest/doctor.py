"""`digest doctor`: look at the local configuration and say what to fix before mail goes out."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

OK = "ok"
WARNING = "warning"
ERROR = "error"
# The development default in config.py: anyone who reads the repository knows it.
KNOWN_WEAK_KEYS = frozenset({"dev-only-not-secret", "test-secret", "secret", "changeme"})
MIN_KEY_LENGTH = 32
# Domains that can never pass SPF/DKIM/DMARC on the public internet.
PLACEHOLDER_DOMAINS = ("localhost", "example.org", "example.com", "example.net", "invalid")
PLACEHOLDER_SUFFIXES = (".localhost", ".local", ".test", ".example", ".invalid", ".internal")
DKIM_KEYGEN = (
    "openssl genrsa -out dkim-private.pem 2048 && "
    "openssl rsa -in dkim-private.pem -pubout -out dkim-public.pem"
)


@dataclass
class Finding:
    """One thing the doctor looked at: how it stands and, if not well, what to do."""

    level: str
    topic: str
    message: str
    fix: str | None = None


def _is_placeholder(domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    if domain in PLACEHOLDER_DOMAINS or domain.endswith(PLACEHOLDER_SUFFIXES) or "." not in domain:
        return True
    try:
        address = ipaddress.ip_address(domain)
    except ValueError:
        return False
    return address.is_private or address.is_loopback


def check_secret_key(key: object, production: bool) -> Finding:
    """SECRET_KEY set, not a published default, long and varied enough to resist guessing."""
    serious = ERROR if production else WARNING
    fix = (
        "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'` "
        "and set DIGEST_SECRET_KEY"
    )
    if not isinstance(key, str) or not key:
        return Finding(ERROR, "secret key", "SECRET_KEY is not set", fix)
    if key in KNOWN_WEAK_KEYS:
        return Finding(serious, "secret key", "SECRET_KEY is a published default value", fix)
    if len(key) < MIN_KEY_LENGTH:
        return Finding(
            serious,
            "secret key",
            f"SECRET_KEY has {len(key)} characters; use at least {MIN_KEY_LENGTH}",
            fix,
        )
    if len(set(key)) < 10:
        return Finding(serious, "secret key", "SECRET_KEY repeats too few characters", fix)
    return Finding(OK, "secret key", f"SECRET_KEY is set ({len(key)} characters)")


def check_public_url(url: str, production: bool) -> Finding:
    """Links in mails must point at the public https address in production."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if production and parts.scheme != "https":
        return Finding(
            ERROR,
            "public url",
            f"PUBLIC_URL is {url}: links in mails and cookies need https in production",
            "serve the site over TLS and set DIGEST_PUBLIC_URL=https://your.domain",
        )
    if production and _is_placeholder(host):
        return Finding(
            ERROR,
            "public url",
            f"PUBLIC_URL points at {host}, which readers cannot reach",
            "set DIGEST_PUBLIC_URL to the site's public address",
        )
    return Finding(OK, "public url", f"links in mails point at {url}")


def check_sender(mail_from: str, mail_domain: str, production: bool) -> list[Finding]:
    """The From address has a real domain that SPF, DKIM and DMARC can vouch for."""
    address = parseaddr(mail_from)[1]
    domain = address.rpartition("@")[2].lower()
    serious = ERROR if production else WARNING
    if not domain:
        return [Finding(ERROR, "sender", f"MAIL_FROM {mail_from!r} has no address", None)]
    findings = []
    if _is_placeholder(domain):
        findings.append(
            Finding(
                serious,
                "sender",
                f"MAIL_FROM uses {domain}, which no mailbox provider will accept mail from",
                "set DIGEST_MAIL_FROM to an address on a domain you control "
                "(see docs/deliverability.md for its SPF, DKIM and DMARC records)",
            )
        )
    else:
        findings.append(Finding(OK, "sender", f"mail comes from {address}"))
    if mail_domain.lower() != domain:
        findings.append(
            Finding(
                WARNING,
                "sender",
                f"MAIL_DOMAIN ({mail_domain}) differs from the From domain ({domain})",
                f"set DIGEST_MAIL_DOMAIN={domain} so Message-IDs match the sender",
            )
        )
    return findings


def check_dkim(config: Mapping[str, Any], production: bool) -> Finding:
    """When DKIM is configured its key file is readable and holds a private key."""
    selector = config.get("DKIM_SELECTOR")
    key_file = config.get("DKIM_KEY_FILE")
    if not selector and not key_file:
        return Finding(
            WARNING if production else OK,
            "dkim",
            "DKIM signing is off"
            + ("; large providers expect it from bulk senders" if production else ""),
            f"generate a key ({DKIM_KEYGEN}), publish the public half at "
            "<selector>._domainkey.<domain>, then set DIGEST_DKIM_SELECTOR and "
            "DIGEST_DKIM_KEY_FILE",
        )
    if not selector or not key_file:
        missing = "DKIM_SELECTOR" if not selector else "DKIM_KEY_FILE"
        return Finding(ERROR, "dkim", f"DKIM is half configured: {missing} is not set", None)
    path = Path(str(key_file))
    try:
        head = path.read_text(encoding="ascii", errors="replace")[:200]
    except OSError as error:
        return Finding(
            ERROR,
            "dkim",
            f"cannot read DKIM key {path}: {error.strerror or error}",
            "check the path and that the user running digest may read it",
        )
    if "PRIVATE KEY-----" not in head:
        return Finding(
            ERROR,
            "dkim",
            f"{path} does not hold a PEM private key",
            f"generate one with: {DKIM_KEYGEN}",
        )
    if os.name == "posix" and path.stat().st_mode & 0o044:
        return Finding(
            WARNING,
            "dkim",
            f"DKIM key {path} is readable by other users",
            f"chmod 600 {path}",
        )
    failure = _try_signing(config)
    if failure:
        return Finding(ERROR, "dkim", failure, f"generate a new key with: {DKIM_KEYGEN}")
    return Finding(OK, "dkim", f"signing with selector {selector!r}, key {path}")


def _try_signing(config: Mapping[str, Any]) -> str | None:
    """Why the delivery layer's DKIM signer refuses this configuration, or None."""
    try:
        from digest.mail.signing import DkimSigner, SigningError
    except ImportError:
        # Without the signer (dkimpy) installed, the file checks above are all we can do.
        return None
    try:
        DkimSigner.from_config(config)
    except SigningError as error:
        return str(error)
    return None


def check_mail_url(url: str, production: bool) -> Finding:
    """In production mail must leave the machine, and over TLS when it crosses a network."""
    parts = urlsplit(url)
    if parts.scheme in ("file", "memory"):
        return Finding(
            WARNING if production else OK,
            "mail transport",
            f"mail is kept ({parts.scheme}://), not sent",
            "set DIGEST_MAIL_URL=smtp://user:password@smtp.host:587?tls=starttls"
            if production
            else None,
        )
    tls = parse_qs(parts.query).get("tls", [""])[0]
    local = (parts.hostname or "") in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "smtp" and not tls and not local:
        return Finding(
            WARNING,
            "mail transport",
            f"SMTP to {parts.hostname} without TLS: passwords and mail cross the network in clear",
            "add ?tls=starttls (port 587) or ?tls=ssl (port 465) to DIGEST_MAIL_URL",
        )
    return Finding(OK, "mail transport", f"sending through {parts.scheme}://{parts.hostname}")


def check_scale(config: Mapping[str, Any], production: bool) -> list[Finding]:
    """Several processes need a shared database and shared rate-limit counters."""
    findings = []
    if production and str(config.get("DATABASE_URL", "")).startswith("sqlite"):
        findings.append(
            Finding(
                WARNING,
                "database",
                "SQLite serves one machine; workers on other machines cannot share it",
                "use PostgreSQL: DIGEST_DATABASE_URL=postgresql://user@host/digest",
            )
        )
    if production and str(config.get("RATELIMIT_STORAGE_URL", "memory://")).startswith("memory"):
        findings.append(
            Finding(
                WARNING,
                "rate limits",
                "rate limits are counted per process; with gunicorn each worker counts apart",
                "set DIGEST_RATELIMIT_STORAGE_URL=redis://127.0.0.1:6379/0",
            )
        )
    return findings


def check_configuration(config: Mapping[str, Any]) -> list[Finding]:
    """Every configuration check, for the environment ``config`` declares."""
    production = config.get("ENV_NAME") == "production"
    findings = [
        check_secret_key(config.get("SECRET_KEY"), production),
        check_public_url(str(config.get("PUBLIC_URL", "")), production),
        *check_sender(
            str(config.get("MAIL_FROM", "")), str(config.get("MAIL_DOMAIN", "")), production
        ),
        check_dkim(config, production),
        check_mail_url(str(config.get("MAIL_URL", "")), production),
        *check_scale(config, production),
    ]
    return findings


def check_runtime(now: dt.datetime) -> list[Finding]:
    """The readiness checks (database, migrations, scheduler) as findings."""
    from digest.web.health import readiness

    findings = []
    for check in readiness(now):
        if check.ok:
            findings.append(Finding(OK, check.name, check.detail))
        elif check.name == "scheduler":
            # A scheduler that is not running yet is normal while setting up.
            findings.append(
                Finding(WARNING, check.name, check.detail, "start it: `digest scheduler`")
            )
        else:
            findings.append(Finding(ERROR, check.name, check.detail, None))
    return findings
