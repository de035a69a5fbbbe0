"""Sign-up and one-click unsubscribe under gunicorn, against a hello-world Flask view.

Both apps run under the same gunicorn settings on loopback (sync workers, as many as
gunicorn recommends for the machine; BENCH_GUNICORN_WORKERS and BENCH_GUNICORN_WORKER_CLASS
override); a second process sends a fixed number of POSTs with a fixed concurrency and
reports requests per second and p50/p99 latency. The figure that matters is the ratio to
hello-world (target: sign-up >= 0.5), together with zero errors and every accepted sign-up
stored exactly once.

The runs alternate (hello-world, sign-up, the same sign-ups again, hello-world, ..., then
hello-world and one-click in turn) for BENCH_ROUNDS rounds: rates are medians over rounds,
and the ratio is the median of each round's ratio to the hello-world run just before it, so
a burst of other work on the machine weighs on both sides of a ratio instead of on one. The
second sign-up of each address shows whether a known address answers at the speed of a new
one (a stranger must not learn from the timing that an address is subscribed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = int(os.environ.get("BENCH_SIGNUP_REQUESTS", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_SIGNUP_CONCURRENCY", "8"))
# gunicorn's documented starting point, (2 x cores) + 1 workers, as in
# deploy/gunicorn.conf.py: while one worker waits on the database another uses the core.
WORKERS = os.environ.get("BENCH_GUNICORN_WORKERS") or str(min(2 * (os.cpu_count() or 1) + 1, 8))
# sync: each request on a connection of its own, as a reverse proxy without upstream
# keep-alive sends them. gthread (what deploy/gunicorn.conf.py runs, with 4 threads) keeps
# the load generator's connections open, which takes the connection's cost off both sides.
WORKER_CLASS = os.environ.get("BENCH_GUNICORN_WORKER_CLASS") or "sync"
THREADS = os.environ.get("BENCH_GUNICORN_THREADS") or "4"

HELLO_APP = """
from flask import Flask
app = Flask(__name__)

@app.post("/")
def hello():
    return "hello"
"""

# The load generator: runs in its own process so it does not share the GIL with the server
# under test. Reads a JSON job on stdin (argv is too small for a long run), prints a JSON
# result.
CLIENT = r"""
import http.client, json, sys, threading, time, urllib.parse
job = json.load(sys.stdin)
host, port = job["host"], job["port"]
bodies = job["bodies"]
latencies, statuses, lock = [], {}, threading.Lock()
cursor = iter(range(len(bodies)))

