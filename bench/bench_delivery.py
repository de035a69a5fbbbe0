"""Delivery speed: one edition to N subscribers through SMTP, against Postfix's own load generator.

Run by ``make bench`` (N = 20,000) or ``python -m bench.bench_delivery --n 100000``.
On PostgreSQL when ``BENCH_DATABASE_URL`` (or ``DIGEST_TEST_DATABASE_URL``) is set, else SQLite.
The sink is Postfix's ``smtp-sink`` on loopback (Debian package ``postfix``), started and
stopped here; ``smtp-source`` then sends the same number of messages of the same size to it.
Figures:
  - fast: ``digest``'s own path (claim, assemble, SMTP, ledger commit per message), measured
    in a child process so its peak RSS is its own;
  - smtp-source: the C load generator, same count, size and number of connections, each
    connection kept for all its messages (-d) as the sender's are; run before and after;
  - naive: per subscriber render_variant (Jinja + premailer) + build_message + smtplib, on a
    sample (it is far too slow for N);
  - assembly only: fast assembly vs build_message, no network, same messages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
DEFAULT_N = 20_000
NAIVE_SAMPLE = 150
BENCH_SCHEMA = "digest_bench"
# SMTP connections the sender uses at once (and smtp-source's sessions): BENCH_POOL.
POOL = int(os.environ.get("BENCH_POOL", "1"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postfix_tool(name: str) -> str | None:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Sink:
    """Postfix's smtp-sink on a loopback port, for the duration of a block."""

    def __init__(self) -> None:
        self.binary = _postfix_tool("smtp-sink")
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sink:
        if self.binary is None:
            raise RuntimeError("smtp-sink not found: apt-get install postfix")
        args = [self.binary, "-c"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        self.process = subprocess.Popen(
            [*args, f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _database_url(tmp: Path) -> str:
    """PostgreSQL when configured, in a schema of its own so a test run beside it is safe."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DIGEST_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'bench.db'}"
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {BENCH_SCHEMA}")
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{BENCH_SCHEMA}"


def _app(database_url: str, tmp: Path, mail_url: str = "memory://") -> Any:
    from tests.conftest import make_test_app

    return make_test_app(database_url, tmp, MAIL_URL=mail_url, MAIL_BATCH_SIZE=500)


def _populate(n: int) -> None:
    """A 60-headline day and ``n`` confirmed readers in three languages."""
    from sqlalchemy import insert

    from digest.compose import compose_edition
    from digest.extensions import db
    from digest.models import Subscriber
    from tests.email_data import add_many

    db.drop_all()
    db.create_all()
    add_many(db.session, 60)
    compose_edition(db.session, DAY, NOW)
    db.session.commit()
    rows = [
        {
            "email": f"reader{i:06d}@example.org",
            "name": f"Lecteur {i}" if i % 2 else None,
            "language": ("fr", "en", "es")[i % 3],
            "categories": ["politics", "economy", "sport", "health", "other"],
            "status": "active",
            "token_version": 1,
            "bounce_count": 0,
            "created_at": NOW,
        }
        for i in range(n)
    ]
    for start in range(0, n, 5000):
        db.session.execute(insert(Subscriber), rows[start : start + 5000])
    db.session.commit()


def child(database_url: str, tmp: Path, port: int) -> None:
    """Queue and deliver the edition through SMTP; print count, seconds, mean size, peak RSS."""
    from sqlalchemy import select

    from digest.extensions import db
    from digest.mail.delivery import deliver_pending, queue_edition
    from digest.mail.transports import get_transport
    from digest.models import Edition

    app = _app(database_url, tmp)
    with app.app_context():
        edition = db.session.scalar(select(Edition))
        queue_edition(db.session, edition, NOW)
        transport = _MeasuringTransport(get_transport(f"smtp://127.0.0.1:{port}?pool={POOL}"))
        start = time.perf_counter()
        report = deliver_pending(db.session, transport, NOW)
        seconds = time.perf_counter() - start
        transport.close()
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(report.sent, seconds, transport.bytes // max(report.sent, 1), peak_kb)


class _MeasuringTransport:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.bytes = 0

    def send(self, data: bytes, sender: str, recipients: Any, before_end: Any = None) -> str:
        self.bytes += len(data)
        return str(self.inner.send(data, sender, recipients, before_end))

    def close(self) -> None:
        self.inner.close()


def _smtp_source_arguments(port: int, count: int, size: int) -> list[str]:
    """Like with like: as many sessions as the sender's connections, each kept open for all
    its messages (-d, as the sender's pool does), ``count`` messages of ``size`` bytes."""
    return [
        "-d",
        "-s",
        str(POOL),
        "-l",
        str(size),
        "-m",
        str(count),
        "-f",
        "digest@digest.test",
        "-t",
        "reader@example.org",
        f"127.0.0.1:{port}",
    ]


def _smtp_source(port: int, count: int, size: int) -> float:
    binary = _postfix_tool("smtp-source")
    if binary is None:
        raise RuntimeError("smtp-source not found: apt-get install postfix")
    start = time.perf_counter()
    subprocess.run(
        [binary, *_smtp_source_arguments(port, count, size)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _message_size(database_url: str, tmp: Path) -> int:
    """Bytes of one reader's digest, for the smtp-source run that precedes the sender's."""
    from sqlalchemy import select

    from digest.extensions import db
    from digest.mail.assembly import MessageFactory
    from digest.mail.delivery import Job
    from digest.models import Edition, Subscriber

    app = _app(database_url, tmp)
    with app.app_context():
        edition = db.session.scalar(select(Edition))
        reader = db.session.scalars(select(Subscriber).limit(1)).one()
        assert edition is not None
        job = Job(1, "digest", edition.id, NOW, None, 0)
        size = len(MessageFactory(db.session, app.config).assemble(job, reader, NOW)[1])
        db.session.remove()
    return size


def _naive_and_assembly(database_url: str, tmp: Path, port: int) -> tuple[float, float, float]:
    """(naive messages/s through SMTP, fast assembly/s, build_message/s) on a sample."""
    from email import policy

    from sqlalchemy import select

    from digest.extensions import db
    from digest.mail.fast import PreparedVariant
    from digest.mail.message import build_message, personal_links
    from digest.models import Edition, Subscriber
    from digest.render import render_variant

    app = _app(database_url, tmp)
    with app.app_context():
        edition = db.session.scalar(select(Edition))
        readers = db.session.scalars(select(Subscriber).limit(NAIVE_SAMPLE)).all()
        connection = smtplib.SMTP("127.0.0.1", port)
        start = time.perf_counter()
        for reader in readers:
            rendered = render_variant(edition, reader.language, reader.categories)
            message = build_message(
                rendered, reader.email, personal_links(reader, edition), app.config, now=NOW
            )
            connection.sendmail(
                "digest@digest.test", [reader.email], message.as_bytes(policy=policy.SMTP)
            )
        naive = len(readers) / (time.perf_counter() - start)
        connection.quit()

        rendered = render_variant(edition, "fr", readers[0].categories)
        prepared = PreparedVariant(rendered, app.config)
        personal = [personal_links(r, edition) for r in readers]
        start = time.perf_counter()
        for _ in range(10):
            for reader, values in zip(readers, personal, strict=True):
                prepared.assemble(reader.email, values, NOW, "<m@digest.test>")
        fast = 10 * len(readers) / (time.perf_counter() - start)
        start = time.perf_counter()
        for reader, values in zip(readers, personal, strict=True):
            build_message(rendered, reader.email, values, app.config, now=NOW).as_bytes(
                policy=policy.SMTP
            )
        slow = len(readers) / (time.perf_counter() - start)
    return naive, fast, slow


def run(n: int | None = None) -> list[str]:
    """The delivery figures, one line each."""
    n = n or int(os.environ.get("BENCH_DELIVERY_N", DEFAULT_N))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        database_url = _database_url(tmp)
        app = _app(database_url, tmp)
        with app.app_context():
            _populate(n)
        backend = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
        lines.append(
            f"{n} subscribers on {backend}; loopback smtp-sink (offers PIPELINING); both sides"
            f" use {POOL} SMTP connection(s), each kept open for all its messages"
        )
        with Sink() as sink:
            # smtp-source runs just before and just after the sender, so a change in the
            # machine's load during the run shows as a spread instead of skewing the ratio.
            source_before = n / _smtp_source(sink.port, n, _message_size(database_url, tmp))
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.bench_delivery",
                    "--child",
                    database_url,
                    folder,
                    str(sink.port),
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"the sender failed: {result.stderr.strip()[-2000:]}")
            sent, seconds, size, peak_kb = result.stdout.split()[-4:]
            fast_rate = int(sent) / float(seconds)
            source_after = int(sent) / _smtp_source(sink.port, int(sent), int(size))
            source_rate = (source_before + source_after) / 2
            naive, assembly_fast, assembly_slow = _naive_and_assembly(database_url, tmp, sink.port)
        lines.append(
            f"digest send: {int(sent)} messages of ~{int(size)} bytes in {float(seconds):.1f} s"
            f" = {fast_rate:,.0f} msg/s (claim, assemble, PIPELINING, one ledger commit each)"
        )
        settings = " ".join(_smtp_source_arguments(sink.port, int(sent), int(size))[:7])
        lines.append(
            f"smtp-source {settings} (lockstep, no PIPELINING): {source_before:,.0f} msg/s before,"
            f" {source_after:,.0f} after; ratio digest/smtp-source = {fast_rate / source_rate:.2f}"
            " (target >= 0.5)"
        )
        lines.append(
            "naive path (render + premailer + EmailMessage + smtplib per reader): "
            f"{naive:,.1f} msg/s; ratio digest/naive = {fast_rate / naive:.0f}x (target >= 10x)"
        )
        lines.append(
            f"assembly only: fast {assembly_fast:,.0f}/s vs build_message "
            f"{assembly_slow:,.0f}/s = {assembly_fast / assembly_slow:.1f}x"
        )
        lines.append(
            f"peak RSS of the sender: {int(peak_kb) / 1024:.0f} MB (target < 200 MB at 100,000)"
        )
        with app.app_context():
            from digest.extensions import db

            db.drop_all()
            db.engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="subscribers (default 20,000)")
    parser.add_argument(
        "--child", nargs=3, metavar=("DATABASE_URL", "TMP", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return
    for line in run(args.n):
        print(line, flush=True)


if __name__ == "__main__":
    main()
