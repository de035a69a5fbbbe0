"""The whole product as a new user meets it: `make run`'s commands, a browser, the outbox.

`digest init`, `ingest`, `build` and `serve` run as real processes on a fresh instance
folder; Chromium signs a reader up; the confirmation link is read from the outbox's .eml
files; `digest send` then puts a digest for that reader in the outbox, and its one-click
unsubscribe link works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.browser import chromium, needs_chromium
from tests.smtpd import free_port

DIGEST = str(Path(sys.executable).with_name("digest"))
LEAD_TITLE = "IA au Maroc : Une révolution imminente dans le secteur de la Santé"
READER = "lectrice@example.ma"

pytestmark = [pytest.mark.browser, needs_chromium]


def _digest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [DIGEST, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"digest {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _mail_to(outbox: Path, address: str, seconds: float = 60) -> list[EmailMessage]:
    """The messages in ``outbox`` addressed to ``address``, waiting for at least one."""
    deadline = time.monotonic() + seconds
    while True:
        found = []
        for path in sorted(outbox.glob("*.eml")):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if any(a.addr_spec == address for a in message["To"].addresses):
                found.append(message)
        if found or time.monotonic() > deadline:
            return found  # type: ignore[return-value]
        time.sleep(0.3)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`make run` on a fresh instance folder: init, ingest the seed, build, serve."""
    port = free_port()
    instance = tmp_path / "instance"
    env = {
        **os.environ,
        "DIGEST_INSTANCE_PATH": str(instance),
        "DIGEST_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DIGEST_DELIVERY_POLL_SECONDS": "1",
    }
    for name in [n for n in env if n.startswith("DIGEST_") and "TEST" in n]:
        del env[name]
    _digest(env, "init")
    _digest(env, "ingest")
    _digest(env, "build")
    server = subprocess.Popen(
        [DIGEST, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", env, instance / "outbox"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_reader_signs_up_confirms_and_receives_the_seed_digest(
    site: tuple[str, dict[str, str], Path],
) -> None:
    base, env, outbox = site
    with chromium() as browser:
        # A reader whose browser asks for French gets the pages, and so the digest, in French.
        page = browser.new_page(locale="fr-MA")
        page.goto(base + "/")
        assert LEAD_TITLE in page.content()
        page.fill("input[name=email]", READER)
        page.click("form button[type=submit]")
        page.wait_for_load_state()
        assert "/check-inbox" in page.url or "boîte" in page.content()

        confirmation = _mail_to(outbox, READER)
        assert len(confirmation) == 1, "exactly one confirmation mail"
        text = confirmation[0].get_body(("plain",)).get_content()
        link = re.search(r"https?://\S+/confirm/\S+", text)
        assert link, text
        page.goto(link.group(0))
        # Opening the link alone confirms nobody (mail scanners follow links): one button does.
        page.click("form button[type=submit]")
        page.wait_for_load_state()

    sent = _digest(env, "send")
    assert "1 newly queued" in sent.stdout, sent.stdout
    mails = _mail_to(outbox, READER)
    digests = [m for m in mails if LEAD_TITLE in str(m["Subject"])]
    assert len(digests) == 1, [str(m["Subject"]) for m in mails]
    digest = digests[0]
    html = digest.get_body(("html",)).get_content()
    for heading in ("Politique", "Sport", "Économie", "Santé"):
        assert heading in html, heading
    assert 'style="' in html, "CSS is inlined"
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Sending again delivers nothing new to anyone.
    again = _digest(env, "send")
    assert "0 newly queued" in again.stdout
    assert len(_mail_to(outbox, READER, seconds=0)) == len(mails)

    # The one-click unsubscribe (RFC 8058): a bare POST with the signed URL, no cookie.
    url = re.search(r"<(https?://[^>]+)>", str(digest["List-Unsubscribe"])).group(1)  # type: ignore[union-attr]
    request = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    exported = _digest(env, "subscribers", "export")
    row = next(line for line in exported.stdout.splitlines() if READER in line)
    assert "unsubscribed" in row