def worker():
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while True:
        with lock:
            i = next(cursor, None)
        if i is None:
            break
        path, body = bodies[i]
        data = urllib.parse.urlencode(body, doseq=True)
        started = time.perf_counter()
        try:
            conn.request("POST", path, data, {"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse(); response.read(); status = response.status
        except Exception as error:
            status = type(error).__name__
            conn.close(); conn = http.client.HTTPConnection(host, port, timeout=30)
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed); statuses[str(status)] = statuses.get(str(status), 0) + 1
    conn.close()

started = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(job["concurrency"])]
for t in threads: t.start()
for t in threads: t.join()
wall = time.perf_counter() - started
print(json.dumps({"wall": wall, "statuses": statuses, "latencies": latencies}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(target: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            WORKERS,
            "--worker-class",
            WORKER_CLASS,
            "--threads",
            THREADS if WORKER_CLASS == "gthread" else "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            target,
        ],
        cwd=cwd,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # the server answers (hello-world has no /healthz): it is up
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"gunicorn did not start for {target}")
    return process, port


def _drive(port: int, bodies: Sequence[tuple[str, Mapping[str, object]]]) -> dict[str, Any]:
    job = {"host": "127.0.0.1", "port": port, "bodies": bodies, "concurrency": CONCURRENCY}
    output = subprocess.run(
        [sys.executable, "-c", CLIENT],
        input=json.dumps(job),
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one kind as one figure: median rate, latencies and statuses of them all."""
    rates = sorted(len(r["latencies"]) / float(r["wall"]) for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "rate": statistics.median(rates),
        "rates": [len(r["latencies"]) / float(r["wall"]) for r in results],
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "statuses": statuses,
    }


def _line(name: str, result: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    text = (
        f"{name:<22} {result['rate']:8.1f} req/s  p50 {result['p50'] * 1000:6.1f} ms  "
        f"p99 {result['p99'] * 1000:6.1f} ms  statuses {result['statuses']}"
    )
    if baseline is not None:
        # Each round's sign-ups against the hello-world run just before them: the median of
        # those paired ratios, so a slow patch on the machine counts against both sides.
        ratios = [a / b for a, b in zip(result["rates"], baseline["rates"], strict=True)]
        rounds = " ".join(f"{ratio:.2f}" for ratio in ratios)
        text += f"  ratio to hello-world {statistics.median(ratios):.2f} (rounds: {rounds})"
    return text


def run() -> list[str]:
    """Measure hello-world, sign-up and one-click unsubscribe; return report lines."""
    if WORKER_CLASS not in ("sync", "gthread"):
        raise ValueError(f"BENCH_GUNICORN_WORKER_CLASS={WORKER_CLASS!r}: expected sync or gthread")
    if not (THREADS.isdigit() and int(THREADS) >= 1):
        raise ValueError(f"BENCH_GUNICORN_THREADS={THREADS!r}: expected a whole number, 1 or more")
    work = Path(tempfile.mkdtemp(prefix="digest-bench-signup-"))
    try:
        return _run_in(work)
    finally:
        # The folder holds the SQLite database and the hello-world app: a few MB per run.
        shutil.rmtree(work, ignore_errors=True)


def _run_in(work: Path) -> list[str]:
    from sqlalchemy import func, select

    from digest import create_app
    from digest.extensions import db
    from digest.models import Delivery, Subscriber
    from digest.tokens import make_token

    (work / "hello_bench_app.py").write_text(HELLO_APP, encoding="utf-8")
    database = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{work / 'bench.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{work}",
        "DIGEST_ENV": "development",
        "DIGEST_INSTANCE_PATH": str(work),
        "DIGEST_DATABASE_URL": database,
        "DIGEST_MAIL_URL": "memory://",
        "DIGEST_SECRET_KEY": "bench-secret",
        # The load comes from one IP with no browser session: limits and CSRF would refuse it.
        "DIGEST_RATELIMIT_ENABLED": "false",
        "DIGEST_WTF_CSRF_ENABLED": "false",
        # One log line per request would measure the terminal, not the site.
        "DIGEST_LOG_LEVEL": "WARNING",
    }
    config = {
        "INSTANCE_PATH": str(work),
        "DATABASE_URL": database,
        "SECRET_KEY": "bench-secret",
        "MAIL_URL": "memory://",
    }
    app = create_app(config)
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.remove()

    lines = [
        f"{REQUESTS} POSTs per run, {ROUNDS} rounds, concurrency {CONCURRENCY}, "
        f"gunicorn --workers {WORKERS} --worker-class {WORKER_CLASS}"
        + (f" --threads {THREADS}" if WORKER_CLASS == "gthread" else "")
        + f", {database.split(':')[0]}"
    ]
    hello, hello_port = _serve("hello_bench_app:app", env, work)
    site, site_port = _serve("digest.wsgi:app", env, work)
    try:
        hello_runs: list[dict[str, Any]] = []
        signup_runs: list[dict[str, Any]] = []
        # The same form again right after, for the addresses it just stored (now pending):
        # the answer must not tell a stranger an address is known, by its content or by
        # its speed, so its rate is compared with the new addresses' run of the same round.
        known_runs: list[dict[str, Any]] = []
        for round_ in range(ROUNDS):
            hello_runs.append(_drive(hello_port, [("/", {"x": "1"})] * REQUESTS))
            signup_runs.append(_drive(site_port, _signups(round_)))
            known_runs.append(_drive(site_port, _signups(round_)))
        with app.app_context():
            stored = db.session.scalar(select(func.count(Subscriber.id)))
            distinct = db.session.scalar(select(func.count(func.distinct(Subscriber.email))))
            queued = db.session.scalar(select(func.count(Delivery.id)))
        with app.app_context():
            subscribers = db.session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
            unsubscribe = [
                (f"/unsubscribe/{make_token(s, 'unsubscribe')}", {"List-Unsubscribe": "One-Click"})
                for s in subscribers
            ]
            db.session.remove()
        unsubscribe_runs: list[dict[str, Any]] = []
        for round_ in range(ROUNDS):
            hello_runs.append(_drive(hello_port, [("/", {"x": "1"})] * REQUESTS))
            batch = unsubscribe[round_ * REQUESTS : (round_ + 1) * REQUESTS]
            unsubscribe_runs.append(_drive(site_port, batch))
    finally:
        for process in (hello, site):
            process.terminate()
            process.wait()
    baseline = _merge(hello_runs)
    signup = _merge(signup_runs)
    lines.append(_line("hello-world", baseline, None))
    lines.append(_line("sign-up", signup, _merge(hello_runs[:ROUNDS])))
    known = _merge(known_runs)
    lines.append(_line("sign-up, known address", known, _merge(hello_runs[:ROUNDS])))
    paired = [a / b for a, b in zip(known["rates"], signup["rates"], strict=True)]
    lines.append(f"known address against new, same round: {statistics.median(paired):.2f}")
    accepted = int(signup["statuses"].get("303", 0))
    again = int(known["statuses"].get("303", 0))
    expected = REQUESTS * ROUNDS
    # Each accepted sign-up, new or again, queues one confirmation (the daily cap is 3).
    lines.append(
        f"sign-ups accepted {accepted} new + {again} again, rows stored {stored}, "
        f"distinct addresses {distinct}, confirmations queued {queued}"
        + (
            "  OK"
            if accepted == again == stored == distinct == expected and queued == 2 * expected
            else "  MISMATCH"
        )
    )
    lines.append(
        _line("one-click unsubscribe", _merge(unsubscribe_runs), _merge(hello_runs[ROUNDS:]))
    )
    return lines


def _signups(round_: int) -> list[tuple[str, Mapping[str, object]]]:
    """The round's sign-up POSTs: a distinct address each, two sections, French.

    Every field of the home page's form is there, as a browser sends it: the optional name
    and the honeypot empty.
    """
    return [
        (
            "/",
            {
                "email": f"bench{round_}.{i}@example.org",
                "name": "",
                "categories": ["sport", "health"],
                "language": "fr",
                "website": "",
            },
        )
        for i in range(REQUESTS)
    ]
