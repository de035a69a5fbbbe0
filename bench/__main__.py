"""Run the ``bench/bench_*.py`` modules' ``run()`` and print the lines they return.

``python -m bench`` runs them all; ``python -m bench delivery render`` only those named;
``--n N`` is passed to the benchmarks that take a size (``run(n=...)``, e.g. delivery).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

ENVIRONMENT = """\
environment:
  BENCH_DATABASE_URL        PostgreSQL for delivery, ingest and signup (default: SQLite in a
                            temporary folder; delivery and ingest also read
                            DIGEST_TEST_DATABASE_URL)
  BENCH_DELIVERY_N          messages for delivery when --n is not given
  BENCH_POOL                SMTP connections delivery (and smtp-source) use at once (1)
  BENCH_SIGNUP_REQUESTS     POSTs per run for signup (1000)
  BENCH_ROUNDS              rounds for signup (5)
  BENCH_SIGNUP_CONCURRENCY  connections the signup load generator keeps busy (8)
  BENCH_GUNICORN_WORKERS    gunicorn workers for signup (2 x cores + 1, at most 8)
  BENCH_GUNICORN_WORKER_CLASS
                            sync (default) or gthread, as deploy/gunicorn.conf.py runs
  BENCH_GUNICORN_THREADS    threads per gthread worker (4)
"""


def main(argv: list[str] | None = None) -> int:
    """Discover and run the benchmarks in name order; a failing one is reported, not fatal."""
    available = {
        path.stem.removeprefix("bench_"): path
        for path in sorted(Path(__file__).resolve().parent.glob("bench_*.py"))
    }
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(available))
    parser.add_argument("--n", type=int, help="size for the benchmarks that take one")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in available]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(available)}")
    failures = 0
    for short, path in available.items():
        if args.names and short not in args.names:
            continue
        name = f"bench.{path.stem}"
        print(f"== {name}", flush=True)
        try:
            run = importlib.import_module(name).run
            sized = args.n is not None and "n" in inspect.signature(run).parameters
            lines = run(n=args.n) if sized else run()
        except Exception as error:  # a broken benchmark must not hide the others' figures
            failures += 1
            print(f"   FAILED: {type(error).__name__}: {error}", flush=True)
            continue
        for line in lines:
            print(f"   {line}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
