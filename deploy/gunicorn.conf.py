"""gunicorn settings for digest's web processes.

    gunicorn --config deploy/gunicorn.conf.py

Everything that differs between machines comes from the environment:
WEB_CONCURRENCY (worker processes), WEB_THREADS (threads per worker), BIND or PORT
(where to listen), FORWARDED_ALLOW_IPS (proxies trusted for the https header),
PROMETHEUS_MULTIPROC_DIR (where workers share metric files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _count(name: str, default: int) -> int:
    """A positive whole number from the environment, or a message saying what is wrong."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number (e.g. {name}=4)") from None
    if value < 1:
        raise SystemExit(f"{name}={raw!r} must be at least 1")
    return value


# Two workers per core plus one, capped: each keeps a database pool, and the pages are light.
_DEFAULT_WORKERS = min(2 * (os.cpu_count() or 1) + 1, 8)

wsgi_app = "digest.wsgi:app"
bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = _count("WEB_CONCURRENCY", _DEFAULT_WORKERS)
# Threads let one worker wait on the database or Redis while another request runs.
worker_class = "gthread"
threads = _count("WEB_THREADS", 4)
timeout = 30
graceful_timeout = 20
keepalive = 5
# Workers restart now and then so a slow leak never grows without bound.
max_requests = 2000
max_requests_jitter = 200
# The app logs each request itself, with its request id, in the configured format.
accesslog = None
errorlog = "-"
# Only the local reverse proxy may say the request came over https.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "digest-web"
# gunicorn >= 24 opens a control socket in $HOME; digest has no use for it, and systemd's
# ProtectHome would refuse it anyway.
control_socket_disable = True

# Request latency is counted in each worker; prometheus-client adds the workers' files
# together when /metrics is scraped. The directory must be known before any worker starts.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="digest-metrics-")


def on_starting(server: Any) -> None:
    """Start with an empty metrics directory: files left by a previous run would be added in."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges (its counters still count)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
