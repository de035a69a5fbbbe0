"""Run every ``bench/bench_*.py`` module's ``run()`` and print the lines it returns."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    """Discover and run the benchmarks in name order; a failing one is reported, not fatal."""
    failures = 0
    for path in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        name = f"bench.{path.stem}"
        print(f"== {name}", flush=True)
        try:
            lines = importlib.import_module(name).run()
        except Exception as error:  # a broken benchmark must not hide the others' figures
            failures += 1
            print(f"   FAILED: {type(error).__name__}: {error}", flush=True)
            continue
        for line in lines:
            print(f"   {line}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
