"""Two machines for real: PostgreSQL on one network-namespace host, a worker on each of two others.

The hosts are Linux network namespaces joined by a bridge (veth pairs), so the workers reach
the database only over that network, as separate machines would. An edition queued for every
subscriber must be delivered exactly once in total, with both hosts sending part of it.
Needs root and `ip netns` (CI runs as root); elsewhere it skips and says why.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
SUBNET = "10.213.7"  # only ever assigned inside the namespaces this test creates
DB_ADDRESS = f"{SUBNET}.1"
READERS = 100


def _run(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {result.stderr or result.stdout}")
    return result.stdout


def _postgres_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.findall(r"/(\d+)/bin", p)[0]),
    )
    return Path(found[-1]).parent if found else None


def _why_unavailable() -> str | None:
    """The reason this machine cannot run the test, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CI runs as root)"
    if not shutil.which("ip"):
        return "the `ip` command (iproute2) is not installed"
    if _postgres_bin() is None or not shutil.which("runuser"):
        return "needs the PostgreSQL server binaries and runuser to start a database host"
    probe = f"dgprobe{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns add` is not permitted here: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """Three namespaces on a bridge: ``db`` at .1, ``a`` at .2, ``b`` at .3."""

    def __init__(self, tag: str) -> None:
        self.names = {role: f"dg{role}{tag}" for role in ("db", "a", "b")}
        self.tag = tag

    def create(self) -> None:
        for name in self.names.values():
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        db = self.names["db"]
        _run("ip", "-n", db, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", db, "addr", "add", f"{DB_ADDRESS}/24", "dev", "br0")
        _run("ip", "-n", db, "link", "set", "br0", "up")
        for number, role in ((2, "a"), (3, "b")):
            near, far = f"vdg{role}{self.tag}", f"vdg{role}p{self.tag}"
            _run("ip", "link", "add", near, "type", "veth", "peer", "name", far)
            _run("ip", "link", "set", near, "netns", db)
            _run("ip", "link", "set", far, "netns", self.names[role])
            _run("ip", "-n", db, "link", "set", near, "master", "br0")
            _run("ip", "-n", db, "link", "set", near, "up")
            _run("ip", "-n", self.names[role], "addr", "add", f"{SUBNET}.{number}/24", "dev", far)
            _run("ip", "-n", self.names[role], "link", "set", far, "up")

    def destroy(self) -> None:
        # Deleting a namespace deletes the interfaces inside it, and so their veth peers.
        for name in self.names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def command(self, role: str, *args: str) -> list[str]:
        """``args`` run on host ``role``."""
        return ["ip", "netns", "exec", self.names[role], *args]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """The three hosts, removed afterwards."""
    reason = _why_unavailable()
    if reason:
        pytest.skip(f"two-machine test skipped: {reason}")
    network = Hosts(str(os.getpid() % 100000))
    try:
        network.create()
        yield network
    finally:
        network.destroy()


def _start(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _until(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"gave up waiting for {what}")


def test_workers_on_two_hosts_deliver_an_edition_exactly_once(hosts: Hosts) -> None:
    base = Path(tempfile.mkdtemp(prefix="digest-netns-"))
    base.chmod(0o755)
    data = base / "pgdata"
    sockets = base / "sockets"
    for folder in (data, sockets):
        folder.mkdir()
        shutil.chown(folder, "postgres", "postgres")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # --- the database host -------------------------------------------------------
        pg = _postgres_bin()
        assert pg is not None
        initdb = [str(pg / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
        _run("runuser", "-u", "postgres", "--", *initdb, timeout=120)
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        server = [str(pg / "postgres"), "-D", str(data), "-c", "port=5432", "-c", "fsync=off"]
        server += [
            "-c",
            f"listen_addresses={DB_ADDRESS}",
            "-c",
            f"unix_socket_directories={sockets}",
        ]
        postgres = hosts.command("db", "runuser", "-u", "postgres", "--", *server)
        processes.append(_start(postgres, base / "postgres.log"))

        def db_up() -> bool:
            probe = hosts.command("a", "pg_isready", "-q", "-h", DB_ADDRESS, "-p", "5432")
            return subprocess.run(probe, capture_output=True).returncode == 0

        _until(db_up, 60, "PostgreSQL on the database host")
        # The worker hosts really are elsewhere: this machine's own database isn't reachable.
        local = hosts.command("a", "pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432")
        assert subprocess.run(local, capture_output=True).returncode != 0
        _run(*hosts.command("a", "createdb", "-h", DB_ADDRESS, "-U", "postgres", "digest"))

        def env(host: str) -> dict[str, str]:
            return {
                "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": str(base),
                "DIGEST_ENV": "production",
                "DIGEST_SECRET_KEY": "c0ffee" * 8,
                "DIGEST_DATABASE_URL": f"postgresql://postgres@{DB_ADDRESS}:5432/digest",
                "DIGEST_INSTANCE_PATH": str(base / f"instance-{host}"),
                "DIGEST_MAIL_URL": f"file://{base / f'outbox-{host}'}",
                "DIGEST_PUBLIC_URL": "https://digest.example.org",
                "DIGEST_MAIL_FROM": "Le Digest <digest@digest.example.org>",
                "DIGEST_MAIL_DOMAIN": "digest.example.org",
                # Small batches at a steady pace, so the queue outlasts one worker's start-up.
                "DIGEST_MAIL_BATCH_SIZE": "4",
                "DIGEST_MAIL_RATE": "10",
            }

        def digest(host: str, *args: str, timeout: float = 180) -> str:
            result = subprocess.run(
                hosts.command(host, str(VENV_BIN / "digest"), *args),
                env=env(host),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            assert result.returncode == 0, f"digest {' '.join(args)}: {result.stderr}"
            return result.stdout

        # --- host a prepares the day: schema, articles, edition, readers, queue ---------
        digest("a", "init")
        digest("a", "ingest")
        digest("a", "build")
        # Nothing is queued yet, so this pass sends nothing: it only creates the sender's
        # pause-switch row, which two workers starting at the same instant both try to make.
        digest("a", "worker", "--once")
        queue = subprocess.run(
            hosts.command(
                "a",
                str(VENV_BIN / "python"),
                "-c",
                "import datetime as dt\n"
                "from sqlalchemy import select\n"
                "from digest import create_app\n"
                "from digest.extensions import db\n"
                "from digest.models import Edition, Subscriber\n"
                "from digest.mail.delivery import queue_edition\n"
                "app = create_app()\n"
                "with app.app_context():\n"
                "    now = dt.datetime.now(dt.UTC)\n"
                f"    db.session.add_all(Subscriber(email=f'reader{{n}}@example.org',"
                " status='active', confirmed_at=now, consent_at=now)"
                f" for n in range({READERS}))\n"
                "    edition = db.session.scalars(select(Edition)).one()\n"
                "    edition.status = 'approved'\n"
                "    db.session.commit()\n"
                "    print(queue_edition(db.session, edition, now))\n",
            ),
            env=env("a"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert queue.stdout.strip() == str(READERS), queue.stderr

        # --- one worker on each host ---------------------------------------------------
        for host in ("a", "b"):
            worker = hosts.command(host, str(VENV_BIN / "digest"), "worker", "--interval", "0.5")
            processes.append(_start(worker, base / f"worker-{host}.log", env(host)))

        def sent() -> int:
            query = "SELECT count(*) FROM deliveries WHERE state = 'sent'"
            psql = ["psql", "-h", DB_ADDRESS, "-U", "postgres", "-d", "digest", "-tAc", query]
            count = _run(*hosts.command("a", *psql))
            return int(count.strip())

        _until(lambda: sent() == READERS, 240, f"{READERS} deliveries marked sent")
        for worker in processes[1:]:
            _stop(worker)

        # --- exactly once, from both hosts ----------------------------------------------
        by_host: dict[str, list[str]] = {}
        for host in ("a", "b"):
            recipients = []
            for message in (base / f"outbox-{host}").glob("*.eml"):
                match = re.search(r"^To: .*?([\w.]+@example\.org)", message.read_text(), re.M)
                assert match, f"no recipient in {message}"
                recipients.append(match.group(1))
            by_host[host] = recipients
        everyone = by_host["a"] + by_host["b"]
        assert sorted(everyone) == sorted(f"reader{n}@example.org" for n in range(READERS))
        assert by_host["a"] and by_host["b"], {h: len(r) for h, r in by_host.items()}
        assert sent() == READERS
    finally:
        for process in reversed(processes):
            # PostgreSQL's fast shutdown is SIGINT; the workers stop on SIGTERM.
            _stop(process, signal.SIGINT if process is processes[0] else signal.SIGTERM)
        shutil.rmtree(base, ignore_errors=True)
