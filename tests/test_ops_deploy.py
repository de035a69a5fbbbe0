"""The shipped production layout: gunicorn config, Procfile, systemd units, `make prod-demo`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from honcho.environ import parse_procfile
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import POSTGRES_URL, PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent


def _load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("WEB_CONCURRENCY", "WEB_THREADS", "BIND", "PORT"):
        monkeypatch.delenv(name, raising=False)
    # Set, so loading the file doesn't create a directory or change this process's environment.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/unused-by-this-test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {"__file__": str(DEPLOY / "gunicorn.conf.py")}
    code = compile((DEPLOY / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec")
    exec(code, namespace)
    return namespace


def test_gunicorn_worker_count_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = _load_gunicorn_conf(monkeypatch, WEB_CONCURRENCY="3", PORT="8123")
    assert conf["workers"] == 3
    assert conf["bind"] == "127.0.0.1:8123"
    assert conf["wsgi_app"] == "digest.wsgi:app"
    default = _load_gunicorn_conf(monkeypatch)
    # Without WEB_CONCURRENCY: two per core plus one, capped at 8 (each keeps a database pool).
    assert default["workers"] == min(2 * (os.cpu_count() or 1) + 1, 8)
    assert default["bind"] == "127.0.0.1:8000"


@pytest.mark.parametrize("value", ["four", "0", "-2", "2.5"])
def test_gunicorn_refuses_a_nonsense_worker_count(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(SystemExit, match="WEB_CONCURRENCY"):
        _load_gunicorn_conf(monkeypatch, WEB_CONCURRENCY=value)


def test_the_procfile_runs_web_workers_and_one_scheduler() -> None:
    procfile = parse_procfile((DEPLOY / "Procfile").read_text())
    commands = dict(procfile.processes)
    assert commands == {
        "web": "gunicorn --config deploy/gunicorn.conf.py",
        "worker": "digest worker",
        "scheduler": "digest scheduler",
    }


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_systemd_units_pass_systemds_own_check(tmp_path: Path) -> None:
    units = [
        *sorted((DEPLOY / "systemd").glob("digest*.service")),
        DEPLOY / "systemd" / "digest.target",
    ]
    for unit in units:
        # As installed: the checkout in /opt/digest, settings in /etc/digest. Here: this one.
        text = unit.read_text()
        text = text.replace("/opt/digest", str(PROJECT_ROOT)).replace(
            "/etc/digest/digest.env", str(DEPLOY / "systemd" / "digest.env.example")
        )
        text = text.replace(".venv/bin/", f"{VENV_BIN.relative_to(PROJECT_ROOT)}/")
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        # Units name the `digest` user and services of the real host, absent here.
        if not re.search(r"(user|group) .*digest|postgresql\.service|redis-server\.service", line)
    ]
    assert result.returncode == 0 and not problems, result.stderr
    scheduler = (DEPLOY / "systemd" / "digest-scheduler.service").read_text()
    worker = (DEPLOY / "systemd" / "digest-worker@.service").read_text()
    assert "digest scheduler" in scheduler
    assert "digest worker" in worker


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait_for(url: str, status: int, deadline_seconds: float) -> str:
    """Poll ``url`` until it answers ``status``; fail with the last answer after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, body = _get(url)
            if code == status:
                return body
            last = (code, body)
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered {status}; last: {last}")


@contextmanager
def _process_group(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own process group; stop the whole group afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def _sample(text: str, metric: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_gunicorn_serves_probes_and_adds_up_metrics_over_its_workers(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "DIGEST_INSTANCE_PATH": str(tmp_path),
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'web.db'}",
        "WEB_CONCURRENCY": "2",
        "PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    init = subprocess.run(
        [str(VENV_BIN / "digest"), "init"], env=env, capture_output=True, text=True, timeout=120
    )
    assert init.returncode == 0, init.stderr
    log = tmp_path / "gunicorn.log"
    args = [str(VENV_BIN / "gunicorn"), "--config", "deploy/gunicorn.conf.py"]
    with _process_group(args, env, log):
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/healthz", 200, 60)
        # Counted from here: a probe that timed out while a worker booted may still count.
        before = _sample(
            _get(f"{base}/metrics")[1],
            "digest_http_request_duration_seconds_count",
            route="/healthz",
            status="200",
        )
        assert before is not None and before >= 1
        for _ in range(20):
            assert _get(f"{base}/healthz")[0] == 200
        # Migrated, but no scheduler runs here: not ready, and it says why.
        code, body = _get(f"{base}/readyz")
        assert code == 503
        assert json.loads(body)["checks"]["scheduler"]["ok"] is False
        _, metrics = _get(f"{base}/metrics")
    served = _sample(
        metrics, "digest_http_request_duration_seconds_count", route="/healthz", status="200"
    )
    # Every worker's requests are counted, whichever worker answered the scrape.
    assert served == before + 20, log.read_text()
    assert "Booting worker" in log.read_text()


def _psql(database: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


@pytest.mark.skipif(not POSTGRES_URL, reason="make prod-demo needs PostgreSQL (CI has it)")
@pytest.mark.skipif(
    not (shutil.which("redis-cli") and shutil.which("createdb")),
    reason="make prod-demo needs the PostgreSQL and Redis command-line tools",
)
def test_prod_demo_runs_the_production_layout_and_delivers_each_message_once(
    tmp_path: Path,
) -> None:
    database = f"digest_prod_demo_{os.getpid()}"
    port = _free_port()
    env_file = tmp_path / "prod.env"
    env = {
        **os.environ,
        "PORT": str(port),
        "DEMO_DATABASE": database,
        "DEMO_REDIS_DB": "14",
        "DEMO_ENV_FILE": str(env_file),
    }
    env.pop("DIGEST_TEST_DATABASE_URL", None)
    log = tmp_path / "demo.log"
    try:
        with _process_group(["bash", "deploy/prod-demo.sh"], env, log):
            base = f"http://127.0.0.1:{port}"
            ready = json.loads(_wait_for(f"{base}/readyz", 200, 180))
            assert ready["status"] == "ready", ready
            settings = env_file.read_text()
            assert "DIGEST_ENV=production" in settings
            assert re.search(r"^DIGEST_SECRET_KEY=[0-9a-f]{64}$", settings, re.M)
            assert oct(env_file.stat().st_mode & 0o777) == "0o600"

            # Thirty readers sign up and the day's edition is queued for them; the two
            # workers share the queue.
            _psql(
                database,
                "INSERT INTO subscribers (email, language, categories, status, token_version,"
                " bounce_count, created_at, confirmed_at) SELECT 'reader' || n || '@example.org',"
                ' \'fr\', \'["politics", "economy", "sport", "health", "other"]\','
                " 'active', 1, 0, now(), now() FROM generate_series(1, 30) AS n",
            )
            queue = subprocess.run(
                [
                    str(VENV_BIN / "python"),
                    "-c",
                    "import datetime as dt; from digest import create_app;"
                    "from digest.extensions import db; from digest.models import Edition;"
                    "from digest.mail.delivery import queue_edition;"
                    "from sqlalchemy import select\n"
                    "app = create_app()\n"
                    "with app.app_context():\n"
                    "    edition = db.session.scalars(select(Edition)).one()\n"
                    "    edition.status = 'approved'; db.session.commit()\n"
                    "    print(queue_edition(db.session, edition, dt.datetime.now(dt.UTC)))",
                ],
                env={**env, **_env_file(env_file)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert queue.stdout.strip() == "30", queue.stderr
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                sent = _psql(database, "SELECT count(*) FROM deliveries WHERE state = 'sent'")
                if sent == "30":
                    break
                time.sleep(0.5)
            states = _psql(
                database, "SELECT state || ' ' || count(*) FROM deliveries GROUP BY state"
            )
            assert sent == "30", f"deliveries by state: {states}"
            _, metrics = _get(f"{base}/metrics")
        assert _sample(metrics, "digest_deliveries", kind="digest", state="sent") == 30
        assert _sample(metrics, "digest_delivery_queue_depth") == 0
        outbox = Path(_env_file(env_file)["DIGEST_MAIL_URL"].removeprefix("file://"))
        assert outbox == tmp_path / "prod-demo-outbox"
        recipients = [
            re.search(r"^To: .*?([\w.]+@example\.org)", path.read_text(), re.M | re.I)
            for path in outbox.glob("*.eml")
        ]
        addresses = sorted(match.group(1) for match in recipients if match)
        assert addresses == sorted(f"reader{n}@example.org" for n in range(1, 31))
        text = log.read_text()
        for process in ("web.1", "worker.1", "worker.2", "scheduler.1"):
            assert f"{process} started" in text
    finally:
        # Shown by pytest only when the test fails: what the processes said.
        if log.exists():
            print(log.read_text(errors="replace")[-8000:])
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", database],
            timeout=60,
            check=False,
        )


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
    return values
